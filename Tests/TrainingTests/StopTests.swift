import Foundation
import Testing

/// Stopping on a signal: what Slurm sends before a time limit or a preemption, and a user's Ctrl-C.
extension MPITests {
    /// The step in the "stopped at step N; continue with: ..." line, which must be there once.
    func stoppedStep(_ result: CommandResult) -> Int? {
        let lines = result.output.split(separator: "\n").filter { $0.hasPrefix("stopped at step ") }
        #expect(lines.count == 1, "stdout: \(result.output)")
        return lines.first.flatMap { Int($0.dropFirst("stopped at step ".count).prefix { $0.isNumber }) }
    }

    /// SIGTERM to launch/train.sh in the middle of a run: both ranks stop after the same step, rank 0
    /// writes a checkpoint, everything exits 0 with one line saying how to continue; continued on
    /// one process instead of two, the run ends with the same bytes as a run never stopped.
    @Test func terminatedLauncherStopsCleanlyAndTheRunContinuesExactly() throws {
        let steps = 60, options = ["--leaf", "32"]
        let straight = try runCommand(vaeBinary, train("straight", steps: steps, extra: options))
        try #require(straight.status == 0, "\(straight.error)")

        let launcher = try StartedCommand(trainScript, ["--ranks", "2", "--"] + train("stopped", steps: steps, extra: options)
                                          .dropFirst(), environment: ["VAE_BINARY": vaeBinary])
        try waitForStep(3, of: "stopped")
        kill(launcher.process.processIdentifier, SIGTERM)
        let stopped = try launcher.finish()
        #expect(stopped.status == 0, "stderr: \(stopped.error)")
        let step = try #require(stoppedStep(stopped))
        #expect(step >= 3 && step < steps)
        #expect(stopped.output.contains("continue with: \(trainScript) --ranks 2 -- --data "), "\(stopped.output)")
        #expect(!stopped.error.contains("error"), "stderr: \(stopped.error)")
        #expect(try checkpointStep(newestCheckpoint("stopped")) == step)

        let continued = try runCommand(vaeBinary, train("stopped", steps: steps, extra: options + ["--resume"]))
        try #require(continued.status == 0, "\(continued.error)")
        #expect(continued.output.contains("resuming \(scratch.file("stopped")) at step \(step)"))
        let bytes = { (run: String) in try Data(contentsOf: URL(fileURLWithPath: self.newestCheckpoint(run))) }
        #expect(try bytes("stopped") == bytes("straight"), "stopped at step \(step), continued on 1 process")
    }

    /// A signal to one rank alone stops every rank after the same step: the vote to stop rides on
    /// the gradient allreduce.
    @Test func signalToOneRankStopsThemAll() throws {
        let job = try StartedCommand("/usr/bin/env", ["mpirun", "--quiet", "-np", "2", "--oversubscribe", "--bind-to", "none",
                                                      vaeBinary] + train("one", steps: 400), environment: mpirunEnvironment)
        try waitForStep(3, of: "one")
        let ranks = processes(mentioning: scratch.file("one")).filter { $0.words.first == vaeBinary }.map(\.id)
        try #require(ranks.count == 2, "rank processes: \(ranks)")
        kill(ranks[1], SIGUSR1)
        let stopped = try job.finish()
        #expect(stopped.status == 0, "stderr: \(stopped.error)")
        let step = try #require(stoppedStep(stopped))
        #expect(step < 400)
        #expect(try checkpointStep(newestCheckpoint("one")) == step)
    }

    /// A second Ctrl-C does not wait for the step in hand. Steps of 512 images (about half a
    /// second each) leave the second signal time to arrive while the first waits for the step.
    @Test func secondInterruptStopsAtOnce() throws {
        let run = try StartedCommand(vaeBinary, train("twice", steps: 5000, extra: ["--batch", "512"]))
        try waitForStep(2, of: "twice")
        kill(run.process.processIdentifier, SIGINT)
        // Two signals sent back to back can arrive as one.
        usleep(50_000)
        kill(run.process.processIdentifier, SIGINT)
        let result = try run.finish()
        #expect(result.status == 128 + SIGINT, "stdout: \(result.output)")
        #expect(!result.output.contains("stopped at step"))
    }

    /// The step a checkpoint was written after, from its JSON.
    func checkpointStep(_ path: String) throws -> Int? {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let jsonBytes = data.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)) }
        let info = try JSONSerialization.jsonObject(with: data.subdata(in: 64..<(64 + jsonBytes))) as? [String: Any]
        return info?["step"] as? Int
    }
}
