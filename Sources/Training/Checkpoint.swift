#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import VAEData
import VAEEngine

/// Everything needed to continue a run exactly where it stopped: the parameters, Adam's moments
/// and step, and the position in the data.
///
/// File layout (little-endian):
///   [0, 64)       magic "VAECKPT\0", version u32, 4 zero bytes, JSON length u64, parameter count u64,
///                 XXH64 of everything after these 64 bytes u64, 24 zero bytes
///   JSON          `CheckpointInfo`
///   3 · count     Float32: parameters, Adam first moments, Adam second moments
/// Written beside the target, flushed to disk and renamed into place (see `writeAtomically`), so a
/// crash never leaves half a checkpoint under a checkpoint's name.
public struct CheckpointInfo: Codable, Equatable, Sendable {
    public var config: ModelConfig
    /// Optimisation steps completed: the next step to run.
    public var step: Int
    public var seed: UInt64
    public var batch: Int
    /// Images per leaf of the gradient tree: resuming with another would sum in another order.
    public var leaf: Int
    public var learningRate: Float
    /// Name and shape of every parameter, in buffer order.
    public var parameters: [String]
    /// The checksum in the dataset file's header: resuming on other data would continue another run.
    /// Nil in checkpoints from before it was recorded, which resume without the check.
    public var datasetChecksum: UInt64?
    /// The run's --epochs, so that a resume that changes it can say so. Nil in older checkpoints.
    public var epochs: Int?

    public init(config: ModelConfig, step: Int, seed: UInt64, batch: Int, leaf: Int, learningRate: Float,
                parameters: [String], datasetChecksum: UInt64? = nil, epochs: Int? = nil) {
        self.config = config
        self.step = step
        self.seed = seed
        self.batch = batch
        self.leaf = leaf
        self.learningRate = learningRate
        self.parameters = parameters
        self.datasetChecksum = datasetChecksum
        self.epochs = epochs
    }

    /// Checkpoints without `leaf` come from before it was a run parameter, when leaves were fixed at
    /// 32 (since commit bad6749): they read as 32 and resume as that program resumed them.
    public init(from decoder: Decoder) throws {
        let fields = try decoder.container(keyedBy: CodingKeys.self)
        config = try fields.decode(ModelConfig.self, forKey: .config)
        step = try fields.decode(Int.self, forKey: .step)
        seed = try fields.decode(UInt64.self, forKey: .seed)
        batch = try fields.decode(Int.self, forKey: .batch)
        leaf = try fields.decodeIfPresent(Int.self, forKey: .leaf) ?? 32
        learningRate = try fields.decode(Float.self, forKey: .learningRate)
        parameters = try fields.decode([String].self, forKey: .parameters)
        datasetChecksum = try fields.decodeIfPresent(UInt64.self, forKey: .datasetChecksum)
        epochs = try fields.decodeIfPresent(Int.self, forKey: .epochs)
    }
}

public enum Checkpoint {
    static let magic: [UInt8] = Array("VAECKPT\0".utf8)
    static let version: UInt32 = 1
    static let headerBytes = 64

    /// What a checkpoint holds and what rank 0 broadcasts at the start, in file order.
    static func stateBuffers(model: VAE, optimizer: Adam) -> [FloatBuffer] {
        [model.parameters.values, optimizer.firstMoment, optimizer.secondMoment]
    }

    public static func describe(_ store: ParameterStore) -> [String] {
        store.parameters.map { "\($0.name) \($0.shape)" }
    }

