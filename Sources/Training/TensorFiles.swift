#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A Float32 array as a file holds it: a name, a shape and its values in row-major order.
public struct NamedTensor: Equatable, Sendable {
    public var name: String
    public var shape: [Int]
    public var values: [Float]

    public init(name: String, shape: [Int], values: [Float]) {
        precondition(elementCount(shape) == values.count, "\(name): \(values.count) values for shape \(shape)")
        self.name = name
        self.shape = shape
        self.values = values
    }
}

/// The number of values of `shape`, or nil if a dimension is negative or the product overflows
/// (shapes come from files, and a hostile one must give an error, not a trap).
func elementCount(_ shape: [Int]) -> Int? {
    var count = 1
    for dimension in shape {
        guard dimension >= 0 else { return nil }
        let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
        if overflow { return nil }
        count = product
    }
    return count
}

/// Float32 values as little-endian bytes, and back.
func littleEndianBytes(_ values: [Float]) -> Data {
    values.map { $0.bitPattern.littleEndian }.withUnsafeBytes { Data($0) }
}

func floats(fromLittleEndian bytes: Data, count: Int) -> [Float] {
    bytes.withUnsafeBytes { raw in
        (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
    }
}

/// Appends integers to a byte buffer in little-endian order, as every binary format here wants.
struct LittleEndianWriter {
    var data = Data()

    mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) }
    }

    mutating func append(_ bytes: Data) { data.append(bytes) }
}

// MARK: - safetensors

/// The safetensors format (https://huggingface.co/docs/safetensors), for Float32 tensors:
///   8 bytes      N, the header's length, u64 little-endian
///   N bytes      a JSON object: for each tensor {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}
///                (byte offsets into the data), and "__metadata__": a map of strings to strings;
///                padded with spaces so the data starts on an 8-byte boundary
///   the data     every tensor's values, little-endian, row-major, one after another
/// Tensors are written in the order given, which makes the bytes a function of the tensors alone.
public enum Safetensors {
    /// The header-length limit of the reference implementation: a larger value means another kind of file.
    static let maxHeaderBytes = 100_000_000

