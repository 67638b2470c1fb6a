import Foundation
import Testing

/// The real binary under mpirun: these start several processes, so they run one at a time.
@Suite(.serialized, .timeLimit(.minutes(10))) struct MPITests {
    let scratch: ScratchDirectory
    var data: String { MPITests.dataset.path }

    /// 1400 faces: 1120 training images, 17 steps of 64 per epoch, so 20 steps cross an epoch end.
    /// Made once for the whole suite.
    static let dataset: (directory: ScratchDirectory, path: String) = {
        let directory = try! ScratchDirectory()
        let path = directory.file("faces.vaeds")
        let made = try! runCommand(vaeBinary, ["synth", "--count", "1400", "--out", path])
        precondition(made.status == 0, "vae synth failed: \(made.error)")
        return (directory, path)
    }()

    init() throws {
        scratch = try ScratchDirectory()
    }

    func train(_ run: String, steps: Int = 20, extra: [String] = []) -> [String] {
        ["train", "--data", data, "--out", scratch.file(run), "--max-steps", "\(steps)", "--log-every", "1"] + extra
    }

    /// The loss of every logged training step (evaluations left out).
    func losses(_ run: String) throws -> [Double] {
        try String(contentsOfFile: scratch.file("\(run)/metrics.jsonl"), encoding: .utf8).split(separator: "\n").compactMap {
            let line = try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
            return line["eval"] == nil ? line["loss"] as? Double : nil
        }
    }

    /// 2, 3 and 4 ranks against one process, 2 and 20 steps. The gradient tree makes 2 ranks add
    /// exactly what one process adds, so their checkpoints and losses are the same bits. So do 4
    /// ranks at batch 128 (pieces of 32, a leaf of the tree), which also needs the allreduce to add
    /// the pieces pairwise, (0+1)+(2+3): MPI does not promise an order, but Open MPI at this message
    /// size does so (a checked property of this MPI, not of the program). 3 ranks split a batch of
    /// 64 into 22+21+21, which are not nodes of the tree, so their sums differ in the last bits;
    /// rounding then tips ReLUs that sit near zero and Adam turns that into step-sized differences
    /// of a few parameters: after 20 steps the test holds 3 ranks' losses to 1e-4 (measured within
    /// 2e-6) and parameters to 5e-3 in norm (measured 5e-4).
    @Test func rankCountsFollowTheSameTrajectory() throws {
        for steps in [2, 20] {
            for (ranks, batch) in [(2, 64), (3, 64), (4, 128)] {
                let single = "single\(batch)-\(steps)", run = "ranks\(ranks)-\(steps)"
                let options = ["--batch", "\(batch)"]
                if !FileManager.default.fileExists(atPath: scratch.file(single)) {
                    let result = try runCommand(vaeBinary, train(single, steps: steps, extra: options))
                    try #require(result.status == 0, "single process failed: \(result.error)")
                }
                let result = try runMPI(ranks: ranks, train(run, steps: steps, extra: options))
                try #require(result.status == 0, "\(ranks) ranks failed: \(result.error)")
                let referenceLosses = try losses(single), runLosses = try losses(run)
                // Only rank 0 writes metrics and prints: nothing appears twice.
                #expect(runLosses.count == referenceLosses.count)
                if ranks == 3 {
                    let reference = try checkpointParameters(scratch.file("\(single)/checkpoint.bin"))
                    let parameters = try checkpointParameters(scratch.file("\(run)/checkpoint.bin"))
                    if steps == 2 {
                        #expect(maximumRelativeDifference(reference, parameters) < 1e-5)
                    } else {
                        #expect(normRelativeDifference(reference, parameters) < 5e-3)
                    }
                    #expect(zip(runLosses, referenceLosses).allSatisfy { abs($0 - $1) < 1e-4 * $1 })
                } else {
                    let checkpoint = { (run: String) in try Data(contentsOf: URL(fileURLWithPath: self.scratch.file("\(run)/checkpoint.bin"))) }
                    #expect(try checkpoint(run) == checkpoint(single), "\(ranks) ranks, \(steps) steps: checkpoints differ")
                    #expect(runLosses == referenceLosses, "\(ranks) ranks, \(steps) steps")
                }
                #expect(result.output.components(separatedBy: "training 64x64x3").count == 2)
                #expect(result.output.contains("\(ranks) MPI ranks"))
                #expect(result.error.isEmpty, "stderr: \(result.error)")
            }
        }
    }

    @Test func tcpTransportGivesTheSameResult() throws {
        let shared = try runMPI(ranks: 2, train("shared"))
        let tcp = try runMPI(ranks: 2, train("tcp"), mpirunOptions: ["--mca", "btl", "tcp,self"])
        try #require(shared.status == 0 && tcp.status == 0, "\(shared.error)\(tcp.error)")
        let a = try checkpointParameters(scratch.file("shared/checkpoint.bin"))
        let b = try checkpointParameters(scratch.file("tcp/checkpoint.bin"))
        #expect(a == b)
    }

    /// A diverging run stops on every rank with one error line, and leaves the last checkpoint as it was.
    @Test func nonFiniteLossStopsAllRanksAndKeepsTheCheckpoint() throws {
        let first = try runMPI(ranks: 2, train("diverge", steps: 17))
        try #require(first.status == 0, "\(first.error)")
        let checkpoint = scratch.file("diverge/checkpoint.bin")
        let saved = try Data(contentsOf: URL(fileURLWithPath: checkpoint))
        let diverged = try runMPI(ranks: 2, train("diverge", steps: 40, extra: ["--resume", "--lr", "1e30"]))
        #expect(diverged.status != 0)
        let errors = diverged.error.split(separator: "\n").filter { $0.contains("error:") }
        #expect(errors.count == 1 && errors[0].contains("not finite"), "stderr: \(diverged.error)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: checkpoint)) == saved)
    }

    /// Ranks whose parameters drift apart are caught at the next check. Here mpirun's MPMD syntax
    /// gives rank 1 another learning rate, so its Adam steps differ from rank 0's.
    @Test func driftingRanksAreStopped() throws {
        let common = train("drift", steps: 20, extra: ["--check-every", "5"])
        let result = try runCommand("/usr/bin/env", ["mpirun", "--oversubscribe", "--bind-to", "none",
                                                     "-np", "1", vaeBinary] + common + ["--lr", "0.0005", ":",
                                                     "-np", "1", vaeBinary] + common + ["--lr", "0.0006"],
                                    environment: mpirunEnvironment)
        #expect(result.status != 0)
        let errors = result.error.split(separator: "\n").filter { $0.contains("error:") }
        #expect(errors.count == 1 && errors[0].contains("step 5: the parameters of rank(s) 1 differ from rank 0's"),
                "stderr: \(result.error)")
    }

    /// Resuming from a checkpoint continues exactly, bit for bit, where an uninterrupted run would be.
    @Test func resumeContinuesTheSameTrajectory() throws {
        let straight = try runCommand(vaeBinary, train("straight", steps: 30))
        let firstHalf = try runCommand(vaeBinary, train("halves", steps: 12))
        let secondHalf = try runCommand(vaeBinary, train("halves", steps: 30, extra: ["--resume"]))
        try #require(straight.status == 0 && firstHalf.status == 0 && secondHalf.status == 0,
                     "\(straight.error)\(firstHalf.error)\(secondHalf.error)")
        #expect(secondHalf.output.contains("resuming"))
        #expect(try checkpointParameters(scratch.file("straight/checkpoint.bin"))
                == checkpointParameters(scratch.file("halves/checkpoint.bin")))
        #expect(try losses("straight") == losses("halves"))
    }

    @Test func existingRunIsNeverOverwritten() throws {
        let first = try runCommand(vaeBinary, train("kept", steps: 2))
        try #require(first.status == 0, "\(first.error)")
        let metrics = try Data(contentsOf: URL(fileURLWithPath: scratch.file("kept/metrics.jsonl")))
        let again = try runCommand(vaeBinary, train("kept", steps: 2))
        #expect(again.status != 0 && again.error.contains("already holds a run"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: scratch.file("kept/metrics.jsonl"))) == metrics)
    }

    @Test(arguments: [
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--latent", "0"], "latent size must be between"),
        (["--encoder-channels", "32,x"], "comma-separated whole numbers"),
        (["--batch", "0"], "batch"),
        (["--threads", "0"], "--threads must be positive"),
        (["--data", "/nonexistent/faces.vaeds"], "/nonexistent/faces.vaeds"),
    ])
    func badInputGetsOneClearLine(arguments: [String], message: String) throws {
        var command = train("bad")
        if arguments[0] == "--data" { command[2] = arguments[1] } else { command += arguments }
        let result = try runCommand(vaeBinary, command)
        #expect(result.status != 0)
        let lines = result.error.split(separator: "\n").filter { !$0.isEmpty }
        #expect(lines.count == 1 && lines[0].contains(message), "stderr: \(result.error)")
    }
}
