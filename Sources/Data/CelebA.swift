#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// One image as CelebA's annotation files list it.
public struct CelebAEntry: Sendable, Equatable {
    public let fileName: String
    /// 1 for 000001.jpg.
    public let imageNumber: Int
    public let partition: Partition
    /// +1 or -1 per attribute, in the order of the attribute file's header.
    public let attributes: [Int8]
}

/// CelebA's list_attr_celeba.txt and list_eval_partition.txt, parsed strictly and cross-checked:
/// every mismatch between a row and its header, or between the two files, is an error that names
/// the file and the line.
public struct CelebAAnnotations: Sendable {
    public static let attributeFile = "list_attr_celeba.txt"
    public static let partitionFile = "list_eval_partition.txt"
    public static let imageDirectory = "img_align_celeba"

    public let attributeNames: [String]
    /// In the order of the attribute file.
    public let entries: [CelebAEntry]

    public init(directory: String) throws {
        try requireDirectory(directory, holding: "CelebA's \(CelebAAnnotations.imageDirectory)/, "
            + "\(CelebAAnnotations.attributeFile) and \(CelebAAnnotations.partitionFile)")
        let attributes = try FieldLines(path: directory + "/" + CelebAAnnotations.attributeFile)
        let partitions = try FieldLines(path: directory + "/" + CelebAAnnotations.partitionFile)
        let partitionOf = try CelebAAnnotations.parsePartitions(partitions)
        let (names, rows) = try CelebAAnnotations.parseAttributes(attributes)

        attributeNames = names
        entries = try rows.map { row in
            guard let partition = partitionOf[row.fileName]?.partition else {
                throw partitions.error(line: 0, "has no row for \(row.fileName) (\(CelebAAnnotations.attributeFile), "
                    + "line \(row.line))")
            }
            return CelebAEntry(fileName: row.fileName, imageNumber: row.imageNumber, partition: partition,
                               attributes: row.attributes)
        }
        if partitionOf.count > rows.count {
            let listed = Set(rows.map(\.fileName))
            let extra = partitionOf.filter { !listed.contains($0.key) }.min { $0.value.line < $1.value.line }!
            throw partitions.error(line: extra.value.line, "lists \(extra.key), which "
                + "\(CelebAAnnotations.attributeFile) does not")
        }
    }

    /// Line 1: the number of images. Line 2: the attribute names. Then a file name and one value,
    /// 1 or -1, per name.
    static func parseAttributes(_ file: FieldLines)
        throws -> (names: [String], rows: [(fileName: String, imageNumber: Int, line: Int, attributes: [Int8])]) {
        guard file.lines.count >= 2 else {
            throw file.error(line: 0, "too short: expected the image count, the attribute names and one row per image")
        }
        let countLine = file.lines[0]
        guard countLine.fields.count == 1, let declared = Int(file.text(countLine.fields[0])), declared >= 0 else {
            throw file.error(line: countLine.number, "expected the number of images alone on the line")
        }
        let names = file.lines[1].fields.map { file.text($0) }
        if let repeated = names.first(where: { name in names.filter { $0 == name }.count > 1 }) {
            throw file.error(line: file.lines[1].number, "attribute \(repeated) is named twice")
        }

        var lineOfName = [String: Int]()
        let rows = try file.lines[2...].map { line in
            guard line.fields.count == names.count + 1 else {
                throw file.error(line: line.number, "expected \(names.count + 1) columns (a file name and "
                    + "\(names.count) values), found \(line.fields.count)")
            }
            let fileName = file.text(line.fields[0])
            let imageNumber = try file.imageNumber(fileName, line: line.number)
            if let first = lineOfName.updateValue(line.number, forKey: fileName) {
                throw file.error(line: line.number, "\(fileName) is listed twice (first on line \(first))")
            }
            let attributes = try (0..<names.count).map { a in
                switch file.bytes[line.fields[a + 1]] {
                case [0x31]: return Int8(1)  // "1"
                case [0x2D, 0x31]: return Int8(-1)  // "-1"
                case let other:
                    throw file.error(line: line.number, "\(names[a]) of \(fileName) is "
                        + "'\(String(decoding: other, as: UTF8.self))', expected 1 or -1")
                }
            }
            return (fileName, imageNumber, line.number, attributes)
        }
        guard rows.count == declared else {
            throw file.error(line: countLine.number, "declares \(declared) images but \(rows.count) rows follow"
                + (rows.count < declared ? " (is the file truncated?)" : ""))
        }
        return (names, rows)
    }

