import Foundation
import Testing
@testable import VAEData

/// The crop and area resize in Float64, straight from the definition: output pixel (i, j) is the
/// mean of the source over the square [x + i s, x + (i + 1) s) x [y + j s, y + (j + 1) s), s = side / n,
/// each source pixel weighted by the area of its overlap with that square.
private func referenceCropResize(rgb: [UInt8], width: Int, box: (x: Double, y: Double, side: Double),
                                 outputSize n: Int) -> [UInt8] {
    let s = box.side / Double(n)
    var output = [UInt8](repeating: 0, count: n * n * 3)
    for j in 0..<n {
        for i in 0..<n {
            let left = box.x + Double(i) * s, top = box.y + Double(j) * s
            var sum = [0.0, 0.0, 0.0]
            for y in Int(top.rounded(.down))..<Int((top + s).rounded(.up)) {
                for x in Int(left.rounded(.down))..<Int((left + s).rounded(.up)) {
                    let overlapX = min(left + s, Double(x + 1)) - max(left, Double(x))
                    let overlapY = min(top + s, Double(y + 1)) - max(top, Double(y))
                    for c in 0..<3 { sum[c] += overlapX * overlapY * Double(rgb[(y * width + x) * 3 + c]) }
                }
            }
            for c in 0..<3 { output[(j * n + i) * 3 + c] = UInt8((sum[c] / (s * s)).rounded()) }
        }
    }
    return output
}

private func largestDifference(_ a: [UInt8], _ b: UnsafePointer<UInt8>) -> Int {
    a.indices.map { abs(Int(a[$0]) - Int(b[$0])) }.max() ?? 0
}

/// A CelebA directory with the first `count` images of the sample: the official annotation rows
/// (CRLF and all) and symbolic links to the JPEGs.
private func miniCelebA(from sample: String, count: Int, in directory: TemporaryDirectory) throws -> String {
    let root = directory.file("celeba")
    let images = root + "/" + CelebAAnnotations.imageDirectory
    try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
    let attributeLines = try String(contentsOfFile: sample + "/" + CelebAAnnotations.attributeFile, encoding: .utf8)
        .components(separatedBy: "\r\n")
    let partitionLines = try String(contentsOfFile: sample + "/" + CelebAAnnotations.partitionFile, encoding: .utf8)
        .components(separatedBy: "\r\n")
    let attributeText = (["\(count)", attributeLines[1]] + attributeLines[2..<(2 + count)]).joined(separator: "\r\n")
    try (attributeText + "\r\n").write(toFile: root + "/" + CelebAAnnotations.attributeFile, atomically: true, encoding: .utf8)
    try (partitionLines[0..<count].joined(separator: "\r\n") + "\r\n")
        .write(toFile: root + "/" + CelebAAnnotations.partitionFile, atomically: true, encoding: .utf8)
    for line in partitionLines[0..<count] {
        let name = String(line.split(separator: " ")[0])
        try FileManager.default.createSymbolicLink(atPath: images + "/" + name,
                                                   withDestinationPath: sample + "/" + CelebAAnnotations.imageDirectory + "/" + name)
    }
    return root
}

