#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

// The dataset file (docs/dataset.md has the full description):
//
//   [0, 64)              fixed header, little-endian (DatasetHeader below)
//   [64, 64 + textBytes) JSON text: attribute names and how the images were made
//   [recordsOffset, ...) `count` records of `recordBytes` each; recordsOffset is a multiple of 4096
//
// A record is: image number (UInt32), partition (UInt8), attributes (Int8 each, +1 or -1), zero
// padding up to a multiple of 16, then the pixels (imageSize x imageSize x channels UInt8, HWC, RGB).
// The checksum is XXH64 over every byte after the fixed header, so it covers the text and the records.

/// The three CelebA evaluation partitions, numbered as in list_eval_partition.txt.
public enum Partition: UInt8, CaseIterable, Sendable, Codable {
    case train = 0, valid = 1, test = 2

    public var name: String {
        switch self {
        case .train: return "train"
        case .valid: return "valid"
        case .test: return "test"
        }
    }

    public init?(name: String) {
        guard let partition = Partition.allCases.first(where: { $0.name == name }) else { return nil }
        self = partition
    }
}

/// Every problem with input data, as one line that names the file.
public enum DataError: Error, CustomStringConvertible, Equatable {
    /// A file or directory that should exist does not, or cannot be read.
    case unreadable(path: String, reason: String)
    /// An annotation file whose line does not match the format (line 0: the file as a whole).
    case badAnnotation(path: String, line: Int, problem: String)
    /// A listed image that is missing or does not decode.
    case badImage(path: String, problem: String)
    /// A dataset file that is truncated, foreign, or of another version.
    case badDataset(path: String, problem: String)
    /// A dataset file whose content does not match its checksum.
    case checksumMismatch(path: String, stored: UInt64, computed: UInt64)
    /// A dataset file that could not be written.
    case unwritable(path: String, reason: String)
    /// A setting outside what the data allows.
    case invalidSetting(String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "\(path): \(reason)"
        case .badAnnotation(let path, let line, let problem):
            return line > 0 ? "\(path), line \(line): \(problem)" : "\(path): \(problem)"
        case .badImage(let path, let problem):
            return "\(path): \(problem)"
        case .badDataset(let path, let problem):
            return "\(path): \(problem)"
        case .checksumMismatch(let path, let stored, let computed):
            return "\(path): content checksum mismatch (header says \(hex(stored)), content hashes to "
                + "\(hex(computed))): the file is corrupt, prepare it again"
        case .unwritable(let path, let reason):
            return "\(path): cannot write: \(reason)"
        case .invalidSetting(let problem):
            return problem
        }
    }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// The system's message for the current errno.
func systemError() -> String { String(cString: strerror(errno)) }

/// Opens a regular file for reading; returns its descriptor, which the caller closes, and its size.
func openRegularFile(_ path: String) throws(DataError) -> (fd: Int32, bytes: Int) {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw DataError.unreadable(path: path, reason: systemError()) }
    var status = stat()
    guard fstat(fd, &status) == 0 else {
        let reason = systemError()
        close(fd)
        throw DataError.unreadable(path: path, reason: reason)
    }
    guard status.st_mode & S_IFMT == S_IFREG else {
        close(fd)
        throw DataError.unreadable(path: path, reason: "not a regular file")
    }
    return (fd, Int(status.st_size))
}

/// Where the images came from and how they were made; stored in the file so that it explains itself.
public struct Provenance: Codable, Sendable, Equatable {
    /// "CelebA at DIR" or "synthetic faces, seed S".
    public var source: String
    /// The CelebA crop box, in the coordinates of a 178x218 image; nil for synthetic faces.
    public var crop: CropBox?
    /// How the crop was brought to the stored size.
    public var resize: String?
    /// Which images were selected ("partition all, limit none").
    public var selection: String?

    public init(source: String, crop: CropBox? = nil, resize: String? = nil, selection: String? = nil) {
        self.source = source
        self.crop = crop
        self.resize = resize
        self.selection = selection
    }
}

/// The fixed 64-byte start of a dataset file.
struct DatasetHeader: Equatable {
    static let magic: [UInt8] = Array("VAEDATA\0".utf8)
    static let version: UInt32 = 1
    static let bytes = 64
    static let recordAlignment = 4096

    var imageSize: Int
    var channels: Int
    var attributeCount: Int
    var count: Int
    var textBytes: Int
    var checksum: UInt64

