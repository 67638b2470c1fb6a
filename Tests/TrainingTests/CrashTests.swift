import Foundation
import Testing
@testable import VAETraining

/// SplitMix64: random moments that a seed repeats.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The processes whose parent is `parent` (mpirun's ranks), from /proc.
func childProcesses(of parent: Int32) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { Int32($0) }.filter { pid in
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let nameEnd = stat.range(of: ")", options: .backwards) else { return false }
        // After "pid (name) " come the state, then the parent's pid.
        let fields = stat[nameEnd.upperBound...].split(separator: " ")
        return fields.count > 1 && Int32(fields[1]) == parent
    }
}

extension MPITests {
    /// The names in a run directory.
    func listing(_ run: String) -> Set<String> {
        Set((try? FileManager.default.contentsOfDirectory(atPath: scratch.file(run))) ?? [])
    }

    /// kill -9 of one rank, or of the whole job (mpirun and its ranks, as when a machine dies), at
    /// random moments after the first checkpoint, with checkpoints every 1 to 3 steps; every third
    /// kill comes as a checkpoint is being written (the test prints how many kills left a partial
    /// file). Every time, every checkpoint file present verifies (a partial file is never taken for
    /// one), the resume (on 2 ranks after a rank was killed, on 1 process after the whole job was)
    /// starts from the newest, and it ends with the same final checkpoint as a run never killed.
    /// The seed is printed; VAE_CRASH_SEED=seed repeats its moments.
    @Test func killedJobsResumeFromTheirNewestCheckpoint() throws {
        let seed = ProcessInfo.processInfo.environment["VAE_CRASH_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...999_999)
        print("crash test: VAE_CRASH_SEED=\(seed) repeats these kill moments")
        var random = SeededGenerator(state: seed)
        let steps = 24
        let straight = try runCommand(vaeBinary, train("straight", steps: steps, extra: ["--leaf", "32"]))
        try #require(straight.status == 0, "\(straight.error)")
        let expected = try checkpointBytes("straight")
        var killedWhileWriting = 0
        let trials = 6
        for trial in 0..<trials {
            let wholeJob = trial % 2 == 1
            let run = "crash\(trial)"
            let options = ["--leaf", "32", "--checkpoint-every", "\(1 + trial % 3)"]
            let job = try startMPI(ranks: 2, train(run, steps: steps, extra: options))
            let mpirun = job.process.processIdentifier
            // The waits end with the job, or at the time limit of a command should it hang.
            let deadline = Date() + defaultCommandTimeLimit
            func waiting() -> Bool { job.process.isRunning && Date() < deadline }
            // A kill before the first checkpoint leaves nothing to resume from.
            while waiting() && (try? checkpointSteps(run))?.isEmpty ?? true {
                Thread.sleep(forTimeInterval: 0.01)
            }
            // A random moment rarely falls in the few milliseconds of a write: every third kill comes
            // as soon as, a little later, a new checkpoint name appears: that of one being written.
            let duringWrite = trial % 3 == 2
            Thread.sleep(forTimeInterval: Double.random(in: 0..<(duringWrite ? 0.3 : 1.0), using: &random))
            if duringWrite {
                let before = listing(run)
                while waiting() && !listing(run).contains(where: { $0.hasPrefix("checkpoint-") && !before.contains($0) }) {
                    Thread.sleep(forTimeInterval: 0.001)
                }
            }
            let ranks = childProcesses(of: mpirun)
            let victims = wholeJob ? ranks + [mpirun] : ranks.isEmpty ? [] : [ranks[Int.random(in: 0..<ranks.count, using: &random)]]
            for victim in victims { kill(victim, SIGKILL) }
            _ = try job.finish(timeLimit: 60)

            if listing(run).contains(where: { $0.hasSuffix(".partial") }) { killedWhileWriting += 1 }
            let present = try checkpointSteps(run)
            for step in present {
                #expect(throws: Never.self, "trial \(trial)") {
                    try Checkpoint.readInfo(from: checkpointFile(run, step: step))
                }
            }
            let resume = train(run, steps: steps, extra: options + ["--resume"])
            let resumed = wholeJob ? try runCommand(vaeBinary, resume) : try runMPI(ranks: 2, resume)
            try #require(resumed.status == 0, "trial \(trial), seed \(seed): \(resumed.error)")
            #expect(resumed.output.contains("resuming \(scratch.file(run)) at step \(present.first ?? -1) from"),
                    "trial \(trial), seed \(seed): \(present): \(resumed.output)")
            #expect(try checkpointBytes(run) == expected, "trial \(trial), seed \(seed)")
        }
        print("crash test: \(killedWhileWriting) of \(trials) kills left a partial checkpoint behind")
    }
}
