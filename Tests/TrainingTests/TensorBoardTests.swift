import Foundation
import Testing
import VAEData
@testable import VAETraining

/// Where the TensorBoard test keeps its virtual environment with `pip install tensorboard`, across
/// test runs: creating it takes a minute or more, reusing it a fraction of a second. Remove the
/// directory to take a newer TensorBoard.
let tensorBoardVenv = "/tmp/vae-tests-tensorboard-venv"

/// The venv's python once it imports TensorBoard (created if need be), or why it cannot.
let tensorBoardPython: Result<String, TensorBoardUnavailable> = {
    let python = tensorBoardVenv + "/bin/python"
    let imports = { (try? runCommand(python, ["-c", "import tensorboard"], timeLimit: 120).status == 0) ?? false }
    if imports() { return .success(python) }
    try? FileManager.default.removeItem(atPath: tensorBoardVenv)  // a half-made one from an interrupted run
    for step in [["/usr/bin/env", "python3", "-m", "venv", tensorBoardVenv],
                 [python, "-m", "pip", "install", "--quiet", "tensorboard"]] {
        guard let result = try? runCommand(step[0], Array(step.dropFirst()), timeLimit: 600), result.status == 0 else {
            try? FileManager.default.removeItem(atPath: tensorBoardVenv)
            return .failure(TensorBoardUnavailable(reason: "`\(step.joined(separator: " "))` failed"))
        }
    }
    return imports() ? .success(python) : .failure(TensorBoardUnavailable(reason: "the new venv cannot import tensorboard"))
}()

struct TensorBoardUnavailable: Error, CustomStringConvertible {
    var reason: String
    var description: String { "TensorBoard from PyPI is not available (\(reason))" }
}

/// Skips a test, saying why, when no venv with TensorBoard can be made (no python3-venv, no
/// PyPI), except under CI, where it must run and fail.
let needsTensorBoard = Testing.ConditionTrait.enabled(
    if: (try? tensorBoardPython.get()) != nil || runningInCI,
    "no Python venv with TensorBoard: `python3 -m venv` or `pip install tensorboard` (PyPI) failed")