@Test(needsCelebASample) func preparingTheSampleGivesTheDocumentedContent() throws {
    let sample = try requireCelebASample()
    let directory = try TemporaryDirectory()
    let path = directory.file("sample.vaeds")
    let report = try prepareCelebA(PreparationOptions(celebaDirectory: sample, outputPath: path))
    #expect(report.written == 969)
    #expect(report.skipped.isEmpty)

    let dataset = try Dataset(path: path, verifyChecksum: true)
    #expect(dataset.count == 969)
    #expect(dataset.imageSize == 64 && dataset.channels == 3)
    #expect(dataset.attributeNames.count == 40)
    #expect(dataset.indices(in: .train).count == 669)
    #expect(dataset.indices(in: .valid).count == 150)
    #expect(dataset.indices(in: .test).count == 150)
    #expect(dataset.provenance.crop == CropBox.celebA)

    func value(_ attribute: String, ofImage number: Int) throws -> Int8 {
        let i = try #require((0..<dataset.count).first { dataset.imageNumber($0) == number })
        return dataset.attributes(i)[try #require(dataset.attributeIndex(attribute))]
    }
    #expect(dataset.imageNumber(0) == 1)
    #expect(try value("Smiling", ofImage: 1) == 1)
    #expect(try value("Male", ofImage: 1) == -1)
    #expect(try value("Young", ofImage: 1) == 1)
    #expect(try value("Male", ofImage: 7) == 1)

    // The stored pixels are the crop and resize of the decoded JPEG, as the reference computes it.
    let decoder = JPEGDecoder()
    for i in [0, 6, 968] {
        let file = String(format: "%06d.jpg", dataset.imageNumber(i))
        try decoder.decode(path: sample + "/img_align_celeba/" + file)
        let expected = referenceCropResize(rgb: decoder.rgb, width: decoder.width, box: (15, 35, 148), outputSize: 64)
        #expect(largestDifference(expected, dataset.pixels(i)) <= 1, "\(file)")
    }
}

@Test(needsCelebASample) func cropAndResizeMatchTheFloat64Reference() throws {
    let sample = try requireCelebASample()
    let decoder = JPEGDecoder()
    for file in ["000001.jpg", "000002.jpg", "000007.jpg", "000100.jpg"] {
        try decoder.decode(path: sample + "/img_align_celeba/" + file)
        #expect(decoder.width == 178 && decoder.height == 218)
        for (crop, size) in [(CropBox.celebA, 64), (CropBox(x: 0, y: 20, size: 178), 64), (CropBox.celebA, 17)] {
            let box = (Double(crop.x), Double(crop.y), Double(crop.size))
            let expected = referenceCropResize(rgb: decoder.rgb, width: 178, box: box, outputSize: size)
            var output = [UInt8](repeating: 0, count: size * size * 3)
            CropResizer(crop: crop, outputSize: size).resize(rgb: decoder.rgb, width: 178, height: 218, into: &output)
            #expect(largestDifference(expected, output) <= 1, "\(file), crop \(crop), \(size)x\(size)")
        }
    }
}

@Test func otherImageSizesGetTheCropScaled() {
    // Half size: the box halves, and its edges fall between pixels.
    let half = CropBox.celebA.region(width: 89, height: 109)
    #expect(half.x == 7.5 && half.y == 17.5 && half.side == 74)
    // Wider: the centre moves with the width, the side follows the smaller scale and stays square.
    let wide = CropBox.celebA.region(width: 200, height: 218)
    #expect(wide.x == 26 && wide.y == 35 && wide.side == 148)

    let width = 89, height = 109
    let rgb = (0..<(width * height * 3)).map { UInt8(truncatingIfNeeded: ($0 * 7919) % 251) }
    let expected = referenceCropResize(rgb: rgb, width: width, box: (7.5, 17.5, 74), outputSize: 64)
    var output = [UInt8](repeating: 0, count: 64 * 64 * 3)
    CropResizer(crop: .celebA, outputSize: 64).resize(rgb: rgb, width: width, height: height, into: &output)
    #expect(largestDifference(expected, output) <= 1)
}

@Test func cropBoxesAreParsedAndChecked() throws {
    #expect(try CropBox(parsing: "15,35,148") == CropBox.celebA)
    #expect(try CropBox(parsing: " 0, 0, 178") == CropBox(x: 0, y: 0, size: 178))
    for bad in ["15,35", "a,b,c", "100,35,148", "0,0,0", "-1,0,10"] {
        #expect(expectDataError { _ = try CropBox(parsing: bad) }?.description.hasPrefix("--crop \(bad)") == true)
    }
}

@Test(needsCelebASample) func corruptAndMissingImagesAreReportedOrSkipped() throws {
    let sample = try requireCelebASample()
    let directory = try TemporaryDirectory()
    let root = try miniCelebA(from: sample, count: 6, in: directory)
    let images = root + "/" + CelebAAnnotations.imageDirectory
    // 000003.jpg: the first half of the real file; 000005.jpg: gone.
    let original = try Data(contentsOf: URL(fileURLWithPath: images + "/000003.jpg"))
    try FileManager.default.removeItem(atPath: images + "/000003.jpg")
    try original.prefix(original.count / 2).write(to: URL(fileURLWithPath: images + "/000003.jpg"))
    try FileManager.default.removeItem(atPath: images + "/000005.jpg")
    let output = directory.file("mini.vaeds")

    let error = expectDataError { _ = try prepareCelebA(PreparationOptions(celebaDirectory: root, outputPath: output)) }
    #expect(error == .badImage(path: images + "/000003.jpg", problem: "does not decode: Premature end of JPEG file"))
    #expect(!FileManager.default.fileExists(atPath: output), "a failed preparation leaves no output file")
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["celeba"])

    let report = try prepareCelebA(PreparationOptions(celebaDirectory: root, outputPath: output, skipBad: true))
    #expect(report.written == 4)
    #expect(report.skipped.map(\.file) == ["000003.jpg", "000005.jpg"])
    #expect(report.skipped[1].problem == "\(images)/000005.jpg: No such file or directory")
    let dataset = try Dataset(path: output, verifyChecksum: true)
    #expect((0..<dataset.count).map { dataset.imageNumber($0) } == [1, 2, 4, 6])
}

@Test(needsCelebASample) func limitAndPartitionSelectImages() throws {
    let sample = try requireCelebASample()
    let directory = try TemporaryDirectory()
    let output = directory.file("valid.vaeds")
    let report = try prepareCelebA(PreparationOptions(celebaDirectory: sample, outputPath: output, partition: .valid,
                                                      limit: 5, threads: 3))
    #expect(report.written == 5)
    let dataset = try Dataset(path: output, verifyChecksum: true)
    #expect(dataset.indices(in: .valid).count == 5)
    #expect(dataset.provenance.selection == "partition valid, limit 5")

    // The first six images are all training images.
    let root = try miniCelebA(from: sample, count: 6, in: directory)
    let error = expectDataError {
        _ = try prepareCelebA(PreparationOptions(celebaDirectory: root, outputPath: output, partition: .test))
    }
    #expect(error == .invalidSetting("\(root): no images selected (partition test, limit none)"))
}

