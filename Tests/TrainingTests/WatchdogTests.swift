import Foundation
import Testing
@testable import VAETraining

/// A rank that stops, dies or lags: the job never hangs, and says which rank it was.
extension MPITests {
    /// Small steps (batch 16), so that the debug build's steps stay far below the timeout.
    func smallRun(_ run: String, steps: Int, extra: [String] = []) -> [String] {
        train(run, steps: steps, extra: ["--batch", "16", "--checkpoint-every", "2"] + extra).dropFirst().map { $0 }
    }

    /// SIGSTOP to one of 2 ranks: the other waits --timeout seconds in its collective call, prints
    /// one line naming the stopped rank, and the job ends non-zero; the checkpoints written before
    /// are untouched, and the run resumes from the newest.
    @Test func stoppedRankEndsTheJobWithOneLine() throws {
        let timeout = 12.0  // far above a debug build's step on a loaded machine
        let job = try StartedCommand(trainScript, ["--ranks", "2", "--"] + smallRun("stalled", steps: 400, extra: ["--timeout", "\(Int(timeout))"]),
                                     environment: ["VAE_BINARY": vaeBinary])
        try waitForStep(3, of: "stalled")
        let ranks = rankProcesses("stalled")
        try #require(ranks.count == 2, "rank processes: \(ranks)")
        let before = try checkpointFiles("stalled")
        kill(ranks[1], SIGSTOP)
        let stopped = Date()
        let result = try job.finish(timeLimit: 120)
        print("watchdog test: a stopped rank ended the job \(Date().timeIntervalSince(stopped)) s after SIGSTOP (--timeout \(timeout))")
        #expect(result.status != 0)
        let errors = errorLines(result).filter { $0.contains("error:") }
        #expect(errors.count == 1 && errors[0].hasPrefix("rank 0 on ") && errors[0].contains("(--timeout 12); rank 1 on ")
                && errors[0].contains("did not arrive"), "stderr: \(result.error)")
        let after = try checkpointFiles("stalled")
        for (file, bytes) in before { #expect(after[file] == bytes, "\(file) changed") }
        let newest = try #require(try checkpointSteps("stalled").first)

        let resumed = try runMPI(ranks: 2, train("stalled", steps: newest + 2, extra: ["--batch", "16", "--resume"]))
        #expect(resumed.status == 0, "\(resumed.error)")
        #expect(resumed.output.contains("resuming \(scratch.file("stalled")) at step \(newest) from"), "\(resumed.output)")
    }

    /// kill -9 of one rank under launch/train.sh: one line names the rank and its host and says how to
    /// continue, and the continued run starts from the newest checkpoint.
    @Test func killedRankIsNamedAndTheRunContinues() throws {
        let job = try StartedCommand(trainScript, ["--ranks", "2", "--"] + smallRun("lost", steps: 400),
                                     environment: ["VAE_BINARY": vaeBinary])
        try waitForStep(3, of: "lost")
        let ranks = rankProcesses("lost")
        try #require(ranks.count == 2, "rank processes: \(ranks)")
        kill(ranks[1], SIGKILL)
        let killed = Date()
        let result = try job.finish(timeLimit: 60)
        print("watchdog test: a killed rank ended the job \(Date().timeIntervalSince(killed)) s after SIGKILL")
        #expect(result.status != 0)
        let lines = errorLines(result)
        #expect(lines.count == 1 && lines[0].hasPrefix("train.sh: error: rank 1 on host ")
                && lines[0].contains("was lost: it died of signal 9")
                && lines[0].contains("continue from the last checkpoint with: \(trainScript) --ranks 2 -- ")
                && lines[0].hasSuffix(" --resume"), "stderr: \(result.error)")
        let newest = try #require(try checkpointSteps("lost").first)

        let resumed = try runCommand(trainScript, ["--ranks", "2", "--"] + smallRun("lost", steps: newest + 2, extra: ["--resume"]),
                                     environment: ["VAE_BINARY": vaeBinary])
        #expect(resumed.status == 0, "\(resumed.error)")
        #expect(resumed.output.contains("resuming \(scratch.file("lost")) at step \(newest) from"), "\(resumed.output)")
    }

    /// Rank 1 shares its core with a busy loop, at a lower priority (nice 10: about a tenth of the
    /// core; measured 48-66 ms of compute per step against rank 0's 5-9 ms in the release build,
    /// 0.93 s against 0.17 s in the debug build): every logged step and the summary name it as the
    /// slowest. Steps of 4 images per rank: long enough that the scheduler's share shows (1 ms
    /// steps of a tiny model were not slowed); 160 faces, so that the validation at the end is short.
    @Test(.enabled(if: ProcessInfo.processInfo.activeProcessorCount >= 2, "needs two cores: one for each rank"))
    func slowRankIsNamed() throws {
        let small = scratch.file("small.vaeds")
        let made = try runCommand(vaeBinary, ["synth", "--count", "160", "--out", small])
        try #require(made.status == 0, "vae synth failed: \(made.error)")
        let hog = try StartedCommand("/usr/bin/taskset", ["-c", "1", "sh", "-c", "while :; do :; done"])
        defer {
            kill(hog.process.processIdentifier, SIGKILL)
            _ = try? hog.finish(timeLimit: 10)
        }
        var arguments = train("slow", steps: 2, extra: ["--batch", "8"])
        arguments[2] = small
        let result = try runCommand("/usr/bin/env", ["mpirun", "--quiet", "--bind-to", "none", "-np", "1", vaeBinary] + arguments
                                    + [":", "-np", "1", "taskset", "-c", "1", "nice", "-n", "10", vaeBinary] + arguments,
                                    environment: mpirunEnvironment)
        try #require(result.status == 0, "\(result.error)")
        let records = try String(contentsOfFile: scratch.file("slow/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }.filter { $0["eval"] == nil }
        #expect(records.count == 2)
        for record in records {
            #expect(record["slowest_rank"] as? Int == 1, "\(record)")
            #expect((record["compute_max_s"] as? Double ?? 0) > (record["compute_min_s"] as? Double ?? 1), "\(record)")
        }
        #expect(result.output.contains("slowest rank 1"), "\(result.output)")
        #expect(result.output.contains("slowest rank: 1 on "), "\(result.output)")
    }
}