/// RUN_DIR/tensorboard and RUN_DIR/loss.png through the real binary, on a tiny model and dataset.
@Suite(.timeLimit(.minutes(10))) struct TensorBoardTests {
    let scratch: ScratchDirectory
    let data: String, run: String

    init() throws {
        scratch = try ScratchDirectory()
        data = scratch.file("faces.vaeds")
        run = scratch.file("run")
        try vae(["synth", "--count", "300", "--out", data])
    }

    func vae(_ arguments: [String]) throws {
        let result = try runCommand(vaeBinary, arguments)
        try #require(result.status == 0, "vae \(arguments.joined(separator: " ")) failed: \(result.error)")
    }

    /// 15 steps per epoch (240 training images of the 300, batch 16), logged every 5, grids every 7.
    func train(epochs: Int, resume: Bool = false) throws {
        try vae(["train", "--data", data, "--out", run, "--epochs", "\(epochs)", "--batch", "16", "--log-every", "5",
                 "--sample-every", "7", "--checkpoint-every", "5", "--encoder-channels", "8,8,8", "--latent", "8",
                 "--decoder-dense", "32", "--threads", "1"] + (resume ? ["--resume"] : []))
    }

    func eventFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: run + "/tensorboard").sorted().map { run + "/tensorboard/" + $0 }
    }

    /// CRC-32C's check value (RFC 3720 / the Castagnoli paper's "123456789").
    @Test func crc32cMatchesItsCheckValue() {
        #expect(crc32c(Data("123456789".utf8)) == 0xe306_9283)
        #expect(crc32c(Data()) == 0)
    }

    /// The project's reader in this file parses every record, verifies both CRCs with the mask
    /// written out here, and finds the first record's file_version, one value per tag and step
    /// equal (as float32) to metrics.jsonl's, and the grids as the PNG files' bytes.
    @Test func eventsFileHoldsTheMetricsAndGrids() throws {
        try train(epochs: 1)
        let files = try eventFiles()
        try #require(files.count == 1 && (files[0] as NSString).lastPathComponent.hasPrefix("events.out.tfevents."))
        let events = try readEventFile(files[0])
        #expect(events.first?.fileVersion == "brain.Event:2")
        #expect(events.allSatisfy { $0.wallTime > 1.7e9 })

        var scalars: [ScalarKey: Float] = [:]
        for event in events {
            for (tag, value) in event.scalars {
                #expect(scalars.updateValue(value, forKey: ScalarKey(tag: tag, step: event.step)) == nil,
                        "\(tag) at step \(event.step) twice")
            }
        }
        #expect(scalars == (try expectedScalars()))
        #expect(scalars.keys.filter { $0.tag == "train/loss" }.map(\.step).sorted() == [5, 10, 15])

        let images = events.flatMap { event in event.images.map { (event.step, $0) } }
        #expect(images.map { "\($0.1.tag)@\($0.0)" }
            == ["reconstructions@7", "samples@7", "reconstructions@14", "samples@14", "reconstructions@15", "samples@15"])
        for (step, image) in images {
            let name = step == 15 ? "epoch001" : String(format: "step%08d", step)
            let path = "\(run)/\(image.tag)-\(name).png"
            #expect(image.png == (try Data(contentsOf: URL(fileURLWithPath: path))))
            let decoded = try readPNG(path: path)
            #expect(image.width == decoded.width && image.height == decoded.height && image.colorspace == 3)
        }
    }

    /// A run resumed from an earlier checkpoint than its last step (as after a crash: steps 11 to
    /// 15 run again) writes a second file that starts with a SessionLog START at step 11, and
    /// TensorBoard's own reader (EventAccumulator, from PyPI) sees each scalar of metrics.jsonl once,
    /// with its value, and the grids of both processes.
    @Test(needsTensorBoard) func tensorBoardReadsTheResumedRunOnce() throws {
        let python = try tensorBoardPython.get()
        try train(epochs: 1)
        try FileManager.default.removeItem(atPath: run + "/checkpoint-00000015.bin")
        try train(epochs: 2, resume: true)
        let files = try eventFiles()
        try #require(files.count == 2)
        let resumed = try readEventFile(files[1])
        #expect(resumed.count > 2 && resumed[1].sessionStart && resumed[1].step == 11)
        #expect(try readEventFile(files[0]).contains { $0.step == 15 && !$0.scalars.isEmpty }, "steps to be replaced")

        let script = scratch.file("read_events.py")
        try """
            import sys
            from tensorboard.backend.event_processing import event_accumulator as ea
            accumulator = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
            accumulator.Reload()
            tags = accumulator.Tags()
            for tag in tags["scalars"]:
                for event in accumulator.Scalars(tag):
                    print("scalar", tag, event.step, event.value.hex())
            for tag in tags["images"]:
                for event in accumulator.Images(tag):
                    print("image", tag, event.step, event.width, event.height)
            """.write(toFile: script, atomically: true, encoding: .utf8)
        let result = try runCommand(python, [script, run + "/tensorboard"], timeLimit: 120)
        try #require(result.status == 0, "\(result.error)")

        var scalars: [ScalarKey: Float] = [:], images: [String] = []
        for line in result.output.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            if words[0] == "scalar" {
                let key = ScalarKey(tag: words[1], step: Int(words[2])!)
                // Python's float.hex() (0x1.0c00000000000p+8): exact, unlike a decimal print.
                #expect(scalars.updateValue(Float(Double(words[3])!), forKey: key) == nil, "\(key) twice")
            } else {
                images.append(words[1...].joined(separator: " "))
            }
        }
        #expect(scalars == (try expectedScalars()))
        #expect(scalars.keys.filter { $0.tag == "valid/loss" }.map(\.step).sorted() == [15, 30])
        let width = 8 * (64 + 2) + 2, height = 2 * (64 + 2) + 2
        #expect(images.sorted() == ["reconstructions", "samples"].flatMap { tag in
            [7, 14, 15, 21, 28, 30].map { "\(tag) \($0) \(width) \(height)" }
        }.sorted())
    }

    /// loss.png has the plot's size after the first epoch, and is redrawn, with other pixels, after
    /// the second.
    @Test func lossPlotIsRedrawnEachEpoch() throws {
        try train(epochs: 1)
        let first = try readPNG(path: run + "/loss.png")
        #expect(first.width == LossPlot.width && first.height == LossPlot.height)
        #expect(Set(first.rgb).count > 2, "more than a blank picture")
        try train(epochs: 2, resume: true)
        let second = try readPNG(path: run + "/loss.png")
        #expect(second.width == LossPlot.width && second.height == LossPlot.height)
        #expect(second.rgb != first.rgb)
    }

    /// metrics.jsonl as TensorBoard scalars: train/... for logged steps, valid/... for evaluations.
    func expectedScalars() throws -> [ScalarKey: Float] {
        var expected: [ScalarKey: Float] = [:]
        for line in try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n") {
            let record = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            guard let step = record["step"] as? Int, record["event"] == nil else { continue }
            let evaluation = record["eval"] as? Bool == true
            let names = evaluation ? ["loss", "recon", "kl"] : ["loss", "recon", "kl", "images_per_s"]
            for name in names {
                let tag = (evaluation ? record["partition"] as! String : "train") + "/" + name
                expected[ScalarKey(tag: tag, step: step)] = Float(record[name] as! Double)
            }
        }
        return expected
    }
}