    public static func encode(_ tensors: [NamedTensor], metadata: [String: String]) -> Data {
        let metadataFields = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
        var fields = ["\"__metadata__\":{\(metadataFields.joined(separator: ","))}"]
        var offset = 0
        for tensor in tensors {
            let end = offset + 4 * tensor.values.count
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            fields.append("\(jsonString(tensor.name)):{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var header = Data("{\(fields.joined(separator: ","))}".utf8)
        header.append(contentsOf: [UInt8](repeating: UInt8(ascii: " "), count: (8 - header.count % 8) % 8))
        var file = LittleEndianWriter()
        file.append(UInt64(header.count))
        file.append(header)
        for tensor in tensors { file.append(littleEndianBytes(tensor.values)) }
        return file.data
    }

    /// The tensors (in the order of their data) and metadata of a safetensors file; every problem is
    /// one line that starts with `path` and names the tensor it concerns.
    public static func decode(_ file: Data, path: String) throws -> (tensors: [NamedTensor], metadata: [String: String]) {
        func fail(_ problem: String) -> TrainingError { TrainingError("\(path): \(problem)") }
        guard file.count >= 8 else { throw fail("not a safetensors file: \(file.count) bytes, too short for a header") }
        let headerBytes = file.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerBytes >= 2 && headerBytes <= maxHeaderBytes else {
            throw fail("not a safetensors file (its first 8 bytes give a header length of \(headerBytes))")
        }
        guard 8 + Int(headerBytes) <= file.count else {
            throw fail("truncated: the header needs \(headerBytes) bytes, the file has \(file.count - 8) after its length")
        }
        guard file[file.startIndex + 8] == UInt8(ascii: "{") else {
            throw fail("not a safetensors file (no JSON object after its first 8 bytes)")
        }
        let header = file.subdata(in: file.startIndex + 8 ..< file.startIndex + 8 + Int(headerBytes))
        let data = file.subdata(in: file.startIndex + 8 + Int(headerBytes) ..< file.endIndex)
        guard let fields = try? JSONDecoder().decode([String: HeaderField].self, from: header) else {
            throw fail("not a safetensors file (its header is not a JSON object of tensor entries)")
        }
        var metadata: [String: String] = [:]
        var entries: [(name: String, entry: TensorEntry)] = []
        for (name, field) in fields {
            switch field {
            case .metadata(let map) where name == "__metadata__": metadata = map
            case .tensor(let entry) where name != "__metadata__": entries.append((name, entry))
            default:
                throw fail(name == "__metadata__" ? "__metadata__ is not a map of strings to strings"
                                                  : "tensor '\(name)': its header entry lacks dtype, shape or data_offsets")
            }
        }
        entries.sort { ($0.entry.dataOffsets.first ?? 0, $0.name) < ($1.entry.dataOffsets.first ?? 0, $1.name) }
        let tensors = try entries.map { name, entry -> NamedTensor in
            guard entry.dtype == "F32" else { throw fail("tensor '\(name)' has dtype \(entry.dtype); this program reads F32 only") }
            guard let count = elementCount(entry.shape), entry.dataOffsets.count == 2 else {
                throw fail("tensor '\(name)': bad shape \(entry.shape) or data_offsets \(entry.dataOffsets)")
            }
            let (begin, end) = (entry.dataOffsets[0], entry.dataOffsets[1])
            guard begin >= 0 && end - begin == 4 * count else {
                throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] do not hold the \(count) values of shape \(entry.shape)")
            }
            guard end <= data.count else {
                throw fail("truncated: tensor '\(name)' ends at byte \(end) of the data, which has \(data.count)")
            }
            return NamedTensor(name: name, shape: entry.shape, values: floats(fromLittleEndian: data[begin..<end], count: count))
        }
        return (tensors, metadata)
    }

    private struct TensorEntry: Decodable {
        var dtype: String
        var shape: [Int]
        var dataOffsets: [Int]

        enum CodingKeys: String, CodingKey {
            case dtype, shape
            case dataOffsets = "data_offsets"
        }
    }

    /// A value of the header object: a tensor entry or the metadata map.
    private enum HeaderField: Decodable {
        case tensor(TensorEntry)
        case metadata([String: String])
        case other

        init(from decoder: Decoder) throws {
            if let entry = try? TensorEntry(from: decoder) {
                self = .tensor(entry)
            } else if let map = try? [String: String](from: decoder) {
                self = .metadata(map)
            } else {
                self = .other
            }
        }
    }

    /// `text` as a JSON string literal, quotes and escapes included.
    private static func jsonString(_ text: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return String(decoding: try! encoder.encode(text), as: UTF8.self)
    }
}

// MARK: - NumPy .npy and .npz

/// NumPy's .npy format (version 1.0) for Float32 arrays, and .npz, a zip of .npy files.
///   6 bytes  "\x93NUMPY", then version 1, 0
///   2 bytes  header length, u16 little-endian
///   header   a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (N, ...), }
///            padded with spaces and ended by a newline so that the data starts at a multiple of 64
///   data     the values, little-endian, row-major
public enum NumPyArray {
    static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

