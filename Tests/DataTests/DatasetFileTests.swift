import Foundation
import Testing
@testable import VAEData

@Test func xxHash64MatchesTheReferenceImplementation() {
    // Values from libxxhash 0.8.1 (XXH64, seed 0).
    let cases: [([UInt8], UInt64)] = [
        ([], 0xEF46_DB37_51D8_E999),
        (Array("a".utf8), 0xD24E_C4F1_A98C_6E5B),
        (Array("abc".utf8), 0x44BC_2CF5_AD77_0999),
        (Array("The quick brown fox jumps over the lazy dog".utf8), 0x0B24_2D36_1FDA_71BC),
        (Array((0..<3).flatMap { _ in (0...255).map { UInt8($0) } }) + Array("xyz12".utf8), 0x9B7D_50C0_4781_8B1B),
    ]
    for (bytes, expected) in cases {
        #expect(bytes.withUnsafeBytes { xxHash64($0) } == expected, "\(bytes.count) bytes")
    }
}

@Test func datasetFileRoundTrips() throws {
    let directory = try TemporaryDirectory()
    let path = try writeSyntheticDataset(in: directory, count: 25)
    let dataset = try Dataset(path: path, verifyChecksum: true)
    let faces = SyntheticFaces(seed: 7, imageSize: 16)

    #expect(dataset.count == 25)
    #expect(dataset.imageSize == 16)
    #expect(dataset.channels == 3)
    #expect(dataset.attributeNames == SyntheticFaces.attributeNames)
    #expect(dataset.provenance.source == "synthetic faces, seed 7")
    let expected = UnsafeMutablePointer<UInt8>.allocate(capacity: faces.pixelBytes)
    defer { expected.deallocate() }
    for i in 0..<dataset.count {
        let attributes = faces.render(index: i, into: expected)
        #expect(Array(UnsafeBufferPointer(start: dataset.pixels(i), count: faces.pixelBytes))
            == Array(UnsafeBufferPointer(start: expected, count: faces.pixelBytes)))
        #expect(Array(UnsafeBufferPointer(start: dataset.attributes(i), count: 5)) == attributes)
        #expect(dataset.partition(i) == faces.partition(index: i))
        #expect(dataset.imageNumber(i) == i)
    }
    #expect(dataset.indices(in: .valid) == [8, 18])
    #expect(dataset.indices(in: .test) == [9, 19])
    #expect(dataset.indices(in: nil) == (0..<25).map { Int32($0) })
}

@Test func truncatedDatasetFileIsRefused() throws {
    let directory = try TemporaryDirectory()
    let path = try writeSyntheticDataset(in: directory, count: 10)
    let size = try #require(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
    #expect(truncate(path, off_t(size - 1)) == 0)

    let error = expectDataError { _ = try Dataset(path: path, verifyChecksum: false) }
    guard case .badDataset(let errorPath, let problem) = error else {
        Issue.record("expected badDataset, got \(String(describing: error))")
        return
    }
    #expect(errorPath == path)
    #expect(problem.hasPrefix("truncated"))
    #expect(error!.description.contains(path))

    #expect(truncate(path, 40) == 0)
    let short = expectDataError { _ = try Dataset(path: path, verifyChecksum: false) }
    #expect(short?.description.contains("too short") == true)
}

@Test func foreignFileIsRefused() throws {
    let directory = try TemporaryDirectory()
    let path = directory.file("notes.txt")
    try String(repeating: "not a dataset\n", count: 20).write(toFile: path, atomically: true, encoding: .utf8)
    let error = expectDataError { _ = try Dataset(path: path, verifyChecksum: false) }
    #expect(error?.description.hasPrefix("\(path): not a dataset file") == true)

    let missing = expectDataError { _ = try Dataset(path: directory.file("absent.vaeds"), verifyChecksum: false) }
    guard case .unreadable = missing else {
        Issue.record("expected unreadable, got \(String(describing: missing))")
        return
    }
}

@Test func checksumMismatchIsDetected() throws {
    let directory = try TemporaryDirectory()
    let path = try writeSyntheticDataset(in: directory, count: 10)
    // Flip one pixel bit of the last image, as a disk or copy error would.
    let size = try #require(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
    let handle = try #require(FileHandle(forUpdatingAtPath: path))
    try handle.seek(toOffset: UInt64(size - 7))
    let byte = try #require(handle.readData(ofLength: 1).first)
    try handle.seek(toOffset: UInt64(size - 7))
    handle.write(Data([byte ^ 0x10]))
    try handle.close()

    let unverified = try Dataset(path: path, verifyChecksum: false)
    #expect(unverified.count == 10)
    let error = expectDataError { try unverified.verifyChecksum() }
    guard case .checksumMismatch(let errorPath, _, _) = error else {
        Issue.record("expected checksumMismatch, got \(String(describing: error))")
        return
    }
    #expect(errorPath == path)
    #expect(expectDataError { _ = try Dataset(path: path, verifyChecksum: true) } != nil)
}

@Test func unfinishedWriterLeavesNothingBehind() throws {
    let directory = try TemporaryDirectory()
    let path = directory.file("unfinished.vaeds")
    do {
        let writer = try DatasetWriter(path: path, imageSize: 8, channels: 3, attributeNames: ["Smiling"],
                                       provenance: Provenance(source: "test"))
        let pixels = [UInt8](repeating: 100, count: 8 * 8 * 3)
        try writer.append(pixels: pixels, attributes: [1], partition: .train, imageNumber: 1)
        #expect(!FileManager.default.fileExists(atPath: path))
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
}

@Test func loadFloatsConvertsToUnitRange() throws {
    let directory = try TemporaryDirectory()
    let dataset = try Dataset(path: try writeSyntheticDataset(in: directory, count: 6), verifyChecksum: true)
    let values = dataset.imageSize * dataset.imageSize * dataset.channels
    let indices: [Int32] = [5, 0, 3]
    var floats = [Float](repeating: -1, count: indices.count * values)
    dataset.loadFloats(indices, into: &floats)
    var largestError: Float = 0
    for (n, index) in indices.enumerated() {
        let bytes = dataset.pixels(Int(index))
        for j in 0..<values { largestError = max(largestError, abs(floats[n * values + j] - Float(bytes[j]) / 255)) }
    }
    #expect(largestError < 1e-6)
}
