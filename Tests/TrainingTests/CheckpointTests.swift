import Foundation
import Testing
@testable import VAETraining

/// Checkpoints through the real binary: when they are written, which are kept, what a resume
/// takes and refuses, and what a failed write leaves. In the MPI suite, so these run one at a time.
extension MPITests {
    /// A checkpoint in the middle of an epoch continues bit for bit: a run stopped at step 8 (of 17
    /// per epoch) and resumed, by 1 process or by 2 ranks, writes the same final checkpoint and
    /// losses as a run that never stopped. Checkpoints every 4 steps, at the epoch's end and at the
    /// run's (4, 8, 12, 16, 17, 20): the run directory keeps the newest 3.
    @Test func midEpochCheckpointsResumeBitForBit() throws {
        let options = ["--leaf", "32", "--checkpoint-every", "4"]
        let straight = try runCommand(vaeBinary, train("straight", steps: 20, extra: options))
        let stopped = try runCommand(vaeBinary, train("stopped", steps: 8, extra: options))
        try #require(straight.status == 0 && stopped.status == 0, "\(straight.error)\(stopped.error)")
        #expect(try checkpointSteps("stopped") == [8, 4])
        try FileManager.default.copyItem(atPath: scratch.file("stopped"), toPath: scratch.file("stoppedRanks"))

        let resumed = try runCommand(vaeBinary, train("stopped", steps: 20, extra: options + ["--resume"]))
        let resumedOnRanks = try runMPI(ranks: 2, train("stoppedRanks", steps: 20, extra: options + ["--resume"]))
        try #require(resumed.status == 0 && resumedOnRanks.status == 0, "\(resumed.error)\(resumedOnRanks.error)")
        for run in ["stopped", "stoppedRanks"] {
            #expect(try checkpointBytes(run) == checkpointBytes("straight"), "\(run): final checkpoints differ")
            #expect(try losses(run) == losses("straight"), "\(run)")
            #expect(try checkpointSteps(run) == [20, 17, 16])
        }
        #expect(try checkpointSteps("straight") == [20, 17, 16])
    }