    public static func write(_ info: CheckpointInfo, model: VAE, optimizer: Adam, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys  // the same state gives the same bytes, whatever the rank count
        let json = try encoder.encode(info)
        let count = model.parameters.count
        var body = Data(json)
        for buffer in stateBuffers(model: model, optimizer: optimizer) {
            body.append(UnsafeBufferPointer(start: buffer.pointer, count: count))
        }
        let checksum = body.withUnsafeBytes { xxHash64($0) }
        var header = magic
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { header += $0 } }
        append(version)
        append(UInt32(0))
        append(UInt64(json.count))
        append(UInt64(count))
        append(checksum)
        header += [UInt8](repeating: 0, count: headerBytes - header.count)
        try writeAtomically(Data(header) + body, to: path)
    }

    /// Reads a checkpoint into `model` and `optimizer`, which must have the checkpoint's architecture.
    public static func read(from path: String, into model: VAE, optimizer: Adam) throws -> CheckpointInfo {
        let (info, floats) = try load(path)
        guard info.config == model.config, info.parameters == describe(model.parameters) else {
            throw TrainingError("\(path): the checkpoint's model (\(info.config.summary)) differs from this run's "
                                + "(\(model.config.summary)); use the same architecture flags or another --out")
        }
        let count = model.parameters.count
        floats.withUnsafeBytes { raw in
            // The floats follow JSON of any length, so they may be unaligned: copy bytes.
            for (i, buffer) in stateBuffers(model: model, optimizer: optimizer).enumerated() {
                UnsafeMutableRawPointer(buffer.pointer).copyMemory(from: raw.baseAddress! + i * count * 4, byteCount: count * 4)
            }
        }
        optimizer.restore(step: info.step)
        return info
    }

    /// What a checkpoint says about its run, without loading its state (to size a model for it).
    public static func readInfo(from path: String) throws -> CheckpointInfo {
        try load(path).info
    }

    /// The checked content of a checkpoint: its JSON, and the bytes of its float arrays.
    private static func load(_ path: String) throws -> (info: CheckpointInfo, floats: Data) {
        func fail(_ problem: String) -> DamagedCheckpoint { DamagedCheckpoint(path: path, problem: problem) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw fail("cannot read the checkpoint: \(String(cString: strerror(errno)))")
        }
        guard data.count >= headerBytes, Array(data.prefix(8)) == magic else {
            throw fail("not a checkpoint (too short or no VAECKPT magic)")
        }
        func u64(_ offset: Int) -> UInt64 {
            data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
        }
        let version = data.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        guard version == Checkpoint.version else { throw fail("checkpoint version \(version), this program reads \(Checkpoint.version)") }
        let (jsonBytes, count) = (Int(u64(16)), Int(u64(24)))
        guard jsonBytes < data.count, count < data.count, data.count == headerBytes + jsonBytes + 3 * count * 4 else {
            throw fail("truncated or damaged: \(data.count) bytes do not match the sizes in its header")
        }
        let body = data.dropFirst(headerBytes)
        guard body.withUnsafeBytes({ xxHash64($0) }) == u64(32) else { throw fail("checksum mismatch: the file is corrupt") }
        do {
            let info = try JSONDecoder().decode(CheckpointInfo.self, from: body.prefix(jsonBytes))
            return (info, body.dropFirst(jsonBytes))
        } catch {
            throw fail("its record does not decode: \(error)")
        }
    }
}

/// A checkpoint file that cannot be used: unreadable, truncated, corrupt, or of another version.
public struct DamagedCheckpoint: Error, CustomStringConvertible {
    public let path: String
    /// What is wrong with it, without the path.
    public let problem: String
    public var description: String { "\(path): \(problem)" }
}

/// Writes `data` beside `path`, flushes it to disk and renames it into place, then flushes the
/// directory: readers see the old file or the new one, never a part, and once this returns the new
/// file survives a power failure (the rename alone could reach the disk before the data, or not at
/// all). On failure (a full disk, no permission) the partial file is removed and the old one stays.
func writeAtomically(_ data: Data, to path: String) throws {
    // One process writes a run directory, so the name need not be unique; it is predictable, and
    // never taken for a checkpoint (`CheckpointPolicy` reads only its own names).
    let temporary = path + ".partial"
    func failure(_ what: String) -> TrainingError {
        let reason = String(cString: strerror(errno))
        unlink(temporary)
        return TrainingError("\(path): cannot \(what): \(reason)")
    }
    let file = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard file >= 0 else { throw failure("write") }
    var written = 0
    let wroteAll = data.withUnsafeBytes { bytes -> Bool in
        while written < bytes.count {
            let count = write(file, bytes.baseAddress! + written, bytes.count - written)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return false }
            written += count
        }
        return true
    }
    guard wroteAll, fsync(file) == 0 else {
        let error = failure("write")  // before close, which may change errno
        close(file)
        throw error
    }
    guard close(file) == 0 else { throw failure("write") }
    guard rename(temporary, path) == 0 else { throw failure("rename \(temporary) into place") }
    // The rename is an entry in the directory: it is on disk once the directory is.
    let parent = (path as NSString).deletingLastPathComponent
    let directory = open(parent.isEmpty ? "." : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    defer { if directory >= 0 { close(directory) } }
    guard directory >= 0, fsync(directory) == 0 else {
        throw TrainingError("\(path): cannot flush its directory to disk: \(String(cString: strerror(errno)))")
    }
}