struct ScalarKey: Hashable, CustomStringConvertible {
    var tag: String
    var step: Int
    var description: String { "\(tag) at step \(step)" }
}

// MARK: A reader of event files, written from the format's description, independent of the writer

struct TensorBoardEvent {
    var wallTime = 0.0
    var step = 0
    var fileVersion: String?
    var sessionStart = false
    var scalars: [(tag: String, value: Float)] = []
    var images: [(tag: String, width: Int, height: Int, colorspace: Int, png: Data)] = []
}

struct EventFileError: Error, CustomStringConvertible {
    var description: String
}

/// Every record of an events file, checking its framing and both masked CRC-32Cs.
func readEventFile(_ path: String) throws -> [TensorBoardEvent] {
    let file = try Data(contentsOf: URL(fileURLWithPath: path))
    var events: [TensorBoardEvent] = []
    var offset = 0
    while offset < file.count {
        guard file.count - offset >= 12 else { throw EventFileError(description: "truncated header at byte \(offset)") }
        let lengthBytes = file.subdata(in: offset..<(offset + 8))
        let length = Int(littleEndian(lengthBytes))
        guard littleEndian(file.subdata(in: (offset + 8)..<(offset + 12))) == masked(crc32c(lengthBytes)) else {
            throw EventFileError(description: "bad length CRC at byte \(offset)")
        }
        let start = offset + 12
        guard file.count - start >= length + 4 else { throw EventFileError(description: "truncated record at byte \(offset)") }
        let data = file.subdata(in: start..<(start + length))
        guard littleEndian(file.subdata(in: (start + length)..<(start + length + 4))) == masked(crc32c(data)) else {
            throw EventFileError(description: "bad data CRC at byte \(offset)")
        }
        events.append(try decodeEvent(data))
        offset = start + length + 4
    }
    return events
}

/// TFRecord's mask, as TensorFlow's documentation gives it.
private func masked(_ crc: UInt32) -> UInt64 {
    UInt64(((crc >> 15) | (crc << 17)) &+ 0xa282_ead8)
}

private func littleEndian(_ bytes: Data) -> UInt64 {
    bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
}

private func decodeEvent(_ data: Data) throws -> TensorBoardEvent {
    var event = TensorBoardEvent()
    for field in try protobufFields(data) {
        switch field.number {
        case 1: event.wallTime = Double(bitPattern: field.value)
        case 2: event.step = Int(field.value)
        case 3: event.fileVersion = String(decoding: field.bytes, as: UTF8.self)
        case 5:
            for value in try protobufFields(field.bytes) where value.number == 1 {
                let parts = try protobufFields(value.bytes)
                let tag = String(decoding: parts.first { $0.number == 1 }?.bytes ?? Data(), as: UTF8.self)
                if let scalar = parts.first(where: { $0.number == 2 }) {
                    event.scalars.append((tag, Float(bitPattern: UInt32(scalar.value))))
                }
                if let image = parts.first(where: { $0.number == 4 }) {
                    let fields = try protobufFields(image.bytes)
                    let number = { (n: Int) in Int(fields.first { $0.number == n }?.value ?? 0) }
                    event.images.append((tag, number(2), number(1), number(3),
                                         fields.first { $0.number == 4 }?.bytes ?? Data()))
                }
            }
        case 7: event.sessionStart = try protobufFields(field.bytes).contains { $0.number == 1 && $0.value == 1 }
        default: throw EventFileError(description: "unexpected Event field \(field.number)")
        }
    }
    return event
}

/// The fields of a protobuf message: numbers with their varint or fixed value, or their bytes.
private func protobufFields(_ data: Data) throws -> [(number: Int, value: UInt64, bytes: Data)] {
    let bytes = [UInt8](data)
    var fields: [(number: Int, value: UInt64, bytes: Data)] = []
    var i = 0
    func varint() throws -> UInt64 {
        var value: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard i < bytes.count, shift < 64 else { throw EventFileError(description: "bad varint") }
            let byte = bytes[i]
            i += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
    }
    func take(_ count: Int) throws -> [UInt8] {
        guard count >= 0, bytes.count - i >= count else { throw EventFileError(description: "field past the end") }
        defer { i += count }
        return Array(bytes[i..<(i + count)])
    }
    while i < bytes.count {
        let key = try varint()
        let number = Int(key >> 3)
        switch key & 7 {
        case 0: fields.append((number, try varint(), Data()))
        case 1: fields.append((number, try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }, Data()))
        case 2: fields.append((number, 0, Data(try take(Int(try varint())))))
        case 5: fields.append((number, try take(4).reversed().reduce(0) { $0 << 8 | UInt64($1) }, Data()))
        default: throw EventFileError(description: "unknown wire type \(key & 7)")
        }
    }
    return fields
}