    public static func encode(_ values: [Float], shape: [Int]) -> Data {
        precondition(elementCount(shape) == values.count, "\(values.count) values for shape \(shape)")
        let dimensions = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dimensions)), }"
        let unpadded = magic.count + 4 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var file = LittleEndianWriter()
        file.append(Data(magic + [1, 0]))
        file.append(UInt16(header.utf8.count))
        file.append(Data(header.utf8))
        file.append(littleEndianBytes(values))
        return file.data
    }

    /// Writes a .npy file beside `path` and renames it into place.
    public static func write(_ values: [Float], shape: [Int], to path: String) throws {
        try writeAtomically(encode(values, shape: shape), to: path)
    }

    /// A Float32 array from a .npy file (versions 1 to 3, C order, '<f4').
    public static func read(path: String) throws -> (shape: [Int], values: [Float]) {
        func fail(_ problem: String) -> TrainingError { TrainingError("\(path): \(problem)") }
        guard let file = FileManager.default.contents(atPath: path) else {
            throw fail("cannot read: \(String(cString: strerror(errno)))")
        }
        guard file.count >= 12, Array(file.prefix(6)) == magic, (1...3).contains(file[file.startIndex + 6]) else {
            throw fail("not a NumPy .npy file (no \\x93NUMPY magic of version 1 to 3)")
        }
        let lengthBytes = file[file.startIndex + 6] == 1 ? 2 : 4
        let headerLength = file.withUnsafeBytes {
            lengthBytes == 2 ? Int(UInt16(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt16.self)))
                             : Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        }
        let dataStart = 8 + lengthBytes + headerLength
        guard dataStart <= file.count else { throw fail("truncated: the file ends inside its header") }
        let header = String(decoding: file[file.startIndex + 8 + lengthBytes ..< file.startIndex + dataStart], as: UTF8.self)
        guard let descr = headerValue("descr", in: header), let order = headerValue("fortran_order", in: header),
              let shapeText = headerValue("shape", in: header) else {
            throw fail("not a NumPy .npy header: \(header.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        guard descr == "'<f4'" else { throw fail("dtype \(descr), expected float32 ('<f4'): save it with .astype(np.float32)") }
        guard order == "False" else { throw fail("Fortran order, expected C order: save np.ascontiguousarray(...)") }
        let shape = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() ")).split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.compactMap { Int($0) }
        guard let count = elementCount(shape), file.count - dataStart == 4 * count else {
            throw fail("\(file.count - dataStart) data bytes do not hold the float32 values of shape \(shapeText) (truncated?)")
        }
        return (shape, floats(fromLittleEndian: file.subdata(in: file.startIndex + dataStart ..< file.endIndex), count: count))
    }

    /// The text after 'key': in a header dict, up to the next top-level comma.
    private static func headerValue(_ key: String, in header: String) -> String? {
        guard let keyRange = header.range(of: "'\(key)':") else { return nil }
        var depth = 0
        var value = ""
        for character in header[keyRange.upperBound...] {
            if character == "(" { depth += 1 }
            if character == ")" { depth -= 1 }
            if (character == "," && depth == 0) || character == "}" { break }
            value.append(character)
        }
        return value.trimmingCharacters(in: .whitespaces)
    }

    /// A .npz file: a zip archive, stored without compression, of one NAME.npy per tensor and the
    /// given extra members (byte for byte). `numpy.load` reads it; an extra member that is not an
    /// .npy file comes back as bytes.
    public static func npz(_ tensors: [NamedTensor], extraMembers: [(name: String, bytes: Data)]) -> Data {
        let members = tensors.map { ($0.name + ".npy", encode($0.values, shape: $0.shape)) } + extraMembers
        return zipStored(members)
    }
}

/// A zip archive (PKWARE APPNOTE 4.3.7) whose members are stored uncompressed, dated 1980-01-01
/// so that the same members always give the same bytes: a local header and the bytes of each
/// member, then the central directory, then its end record. No ZIP64: members and archive stay
/// under 4 GiB (a model has at most 1 GiB of parameters).
func zipStored(_ members: [(name: String, bytes: Data)]) -> Data {
    let (version, date): (UInt16, UInt16) = (20, (0 << 9) | (1 << 5) | 1)
    var archive = LittleEndianWriter(), directory = LittleEndianWriter()
    for (name, bytes) in members {
        precondition(archive.data.count + bytes.count < Int(UInt32.max), "zip without ZIP64 holds under 4 GiB")
        let nameBytes = Data(name.utf8), checksum = crc32(bytes)
        let offset = UInt32(archive.data.count)
        // Fields both headers share: version needed, flags, method (0: stored), time, date, CRC-32, sizes, name length.
        func common(_ header: inout LittleEndianWriter) {
            for field in [version, 0, 0, 0, date] { header.append(field) }
            header.append(checksum)
            header.append(UInt32(bytes.count))
            header.append(UInt32(bytes.count))
            header.append(UInt16(nameBytes.count))
        }
        archive.append(UInt32(0x0403_4b50))
        common(&archive)
        archive.append(UInt16(0))  // extra field length
        archive.append(nameBytes)
        archive.append(bytes)
        directory.append(UInt32(0x0201_4b50))
        directory.append(version)  // made by
        common(&directory)
        for field: UInt16 in [0, 0, 0, 0] { directory.append(field) }  // extra, comment, disk, internal attributes
        directory.append(UInt32(0))  // external attributes
        directory.append(offset)
        directory.append(nameBytes)
    }
    let directoryOffset = UInt32(archive.data.count)
    archive.append(directory.data)
    archive.append(UInt32(0x0605_4b50))
    for field: UInt16 in [0, 0, UInt16(members.count), UInt16(members.count)] { archive.append(field) }
    archive.append(UInt32(directory.data.count))
    archive.append(directoryOffset)
    archive.append(UInt16(0))  // comment length
    return archive.data
}

/// CRC-32 (ISO-HDLC, the polynomial zip and PNG use), a byte at a time from a table.
func crc32(_ bytes: Data) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes { crc = crc32Table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
    return crc ^ 0xFFFF_FFFF
}

private let crc32Table: [UInt32] = (0..<256).map { entry in
    var value = UInt32(entry)
    for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
    return value
}
