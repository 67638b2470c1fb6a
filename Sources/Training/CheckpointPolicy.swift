import Foundation
import VAECluster
import VAEEngine

/// A checkpoint that verified (magic, sizes, checksum): the one a run resumes from, or a tool reads.
public struct IntactCheckpoint: Sendable {
    public let path: String
    public let info: CheckpointInfo
    /// One line for each newer checkpoint passed over as damaged, saying why.
    public let skipped: [String]
}

/// When a run writes checkpoints, where, how many it keeps, and which one a resume starts from.
///
/// Rank 0 writes `RUN_DIR/checkpoint-NNNNNNNN.bin`, named by the steps it holds, every `every`
/// steps, at the end of every epoch and of the run, and keeps the newest `keep`. The training loop
/// asks `isDue` after each step and calls `save`; anything else that must stop at a step boundary
/// can call `save` as well.
public final class CheckpointPolicy {
    /// A checkpoint of the seed preset (13.8 MB, written and flushed to disk) costs about 0.05 s.
    /// 500 steps of 64 images take about 25 s at the ~1,300 images/s of 2 cores, and a quarter of an
    /// hour or more on one core where an epoch (2,543 steps of CelebA) takes hours: a crash loses at
    /// most that, for 0.2% of the time here. Many cores make steps of milliseconds: raise it there.
    public static let defaultEvery = 500
    public static let defaultKeep = 3
    /// Runs from before numbered checkpoints wrote this one file: a resume reads it last, as the
    /// oldest, and it is never removed.
    static let legacyName = "checkpoint.bin"

    let runDirectory: String
    let every: Int
    let keep: Int
    private let communicator: Communicator
    private let model: VAE
    private let optimizer: Adam
    /// What every checkpoint of this run records; `save` sets the step.
    private let record: CheckpointInfo

    init(runDirectory: String, every: Int, keep: Int, record: CheckpointInfo, model: VAE, optimizer: Adam,
         communicator: Communicator) {
        self.runDirectory = runDirectory
        self.every = every
        self.keep = keep
        self.record = record
        self.model = model
        self.optimizer = optimizer
        self.communicator = communicator
    }

    /// Whether the loop checkpoints after `step` steps: every `every` steps, and at the end of every
    /// epoch (which the caller knows, with the end of the run).
    func isDue(step: Int, epochEnded: Bool) -> Bool { epochEnded || step % every == 0 }

    /// Writes the checkpoint of `step` (steps completed) and removes those no longer kept. Every
    /// rank calls it, and the ranks agree on the outcome: a write that fails (a full disk, no
    /// permission) stops every rank with rank 0's one line, its partial file removed and the
    /// previous checkpoints as they were.
    public func save(step: Int) throws {
        try collectively(communicator) {
            guard communicator.isRoot else { return }
            var info = record
            info.step = step
            try Checkpoint.write(info, model: model, optimizer: optimizer,
                                 to: runDirectory + "/" + CheckpointPolicy.fileName(step: step))
            try removeUnkept(newest: step)
        }
    }

    /// Keeps the `keep` newest checkpoints up to `newest`. Any beyond it were passed over as damaged
    /// when this run resumed from an older one; their steps run again and would replace them. Partial
    /// files that a crash left behind go too: this process alone writes here, and is not writing.
    private func removeUnkept(newest: Int) throws {
        let numbered = try CheckpointPolicy.numberedCheckpoints(in: runDirectory)
        let kept = Set(numbered.filter { $0.step <= newest }.prefix(keep).map(\.name))
        let partial = try FileManager.default.contentsOfDirectory(atPath: runDirectory)
            .filter { $0.hasPrefix("checkpoint-") && $0.hasSuffix(".partial") }
        for name in numbered.map(\.name).filter({ !kept.contains($0) }) + partial {
            do {
                try FileManager.default.removeItem(atPath: runDirectory + "/" + name)
            } catch {
                throw TrainingError("\(runDirectory)/\(name): cannot remove it: \(error.localizedDescription)")
            }
        }
    }