    /// A truncated checkpoint and one with a flipped byte are passed over with one line each, and
    /// the run resumes from the newest intact one, to the same bytes as a run that never stopped;
    /// the damaged files are replaced as their steps come again. With none intact, resuming is
    /// refused in one line.
    @Test func resumeSkipsDamagedCheckpoints() throws {
        let options = ["--leaf", "32", "--checkpoint-every", "2"]
        let straight = try runCommand(vaeBinary, train("straight", steps: 8, extra: options))
        let damaged = try runCommand(vaeBinary, train("damaged", steps: 6, extra: options))
        try #require(straight.status == 0 && damaged.status == 0, "\(straight.error)\(damaged.error)")
        #expect(try checkpointSteps("damaged") == [6, 4, 2])
        let newest = URL(fileURLWithPath: checkpointFile("damaged", step: 6))
        let truncated = try Data(contentsOf: newest)
        try truncated.prefix(truncated.count - 1000).write(to: newest)
        let middle = URL(fileURLWithPath: checkpointFile("damaged", step: 4))
        var flipped = try Data(contentsOf: middle)
        flipped[flipped.count / 2] ^= 0x01
        try flipped.write(to: middle)

        let resumed = try runCommand(vaeBinary, train("damaged", steps: 8, extra: options + ["--resume"]))
        try #require(resumed.status == 0, "\(resumed.error)")
        let skipped = resumed.output.split(separator: "\n").filter { $0.hasPrefix("skipped ") }
        #expect(skipped.count == 2, "\(resumed.output)")
        #expect(skipped.first?.hasPrefix("skipped checkpoint-00000006.bin: truncated or damaged") == true)
        #expect(skipped.last?.hasPrefix("skipped checkpoint-00000004.bin: checksum mismatch") == true)
        #expect(resumed.output.contains("at step 2 from"), "\(resumed.output)")
        #expect(try checkpointBytes("damaged") == checkpointBytes("straight"))
        #expect(try checkpointSteps("damaged") == [8, 6, 4])
        for step in try checkpointSteps("damaged") {
            #expect(throws: Never.self) { try Checkpoint.readInfo(from: checkpointFile("damaged", step: step)) }
        }

        for step in try checkpointSteps("damaged") {
            try Data(count: 10).write(to: URL(fileURLWithPath: checkpointFile("damaged", step: step)))
        }
        let refused = try runCommand(vaeBinary, train("damaged", steps: 10, extra: options + ["--resume"]))
        let lines = refused.error.split(separator: "\n")
        #expect(refused.status != 0)
        #expect(lines.count == 1 && lines[0].contains("no intact checkpoint: skipped checkpoint-00000008.bin: not a checkpoint"),
                "stderr: \(refused.error)")
    }

    /// A resume continues its own run: another dataset, architecture, seed or batch is refused in
    /// one line naming what differs, and nothing is written. Another learning rate or number of
    /// epochs is allowed, and recorded in metrics.jsonl with the step it took effect at.
    @Test func resumeRefusesAnotherRunAndRecordsAllowedChanges() throws {
        let first = try runCommand(vaeBinary, train("run", steps: 2))
        try #require(first.status == 0, "\(first.error)")
        let otherData = scratch.file("other.vaeds")
        let made = try runCommand(vaeBinary, ["synth", "--count", "1400", "--seed", "2", "--out", otherData])
        try #require(made.status == 0, "\(made.error)")
        let metrics = try Data(contentsOf: URL(fileURLWithPath: scratch.file("run/metrics.jsonl")))

        var anotherDataset = train("run", steps: 4, extra: ["--resume"])
        anotherDataset[2] = otherData
        for (command, named) in [
            (anotherDataset, "dataset (checksum "),
            (train("run", steps: 4, extra: ["--resume", "--latent", "64"]), "architecture (64x64x3, encoder 32-32-32, latent 128"),
            (train("run", steps: 4, extra: ["--resume", "--seed", "2", "--batch", "32"]), "--seed (1, now 2), --batch (64, now 32)"),
        ] {
            let result = try runCommand(vaeBinary, command)
            let lines = result.error.split(separator: "\n")
            #expect(result.status != 0)
            #expect(lines.count == 1 && lines[0].contains("this run differs from the checkpoint's in \(named)"),
                    "stderr: \(result.error)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: scratch.file("run/metrics.jsonl"))) == metrics)
        #expect(try checkpointSteps("run") == [2])

        let changed = try runCommand(vaeBinary, train("run", steps: 4, extra: ["--resume", "--lr", "0.001", "--epochs", "3"]))
        try #require(changed.status == 0, "\(changed.error)")
        let events = try String(contentsOfFile: scratch.file("run/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .filter { $0.contains("\"event\"") }
        #expect(events == [#"{"changed":{"epochs":[15,3],"lr":[0.0005,0.001]},"event":"resume","step":2}"#])
    }

    /// A checkpoint that cannot be written stops the run with one line, on 2 ranks as alone, and
    /// leaves the previous checkpoints as they were, with no partial file: where the file cannot be
    /// created (a directory in the way of step 2's), and on a full disk (a 30 MB tmpfs: room for two
    /// checkpoints of 13.8 MB, not three).
    @Test func aFailedCheckpointWriteStopsTheRunAndKeepsThePreviousOnes() throws {
        let first = try runCommand(vaeBinary, train("blocked", steps: 1))
        try #require(first.status == 0, "\(first.error)")
        let previous = try checkpointBytes("blocked")
        try FileManager.default.createDirectory(atPath: scratch.file("blocked/checkpoint-00000002.bin.partial"),
                                                withIntermediateDirectories: false)
        let blocked = try runMPI(ranks: 2, train("blocked", steps: 3, extra: ["--resume", "--checkpoint-every", "1"]),
                                 mpirunOptions: ["--quiet"])
        #expect(blocked.status != 0)
        let lines = blocked.error.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("error: ")
                && lines[0].contains("checkpoint-00000002.bin: cannot write: Is a directory"), "stderr: \(blocked.error)")
        #expect(try checkpointSteps("blocked") == [1])
        #expect(try checkpointBytes("blocked") == previous)

        let full = scratch.file("full")
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: false)
        let mounted = try runCommand("/usr/bin/env", ["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", full])
        guard mounted.status == 0 else {
            print("skipping the full-disk case: mount -t tmpfs failed (not root, or no CAP_SYS_ADMIN): \(mounted.error)")
            return
        }
        defer { _ = try? runCommand("/usr/bin/env", ["umount", full]) }
        let filled = try runCommand(vaeBinary, train("full/run", steps: 3, extra: ["--checkpoint-every", "1"]))
        #expect(filled.status != 0)
        let fullLines = filled.error.split(separator: "\n")
        #expect(fullLines.count == 1 && fullLines[0].contains("checkpoint-00000003.bin: cannot write: No space left on device"),
                "stderr: \(filled.error)")
        let left = try FileManager.default.contentsOfDirectory(atPath: full + "/run")
        #expect(!left.contains { $0.hasSuffix(".partial") }, "\(left)")
        #expect(try CheckpointPolicy.numberedCheckpoints(in: full + "/run").map(\.step) == [2, 1])
        #expect(try CheckpointPolicy.newestIntactCheckpoint(in: full + "/run").info.step == 2)
    }
}