@Test(needsCelebASample) func badAnnotationFilesGiveOneClearError() throws {
    let sample = try requireCelebASample()
    let directory = try TemporaryDirectory()
    let root = try miniCelebA(from: sample, count: 6, in: directory)
    let attributes = root + "/" + CelebAAnnotations.attributeFile
    let partitions = root + "/" + CelebAAnnotations.partitionFile
    let goodAttributes = try String(contentsOfFile: attributes, encoding: .utf8)
    let goodPartitions = try String(contentsOfFile: partitions, encoding: .utf8)

    func expectAnnotationError(_ attributeText: String, _ partitionText: String, _ expected: DataError,
                               sourceLocation: SourceLocation = #_sourceLocation) throws {
        try attributeText.write(toFile: attributes, atomically: true, encoding: .utf8)
        try partitionText.write(toFile: partitions, atomically: true, encoding: .utf8)
        let error = expectDataError({ _ = try CelebAAnnotations(directory: root) }, sourceLocation: sourceLocation)
        #expect(error == expected, sourceLocation: sourceLocation)
    }

    // Truncated in the middle of a row, and at the end of a row.
    let cut = goodAttributes.index(goodAttributes.startIndex, offsetBy: goodAttributes.count - 40)
    try expectAnnotationError(String(goodAttributes[..<cut]), goodPartitions, .badAnnotation(
        path: attributes, line: 8, problem: "expected 41 columns (a file name and 40 values), found 28"))
    let fiveRows = goodAttributes.components(separatedBy: "\r\n").prefix(7).joined(separator: "\r\n")
    try expectAnnotationError(fiveRows, goodPartitions, .badAnnotation(
        path: attributes, line: 1, problem: "declares 6 images but 5 rows follow (is the file truncated?)"))

    try expectAnnotationError(goodAttributes.replacingOccurrences(of: "000004.jpg -1", with: "000004.jpg 2"),
                              goodPartitions, .badAnnotation(
        path: attributes, line: 6, problem: "5_o_Clock_Shadow of 000004.jpg is '2', expected 1 or -1"))
    try expectAnnotationError(goodAttributes.replacingOccurrences(of: "6\r\n", with: "six\r\n"), goodPartitions,
                              .badAnnotation(path: attributes, line: 1, problem: "expected the number of images alone on the line"))
    try expectAnnotationError(goodAttributes, goodPartitions.replacingOccurrences(of: "000002.jpg 0", with: "000002.jpg 3"),
                              .badAnnotation(path: partitions, line: 2, problem: "partition of 000002.jpg is '3', expected 0, 1 or 2"))
    try expectAnnotationError(goodAttributes, goodPartitions.replacingOccurrences(of: "000006.jpg 0\r\n", with: ""),
                              .badAnnotation(path: partitions, line: 0,
                                             problem: "has no row for 000006.jpg (list_attr_celeba.txt, line 8)"))
    try expectAnnotationError(goodAttributes, goodPartitions + "000099.jpg 1\r\n",
                              .badAnnotation(path: partitions, line: 7,
                                             problem: "lists 000099.jpg, which list_attr_celeba.txt does not"))

    try FileManager.default.removeItem(atPath: partitions)
    let missing = expectDataError { _ = try CelebAAnnotations(directory: root) }
    #expect(missing == .unreadable(path: partitions, reason: "No such file or directory"))
    let noDirectory = expectDataError { _ = try CelebAAnnotations(directory: root + "/absent") }
    #expect(noDirectory?.description.hasPrefix(root + "/absent: no such directory") == true)
}

@Test(needsCelebASample) func annotationsParseWithLFAndSingleSpaces() throws {
    let sample = try requireCelebASample()
    let directory = try TemporaryDirectory()
    let root = try miniCelebA(from: sample, count: 6, in: directory)
    let official = try CelebAAnnotations(directory: root)
    for name in [CelebAAnnotations.attributeFile, CelebAAnnotations.partitionFile] {
        let text = try String(contentsOfFile: root + "/" + name, encoding: .utf8)
        try text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "  ", with: " ")
            .write(toFile: root + "/" + name, atomically: true, encoding: .utf8)
    }
    let plain = try CelebAAnnotations(directory: root)
    #expect(plain.entries == official.entries)
    #expect(plain.attributeNames == official.attributeNames)
    #expect(official.entries.count == 6)
    #expect(official.entries[0] == CelebAEntry(fileName: "000001.jpg", imageNumber: 1, partition: .train,
                                              attributes: official.entries[0].attributes))
}