    /// What a resume may change (the learning rate and the epochs, returned as [old, new] by name
    /// for metrics.jsonl), and what it may not: another dataset, architecture, seed or batch would
    /// continue some other run, refused in one line naming each difference. (The leaf is taken from
    /// the checkpoint; see `Trainer.runLeaf`.)
    func changesOnResume(from checkpoint: IntactCheckpoint) throws -> [String: [Any]] {
        let old = checkpoint.info
        var refused: [String] = []
        if let checksum = old.datasetChecksum, checksum != record.datasetChecksum {
            refused.append(String(format: "dataset (checksum %016llx, now %016llx)", checksum, record.datasetChecksum ?? 0))
        }
        if old.config != record.config || old.parameters != record.parameters {
            refused.append("architecture (\(old.config.summary), now \(record.config.summary))")
        }
        if old.seed != record.seed { refused.append("--seed (\(old.seed), now \(record.seed))") }
        if old.batch != record.batch { refused.append("--batch (\(old.batch), now \(record.batch))") }
        guard refused.isEmpty else {
            throw TrainingError("\(checkpoint.path): this run differs from the checkpoint's in "
                                + refused.joined(separator: ", ") + "; resume with the same, or start a new run in another --out")
        }
        var changed: [String: [Any]] = [:]
        if old.learningRate != record.learningRate { changed["lr"] = [old.learningRate, record.learningRate] }
        if let epochs = old.epochs, epochs != record.epochs { changed["epochs"] = [epochs, record.epochs ?? 0] }
        return changed
    }

    // MARK: Files

    static func fileName(step: Int) -> String { String(format: "checkpoint-%08d.bin", step) }

    /// The numbered checkpoints of a run directory, newest first. Only names `fileName` gives count:
    /// a partial file is never taken for a checkpoint.
    static func numberedCheckpoints(in runDirectory: String) throws -> [(step: Int, name: String)] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: runDirectory)
        } catch {
            throw TrainingError("\(runDirectory): cannot list the run directory: \(error.localizedDescription)")
        }
        return names.compactMap { name -> (step: Int, name: String)? in
            guard name.hasPrefix("checkpoint-"), name.hasSuffix(".bin") else { return nil }
            let digits = name.dropFirst("checkpoint-".count).dropLast(".bin".count)
            guard digits.count >= 8, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let step = Int(digits) else { return nil }
            return (step, name)
        }.sorted { $0.step > $1.step }
    }

    /// The newest checkpoint of a run directory that verifies (magic, sizes, checksum), with a line
    /// for each newer one passed over: what `--resume` continues from, and what a tool reading a
    /// run's result should read. Numbered checkpoints come first, newest first, then an old run's
    /// `checkpoint.bin`. Throws, in one line, if there is none or none is intact.
    public static func newestIntactCheckpoint(in runDirectory: String) throws -> IntactCheckpoint {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: runDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TrainingError("\(runDirectory): no such run directory")
        }
        var names = try numberedCheckpoints(in: runDirectory).map(\.name)
        if FileManager.default.fileExists(atPath: runDirectory + "/" + legacyName) { names.append(legacyName) }
        guard !names.isEmpty else {
            throw TrainingError("\(runDirectory): no checkpoint to resume from (a run that stopped before its first "
                                + "checkpoint starts again in a new or emptied --out)")
        }
        var skipped: [String] = []
        for name in names {
            let path = runDirectory + "/" + name
            do {
                return IntactCheckpoint(path: path, info: try Checkpoint.readInfo(from: path), skipped: skipped)
            } catch let damage as DamagedCheckpoint {
                skipped.append("skipped \(name): \(damage.problem)")
            }
        }
        throw TrainingError("\(runDirectory): no intact checkpoint: " + skipped.joined(separator: "; "))
    }
}
