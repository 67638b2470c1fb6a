import Foundation
import Testing
import VAEEngine
@testable import VAETraining

/// The real binary under mpirun: these start several processes, so they run one at a time.
// The limit is per test, and generous: the debug pass runs the unoptimised binary (the longest
// test, rankCountsFollowTheSameTrajectory, took 5 minutes there); runCommand's own limit per
// command catches a hang sooner.
@Suite(.serialized, .timeLimit(.minutes(20))) struct MPITests: RunDirectoryTests {
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

    /// The path of a run's newest checkpoint (by the step in its name): its last, once it has finished.
    func newestCheckpoint(_ run: String) throws -> String {
        let directory = scratch.file(run)
        let newest = try #require(try CheckpointPolicy.numberedCheckpoints(in: directory).first, "\(run) has no checkpoint")
        return directory + "/" + newest.name
    }

    /// The loss of every logged training step (evaluations left out).
    func losses(_ run: String) throws -> [Double] {
        try String(contentsOfFile: scratch.file("\(run)/metrics.jsonl"), encoding: .utf8).split(separator: "\n").compactMap {
            let line = try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
            return line["eval"] == nil ? line["loss"] as? Double : nil
        }
    }

    /// 2, 3 and 4 ranks against one process, after 1, 2 and 20 steps. The gradient tree makes 2 ranks
    /// add exactly what one process adds, so their checkpoints and losses are the same bits. So do 4
    /// ranks at batch 128 (pieces of 32, a leaf of the tree), which also needs the allreduce to add
    /// the pieces pairwise, (0+1)+(2+3): MPI does not promise an order; Open MPI 4.1 does so with its
    /// default choice for 4 ranks and this 4.6 MB buffer, and with coll_tuned_allreduce_algorithm 3
    /// (recursive doubling) or 6 (Rabenseifner), but not with 1, 2, 4 or 5 (basic linear,
    /// nonoverlapping, ring, segmented ring), checked by hand with coll_tuned_use_dynamic_rules 1.
    ///
    /// 3 ranks split a batch of 64 into 22+21+21, which are not nodes of the tree, so their sums
    /// differ in the last bits. After 1 step Adam's first moment is 0.1·g, the gradient itself: it
    /// agrees within 4e-6 of its largest value (measured 1.4e-6), which a gradient of the wrong
    /// scale or a lost piece would not. Parameters cannot be held that close: a gradient that is the
    /// rounding residue of a cancelling sum (|g| ~ 1e-7, the largest is 56) gets an Adam step of a
    /// good part of the learning rate, its sign and size set by rounding (after 1 step, 126
    /// parameters differ by more than 1e-5 of the largest parameter, one by 8e-4). So they are compared
    /// in norm: within 5e-5 after 2 steps (measured 1.7e-5), 5e-3 after 20 steps (measured 1.5e-3),
    /// when rounding has tipped ReLUs near zero; losses within 1e-5 (measured 3.3e-6).
    @Test func rankCountsFollowTheSameTrajectory() throws {
        for steps in [1, 2, 20] {
            for (ranks, batch) in [(2, 64), (3, 64), (4, 128)] {
                let single = "single\(batch)-\(steps)", run = "ranks\(ranks)-\(steps)"
                let options = ["--batch", "\(batch)", "--leaf", "32"]  // the default leaf depends on the cores
                if !FileManager.default.fileExists(atPath: scratch.file(single)) {
                    let result = try runCommand(vaeBinary, train(single, steps: steps, extra: options))
                    try #require(result.status == 0, "single process failed: \(result.error)")
                }
                let result = try runMPI(ranks: ranks, train(run, steps: steps, extra: options))
                try #require(result.status == 0, "\(ranks) ranks failed: \(result.error)")
                let referenceLosses = try losses(single), runLosses = try losses(run)
                // Only rank 0 writes metrics and prints: nothing appears twice.
                #expect(runLosses.count == referenceLosses.count)
                let referenceCheckpoint = try newestCheckpoint(single)
                let checkpoint = try newestCheckpoint(run)
                if ranks == 3 {
                    if steps == 1 {
                        let difference = maximumRelativeDifference(try checkpointArray(.firstMoment, in: referenceCheckpoint),
                                                                   try checkpointArray(.firstMoment, in: checkpoint))
                        #expect(difference < 4e-6, "first moment after 1 step")
                    } else {
                        let difference = normRelativeDifference(try checkpointArray(.parameters, in: referenceCheckpoint),
                                                                try checkpointArray(.parameters, in: checkpoint))
                        #expect(difference < (steps == 2 ? 5e-5 : 5e-3), "parameters after \(steps) steps")
                    }
                    #expect(zip(runLosses, referenceLosses).allSatisfy { abs($0 - $1) < 1e-5 * $1 })
                } else {
                    let identical = try Data(contentsOf: URL(fileURLWithPath: checkpoint))
                        == Data(contentsOf: URL(fileURLWithPath: referenceCheckpoint))
                    let order = ranks == 4 ? " (4 ranks also need Open MPI to add the pieces pairwise, (0+1)+(2+3): "
                        + "its default allreduce and coll_tuned_allreduce_algorithm 3 or 6 do, 1, 2, 4 and 5 do not)" : ""
                    #expect(identical, "\(ranks) ranks, \(steps) steps: checkpoints differ\(order)")
                    #expect(runLosses == referenceLosses, "\(ranks) ranks, \(steps) steps: losses differ\(order)")
                }
                #expect(result.output.components(separatedBy: "training 64x64x3").count == 2)
                #expect(result.output.contains("\(ranks) MPI ranks"))
                #expect(result.error.isEmpty, "stderr: \(result.error)")
            }
        }
    }

    /// With bfloat16 GEMM operands, 1 process (2 threads) and 2 ranks still train to the same bytes:
    /// the kernel's blocking is fixed, so each product's bits depend only on its operands. The run
    /// differs from float32's, so the flag does reach the GEMMs.
    @Test(.enabled(if: Precision.bfloat16.isAvailable, "this CPU has no AVX512_BF16"))
    func bfloat16RanksTrainToTheSameBytes() throws {
        let options = ["--leaf", "32", "--precision", "bf16"]
        let single = try runCommand(vaeBinary, train("bf16-single", extra: options + ["--threads", "2"]))
        let ranks = try runMPI(ranks: 2, train("bf16-ranks", extra: options))
        let float = try runCommand(vaeBinary, train("fp32-single", extra: ["--leaf", "32"]))
        try #require(single.status == 0 && ranks.status == 0 && float.status == 0, "\(single.error)\(ranks.error)\(float.error)")
        let checkpoint = try Data(contentsOf: URL(fileURLWithPath: newestCheckpoint("bf16-single")))
        #expect(checkpoint == (try Data(contentsOf: URL(fileURLWithPath: newestCheckpoint("bf16-ranks")))))
        #expect(try losses("bf16-single") == losses("bf16-ranks"))
        #expect(try losses("bf16-single") != losses("fp32-single"))
    }

    @Test func tcpTransportGivesTheSameResult() throws {
        let shared = try runMPI(ranks: 2, train("shared"))
        let tcp = try runMPI(ranks: 2, train("tcp"), mpirunOptions: ["--mca", "btl", "tcp,self"])
        try #require(shared.status == 0 && tcp.status == 0, "\(shared.error)\(tcp.error)")
        let a = try checkpointArray(.parameters, in: newestCheckpoint("shared"))
        let b = try checkpointArray(.parameters, in: newestCheckpoint("tcp"))
        #expect(a == b)
    }

    /// A diverging run stops on every rank with one error line, and leaves the last checkpoint as it was.
    @Test func nonFiniteLossStopsAllRanksAndKeepsTheCheckpoint() throws {
        let first = try runMPI(ranks: 2, train("diverge", steps: 17))
        try #require(first.status == 0, "\(first.error)")
        let checkpoint = try newestCheckpoint("diverge")
        let saved = try Data(contentsOf: URL(fileURLWithPath: checkpoint))
        let diverged = try runMPI(ranks: 2, train("diverge", steps: 40, extra: ["--resume", "--lr", "1e30"]))
        #expect(diverged.status != 0)
        let errors = diverged.error.split(separator: "\n").filter { $0.contains("error:") }
        #expect(errors.count == 1 && errors[0].contains("not finite"), "stderr: \(diverged.error)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: checkpoint)) == saved)
        #expect(try newestCheckpoint("diverge") == checkpoint, "no newer checkpoint")
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
        #expect(errors.count == 1 && errors[0].contains("step 5: the parameters of rank 1 differ from rank 0's"),
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
        #expect(try checkpointArray(.parameters, in: newestCheckpoint("straight"))
                == checkpointArray(.parameters, in: newestCheckpoint("halves")))
        #expect(try losses("straight") == losses("halves"))
    }

    /// With --max-steps shorter than an epoch, the progress shows the steps that will run.
    @Test func progressCountsTheStepsThatRun() throws {
        let result = try runCommand(vaeBinary, train("short", steps: 5), environment: ["VAE_PROGRESS": "lines"])
        try #require(result.status == 0, "\(result.error)")
        #expect(result.output.contains("epoch 1/1 [####################] step 5/5 "), "\(result.output)")
        #expect(!result.output.contains("/17 "), "\(result.output)")
    }

    @Test func existingRunIsNeverOverwritten() throws {
        let first = try runCommand(vaeBinary, train("kept", steps: 2))
        try #require(first.status == 0, "\(first.error)")
        let metrics = try Data(contentsOf: URL(fileURLWithPath: scratch.file("kept/metrics.jsonl")))
        let again = try runCommand(vaeBinary, train("kept", steps: 2))
        #expect(again.status != 0 && again.error.contains("already holds a run"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: scratch.file("kept/metrics.jsonl"))) == metrics)
    }

    /// Each bad flag or file gives exactly one line, alone and on 2 ranks through launch/train.sh
    /// (where every rank hits the same error, and mpirun's own banners are kept quiet).
    @Test(arguments: [
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--latent", "0"], "latent size must be between"),
        (["--encoder-channels", "32,x"], "comma-separated whole numbers"),
        (["--batch", "0"], "--batch must be positive, got 0"),
        (["--threads", "0"], "--threads must be positive"),
        (["--lr", "0"], "--lr must be a positive number"),
        (["--keep", "0"], "--keep must be positive"),
        (["--timeout=-1"], "--timeout must be 0 (no limit) or a positive number of seconds, got -1.0"),
        (["--latnet", "3"], "Unknown option '--latnet'"),
        (["--leaf", "3"], "--leaf must be a power of two from 1 to 32, got 3"),
        (["--leaf", "64"], "--leaf must be a power of two from 1 to 32, got 64"),
        (["--precision", "fp16"], "Please provide one of 'fp32' and 'bf16'"),
        (["--data", "/nonexistent/faces.vaeds"], "/nonexistent/faces.vaeds"),
    ])
    func badInputGetsOneClearLine(arguments: [String], message: String) throws {
        var command = train("bad")
        if arguments[0] == "--data" { command[2] = arguments[1] } else { command += arguments }
        let alone = try runCommand(vaeBinary, command)
        let twoRanks = try runCommand(trainScript, ["--ranks", "2", "--"] + command.dropFirst(),
                                      environment: ["VAE_BINARY": vaeBinary])
        for (result, how) in [(alone, "alone"), (twoRanks, "2 ranks")] {
            #expect(result.status != 0, "\(how)")
            let lines = result.error.split(separator: "\n").filter { !$0.isEmpty }
            #expect(lines.count == 1 && lines[0].hasPrefix("error: ") && lines[0].contains(message),
                    "\(how): stderr: \(result.error)")
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.file("bad/metrics.jsonl")))
    }
}
