#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Writes a dataset file record by record. Everything goes to a temporary file beside the output,
/// which `finish()` renames into place: an interrupted or failed run never leaves a half-written
/// file at the output path.
public final class DatasetWriter {
    public let path: String
    public private(set) var count = 0
    private let temporaryPath: String
    private var header: DatasetHeader
    private var file: UnsafeMutablePointer<FILE>?
    private var record: [UInt8]

    public init(path: String, imageSize: Int, channels: Int, attributeNames: [String], provenance: Provenance) throws {
        self.path = path
        temporaryPath = path + ".partial-\(getpid())"
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys  // the same dataset gives the same bytes, run after run
        let text = try encoder.encode(DatasetText(attributeNames: attributeNames, provenance: provenance))
        header = DatasetHeader(imageSize: imageSize, channels: channels, attributeCount: attributeNames.count,
                               count: 0, textBytes: text.count, checksum: 0)
        record = [UInt8](repeating: 0, count: header.recordBytes)
        guard let file = fopen(temporaryPath, "w+b") else {
            throw DataError.unwritable(path: path, reason: systemError())
        }
        self.file = file
        // The fixed header is written last, once the count and checksum are known.
        var start = [UInt8](repeating: 0, count: header.recordsOffset)
        start.replaceSubrange(DatasetHeader.bytes..<(DatasetHeader.bytes + text.count), with: text)
        try write(start)
    }

    deinit {
        if let file {
            fclose(file)
            unlink(temporaryPath)
        }
    }

    private func write(_ bytes: [UInt8]) throws {
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        guard written == bytes.count else { throw DataError.unwritable(path: path, reason: systemError()) }
    }

    /// Appends one image: `pixels` holds imageSize x imageSize x channels bytes (HWC, RGB),
    /// `attributes` one +1/-1 value per attribute name.
    public func append(pixels: UnsafePointer<UInt8>, attributes: [Int8], partition: Partition, imageNumber: Int) throws {
        precondition(attributes.count == header.attributeCount, "expected \(header.attributeCount) attribute values")
        withUnsafeBytes(of: UInt32(imageNumber).littleEndian) { record.replaceSubrange(0..<4, with: $0) }
        record[4] = partition.rawValue
        for (a, value) in attributes.enumerated() { record[5 + a] = UInt8(bitPattern: value) }
        record.withUnsafeMutableBufferPointer { out in
            (out.baseAddress! + header.pixelOffset).update(from: pixels, count: header.pixelBytes)
        }
        try write(record)
        count += 1
    }

    /// Writes the header with the count and checksum, flushes to disk and renames into place.
    public func finish() throws {
        guard let file else { preconditionFailure("DatasetWriter.finish called twice") }
        guard fflush(file) == 0 else { throw DataError.unwritable(path: path, reason: systemError()) }
        header.count = count
        header.checksum = try checksumOfWrittenContent(fd: fileno(file))
        let encoded = header.encoded()
        let written = encoded.withUnsafeBytes { pwrite(fileno(file), $0.baseAddress, $0.count, 0) }
        guard written == encoded.count, fsync(fileno(file)) == 0 else {
            throw DataError.unwritable(path: path, reason: systemError())
        }
        fclose(file)
        self.file = nil
        guard rename(temporaryPath, path) == 0 else {
            let reason = systemError()
            unlink(temporaryPath)
            throw DataError.unwritable(path: path, reason: reason)
        }
    }

    /// Maps the temporary file back in: hashing what is on disk checks what was written.
    private func checksumOfWrittenContent(fd: Int32) throws -> UInt64 {
        let bytes = header.fileBytes
        guard let mapped = mmap(nil, bytes, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw DataError.unwritable(path: path, reason: "mmap failed: \(systemError())")
        }
        defer { munmap(mapped, bytes) }
        return DatasetHeader.contentChecksum(file: mapped, fileBytes: bytes)
    }
}