    /// Every line: a file name and its partition, 0 (train), 1 (valid) or 2 (test).
    static func parsePartitions(_ file: FieldLines) throws -> [String: (partition: Partition, line: Int)] {
        var partitionOf = [String: (partition: Partition, line: Int)]()
        for line in file.lines {
            guard line.fields.count == 2 else {
                throw file.error(line: line.number, "expected 2 columns (a file name and 0, 1 or 2), "
                    + "found \(line.fields.count)")
            }
            let fileName = file.text(line.fields[0]), value = file.text(line.fields[1])
            _ = try file.imageNumber(fileName, line: line.number)
            guard let number = UInt8(value), let partition = Partition(rawValue: number) else {
                throw file.error(line: line.number, "partition of \(fileName) is '\(value)', expected 0, 1 or 2")
            }
            if let first = partitionOf.updateValue((partition, line.number), forKey: fileName) {
                throw file.error(line: line.number, "\(fileName) is listed twice (first on line \(first.line))")
            }
        }
        return partitionOf
    }
}

/// A text file as lines of fields separated by runs of spaces or tabs (the official files use one
/// or two spaces), with LF or CRLF line ends. Fields stay byte ranges: the 202,599-row attribute
/// file would be slow to split into millions of Strings.
struct FieldLines {
    let path: String
    let bytes: [UInt8]
    /// Every line that is not blank, with its 1-based number in the file.
    let lines: [(number: Int, fields: [Range<Int>])]

    init(path: String) throws {
        var bytes = [UInt8]()
        let size = try readFile(path, into: &bytes)
        bytes.removeLast(bytes.count - size)
        var lines = [(number: Int, fields: [Range<Int>])]()
        var fields = [Range<Int>]()
        var fieldStart: Int?
        var number = 1
        for (i, byte) in bytes.enumerated() {
            let separator = byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
            if separator, let start = fieldStart {
                fields.append(start..<i)
                fieldStart = nil
            } else if !separator && fieldStart == nil {
                fieldStart = i
            }
            if byte == 0x0A {
                if !fields.isEmpty { lines.append((number, fields)) }
                fields.removeAll(keepingCapacity: true)
                number += 1
            }
        }
        if let start = fieldStart { fields.append(start..<bytes.count) }
        if !fields.isEmpty { lines.append((number, fields)) }
        self.path = path
        self.bytes = bytes
        self.lines = lines
    }

    func text(_ field: Range<Int>) -> String { String(decoding: bytes[field], as: UTF8.self) }

    func error(line: Int, _ problem: String) -> DataError { .badAnnotation(path: path, line: line, problem: problem) }

    /// CelebA names images by number: 000001.jpg is image 1.
    func imageNumber(_ fileName: String, line: Int) throws -> Int {
        guard fileName.hasSuffix(".jpg"), let number = Int(fileName.dropLast(4)), number >= 0 else {
            throw error(line: line, "expected an image file name such as 000001.jpg, found '\(fileName)'")
        }
        return number
    }
}

/// Throws unless `path` is a directory; `expected` says what it should hold.
func requireDirectory(_ path: String, holding expected: String) throws(DataError) {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw .unreadable(path: path, reason: "no such directory (expected \(expected))")
    }
}

/// Reads a whole file into `buffer`, growing it when needed (so one buffer serves many files);
/// returns the number of bytes read.
func readFile(_ path: String, into buffer: inout [UInt8]) throws(DataError) -> Int {
    let (fd, size) = try openRegularFile(path)
    defer { close(fd) }
    if buffer.count < size { buffer = [UInt8](repeating: 0, count: size) }
    var done = 0
    while done < size {
        let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
        guard got > 0 else { throw DataError.unreadable(path: path, reason: got == 0 ? "file shrank while reading" : systemError()) }
        done += got
    }
    return size
}