    var pixelBytes: Int { imageSize * imageSize * channels }
    /// The pixels start 16-byte aligned so that conversion loops read whole vectors.
    var pixelOffset: Int { (5 + attributeCount + 15) / 16 * 16 }
    var recordBytes: Int { pixelOffset + pixelBytes }
    var recordsOffset: Int {
        (DatasetHeader.bytes + textBytes + DatasetHeader.recordAlignment - 1)
            / DatasetHeader.recordAlignment * DatasetHeader.recordAlignment
    }
    var fileBytes: Int { recordsOffset + count * recordBytes }

    /// XXH64 of everything after the fixed header of a whole file mapped at `file`.
    static func contentChecksum(file: UnsafeRawPointer, fileBytes: Int) -> UInt64 {
        xxHash64(UnsafeRawBufferPointer(start: file + DatasetHeader.bytes, count: fileBytes - DatasetHeader.bytes))
    }

    // Layout of the 64 bytes: magic[8], version u32, imageSize u32, channels u32, attributeCount u32,
    // count u64, textBytes u64, recordBytes u64 (redundant, a check), checksum u64, 8 zero bytes.
    func encoded() -> [UInt8] {
        var bytes = DatasetHeader.magic
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        append(DatasetHeader.version)
        append(UInt32(imageSize))
        append(UInt32(channels))
        append(UInt32(attributeCount))
        append(UInt64(count))
        append(UInt64(textBytes))
        append(UInt64(recordBytes))
        append(checksum)
        bytes += [UInt8](repeating: 0, count: DatasetHeader.bytes - bytes.count)
        return bytes
    }
}

// Decoding lives in an extension so that the struct keeps its memberwise initializer.
extension DatasetHeader {
    /// Parses and checks the fixed header of a whole file of `fileBytes` (at least 64) bytes.
    init(decoding raw: UnsafeRawBufferPointer, fileBytes: Int, path: String) throws {
        func fail(_ problem: String) -> DataError { .badDataset(path: path, problem: problem) }
        guard Array(raw[0..<8]) == DatasetHeader.magic else {
            throw fail("not a dataset file (no VAEDATA magic); make one with `vae prepare` or `vae synth`")
        }
        func u32(_ offset: Int) -> Int { Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))) }
        func u64(_ offset: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
        let version = u32(8)
        guard version == DatasetHeader.version else {
            throw fail("format version \(version), this program reads version \(DatasetHeader.version)")
        }
        imageSize = u32(12)
        channels = u32(16)
        attributeCount = u32(20)
        guard (1...4096).contains(imageSize), (1...4).contains(channels), attributeCount <= 1024,
              u64(24) <= UInt64(Int32.max), u64(32) <= UInt64(Int32.max) else {
            throw fail("header values out of range (image size \(imageSize), channels \(channels), "
                + "\(attributeCount) attributes): the file is damaged")
        }
        count = Int(u64(24))
        textBytes = Int(u64(32))
        checksum = u64(48)
        guard Int(u64(40)) == recordBytes else {
            throw fail("header says records of \(u64(40)) bytes, its sizes imply \(recordBytes): the file is damaged")
        }
        guard fileBytes == self.fileBytes else {
            let problem = fileBytes < self.fileBytes ? "truncated" : "longer than its header says"
            throw fail("\(problem): \(fileBytes) bytes, expected \(self.fileBytes) for \(count) images")
        }
    }
}

/// The JSON text after the fixed header.
struct DatasetText: Codable {
    var attributeNames: [String]
    var provenance: Provenance
}

/// A dataset file, memory-mapped read-only: every rank on a machine shares one copy in the page cache.
public final class Dataset: @unchecked Sendable {
    public let path: String
    public let count: Int
    public let imageSize: Int
    public let channels: Int
    public let attributeNames: [String]
    public let provenance: Provenance
    public let checksum: UInt64
    public let fileBytes: Int

    private let header: DatasetHeader
    private let base: UnsafeRawPointer
    private let partitions: [Partition]

