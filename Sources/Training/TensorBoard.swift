import Foundation

/// TensorBoard event files, written directly (no TensorFlow, no protobuf library).
///
/// A file is a sequence of TFRecords, each
///     uint64 length (little-endian), uint32 masked CRC-32C of those 8 bytes,
///     `length` bytes of data, uint32 masked CRC-32C of the data,
/// where mask(crc) = ((crc >> 15) | (crc << 17)) &+ 0xa282ead8. Each record's data is a serialised
/// `Event` protobuf, encoded here by hand; the fields used are
///     Event      { double wall_time = 1; int64 step = 2; string file_version = 3;
///                  Summary summary = 5; SessionLog session_log = 7 }
///     Summary    { repeated Value value = 1 }
///     Value      { string tag = 1; float simple_value = 2; Image image = 4 }
///     Image      { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4 }
///     SessionLog { SessionStatus status = 1 }   (START = 1)
/// The first record of a file carries only file_version "brain.Event:2".
///
/// Resuming: each process start writes a new file (TensorBoard reads every file of a directory, in
/// name order). A resumed run repeats the steps after its checkpoint, which the file of the process
/// that crashed may hold already, so the new file starts with a SessionLog START at the first step
/// it runs: TensorBoard's reader then discards what earlier files hold for that step and later ones.
///
/// Only rank 0 writes, and an error of its own in mid-run would leave the other ranks waiting in
/// the next step's allreduce; events are for watching, not the run's result: a write that fails is
/// reported once on stderr and ends the events of this run, not the training.
final class TensorBoardWriter {
    private let file: FileHandle
    let path: String
    private var failed = false

    /// Opens a new events file in `directory` (created if need be) for the steps after `firstStep`.
    /// It is named by the start second; a taken name takes the next second, so that the names of
    /// the files sort in the order they were started.
    init(directory: String, host: String, firstStep: Int) throws {
        let files = FileManager.default
        do {
            try files.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw TrainingError("\(directory): cannot create the TensorBoard directory: \(error.localizedDescription)")
        }
        var second = Int(Date().timeIntervalSince1970)
        while files.fileExists(atPath: "\(directory)/events.out.tfevents.\(second).\(host)") { second += 1 }
        path = "\(directory)/events.out.tfevents.\(second).\(host)"
        guard files.createFile(atPath: path, contents: nil), let file = FileHandle(forWritingAtPath: path) else {
            throw TrainingError("\(path): cannot create the TensorBoard events file")
        }
        self.file = file
        var version = Protobuf()
        version.string(field: 3, "brain.Event:2")
        write(event: version, step: 0)
        if firstStep > 0 {
            var start = Protobuf()
            start.message(field: 7) { $0.varint(field: 1, 1) }  // SessionLog { status: START }
            write(event: start, step: firstStep + 1)
        }
    }

    deinit { try? file.close() }

    /// Scalars under their tags (e.g. "train/loss"), at `step`.
    func scalars(_ values: KeyValuePairs<String, Double>, step: Int) {
        write(summary: values.map { tag, value in
            { (entry: inout Protobuf) in
                entry.string(field: 1, tag)
                entry.float(field: 2, Float(value))
            }
        }, step: step)
    }

    /// A PNG file's bytes as an image under `tag`, at `step`.
    func image(tag: String, pngFile: String, step: Int) {
        guard let png = FileManager.default.contents(atPath: pngFile), png.count >= 24 else {
            return fail(because: "cannot read \(pngFile)")
        }
        // A PNG starts with its 8-byte signature and the IHDR chunk: length, type, then the
        // width and height as big-endian 32-bit numbers.
        let bigEndian = { (offset: Int) in png[offset..<(offset + 4)].reduce(0) { $0 << 8 | Int($1) } }
        let width = bigEndian(16), height = bigEndian(20)
        write(summary: [{ entry in
            entry.string(field: 1, tag)
            entry.message(field: 4) { image in
                image.varint(field: 1, UInt64(height))
                image.varint(field: 2, UInt64(width))
                image.varint(field: 3, 3)  // colorspace: RGB
                image.bytes(field: 4, png)
            }
        }], step: step)
    }

    private func write(summary values: [(inout Protobuf) -> Void], step: Int) {
        var event = Protobuf()
        event.message(field: 5) { summary in
            for value in values { summary.message(field: 1, value) }
        }
        write(event: event, step: step)
    }

    /// Prefixes the fields every event has, frames the record and appends it.
    private func write(event fields: Protobuf, step: Int) {
        guard !failed else { return }
        var event = Protobuf()
        event.double(field: 1, Date().timeIntervalSince1970)
        event.varint(field: 2, UInt64(step))
        event.bytes.append(fields.bytes)
        do {
            try file.write(contentsOf: tfRecord(event.bytes))
        } catch {
            fail(because: "cannot write: \(error.localizedDescription)")
        }
    }

    private func fail(because reason: String) {
        guard !failed else { return }
        failed = true
        FileHandle.standardError.write(Data("warning: \(path): \(reason); no more TensorBoard events in this run\n".utf8))
    }
}

/// One TFRecord: length, its masked CRC-32C, the data, its masked CRC-32C.
func tfRecord(_ data: Data) -> Data {
    var record = Data()
    let length = littleEndianBytes(UInt64(data.count))
    record.append(length)
    record.append(littleEndianBytes(maskedCRC32C(length)))
    record.append(data)
    record.append(littleEndianBytes(maskedCRC32C(data)))
    return record
}

/// TFRecord's checksum: CRC-32C, rotated and offset so that a CRC of data holding CRCs stays strong.
func maskedCRC32C(_ data: Data) -> UInt32 {
    let crc = crc32c(data)
    return ((crc >> 15) | (crc << 17)) &+ 0xa282_ead8
}

/// CRC-32C (Castagnoli), bit by bit: fast enough for a few records per logged step.
func crc32c(_ data: Data) -> UInt32 {
    var crc: UInt32 = 0xffff_ffff
    for byte in data {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = (crc >> 1) ^ (crc & 1 == 1 ? 0x82f6_3b78 : 0) }
    }
    return ~crc
}

func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> Data {
    withUnsafeBytes(of: value.littleEndian) { Data($0) }
}

/// The protobuf wire format, for the few field types an event needs: each field is a key
/// (field number << 3 | wire type) then a varint (type 0), 8 bytes (type 1), a varint length and
/// the bytes (type 2), or 4 bytes (type 5).
struct Protobuf {
    var bytes = Data()

    mutating func varint(field: Int, _ value: UInt64) {
        key(field, wireType: 0)
        appendVarint(value)
    }

    mutating func double(field: Int, _ value: Double) {
        key(field, wireType: 1)
        bytes.append(littleEndianBytes(value.bitPattern))
    }

    mutating func float(field: Int, _ value: Float) {
        key(field, wireType: 5)
        bytes.append(littleEndianBytes(value.bitPattern))
    }

    mutating func bytes(field: Int, _ value: Data) {
        key(field, wireType: 2)
        appendVarint(UInt64(value.count))
        bytes.append(value)
    }

    mutating func string(field: Int, _ value: String) { bytes(field: field, Data(value.utf8)) }

    /// An embedded message, built by `fill`.
    mutating func message(field: Int, _ fill: (inout Protobuf) -> Void) {
        var inner = Protobuf()
        fill(&inner)
        bytes(field: field, inner.bytes)
    }

    private mutating func key(_ field: Int, wireType: UInt64) { appendVarint(UInt64(field) << 3 | wireType) }

    /// Seven bits at a time, least significant first; the high bit says more follow.
    private mutating func appendVarint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(rest & 0x7f) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }
}