    /// Opens and validates a dataset file. Reading the whole file to verify the checksum takes about
    /// a second for full CelebA; under MPI one rank verifies and shares the result.
    public init(path: String, verifyChecksum: Bool) throws {
        self.path = path
        let (fd, fileBytes) = try openRegularFile(path)
        defer { close(fd) }
        self.fileBytes = fileBytes
        guard fileBytes >= DatasetHeader.bytes else {
            throw DataError.badDataset(path: path, problem: "only \(fileBytes) bytes, too short to be a dataset file "
                + "(make one with `vae prepare` or `vae synth`)")
        }
        guard let mapped = mmap(nil, fileBytes, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw DataError.unreadable(path: path, reason: "mmap failed: \(systemError())")
        }
        let base = UnsafeRawPointer(mapped)
        self.base = base
        do {
            let header = try DatasetHeader(decoding: UnsafeRawBufferPointer(start: base, count: fileBytes),
                                           fileBytes: fileBytes, path: path)
            let text = Data(bytes: base + DatasetHeader.bytes, count: header.textBytes)
            guard let decoded = try? JSONDecoder().decode(DatasetText.self, from: text),
                  decoded.attributeNames.count == header.attributeCount else {
                throw DataError.badDataset(path: path, problem: "header text is not the expected JSON with "
                    + "\(header.attributeCount) attribute names: the file is damaged")
            }
            partitions = try (0..<header.count).map { i in
                let byte = base.load(fromByteOffset: header.recordsOffset + i * header.recordBytes + 4, as: UInt8.self)
                guard let partition = Partition(rawValue: byte) else {
                    throw DataError.badDataset(path: path, problem: "image \(i) has partition \(byte), not 0, 1 or 2: "
                        + "the file is damaged")
                }
                return partition
            }
            self.header = header
            count = header.count
            imageSize = header.imageSize
            channels = header.channels
            attributeNames = decoded.attributeNames
            provenance = decoded.provenance
            checksum = header.checksum
            if verifyChecksum { try self.verifyChecksum() }
        } catch {
            munmap(mapped, fileBytes)
            throw error
        }
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), fileBytes) }

    /// Hashes everything after the fixed header and compares it with the stored checksum.
    public func verifyChecksum() throws {
        let computed = contentChecksum()
        guard computed == checksum else {
            throw DataError.checksumMismatch(path: path, stored: checksum, computed: computed)
        }
    }

    /// XXH64 of the content (all bytes after the fixed header), as the writer computed it.
    public func contentChecksum() -> UInt64 { DatasetHeader.contentChecksum(file: base, fileBytes: fileBytes) }

    private func record(_ i: Int) -> UnsafeRawPointer {
        precondition(i >= 0 && i < count, "image index \(i) outside 0..<\(count)")
        return base + header.recordsOffset + i * header.recordBytes
    }

    /// imageSize x imageSize x channels bytes, HWC, RGB.
    public func pixels(_ i: Int) -> UnsafePointer<UInt8> {
        (record(i) + header.pixelOffset).assumingMemoryBound(to: UInt8.self)
    }

    /// attributeNames.count values, +1 or -1, in the order of attributeNames.
    public func attributes(_ i: Int) -> UnsafePointer<Int8> {
        (record(i) + 5).assumingMemoryBound(to: Int8.self)
    }

    public func partition(_ i: Int) -> Partition { partitions[i] }

    /// The CelebA image number (1 for 000001.jpg); the index for synthetic faces.
    public func imageNumber(_ i: Int) -> Int {
        Int(UInt32(littleEndian: record(i).loadUnaligned(as: UInt32.self)))
    }

    /// The indices of the images in `partition`, in file order; nil means all images.
    public func indices(in partition: Partition?) -> [Int32] {
        (0..<count).filter { partition == nil || partitions[$0] == partition }.map { Int32($0) }
    }

    /// The position of a named attribute, or nil if the file does not have it.
    public func attributeIndex(_ name: String) -> Int? { attributeNames.firstIndex(of: name) }

    /// For each attribute, the fraction of images with value +1.
    public func attributeFrequencies() -> [Double] {
        var positives = [Int](repeating: 0, count: attributeNames.count)
        for i in 0..<count {
            let values = attributes(i)
            for a in 0..<attributeNames.count where values[a] > 0 { positives[a] += 1 }
        }
        return positives.map { count == 0 ? 0 : Double($0) / Double(count) }
    }

    /// Converts images to Float32 in [0, 1], NHWC, one after another in `output`
    /// (indices.count x imageSize x imageSize x channels values).
    public func loadFloats(_ indices: some Collection<Int32>, into output: UnsafeMutablePointer<Float>) {
        let values = header.pixelBytes
        var out = output
        for index in indices {
            convertPixels(pixels(Int(index)), into: out, count: values)
            out += values
        }
    }
}

/// Pixel bytes 0...255 to Float32 in [0, 1]: the one conversion every path to the model uses.
public func convertPixels(_ bytes: UnsafePointer<UInt8>, into output: UnsafeMutablePointer<Float>, count: Int) {
    for j in 0..<count { output[j] = Float(bytes[j]) * (1 / 255) }
}
