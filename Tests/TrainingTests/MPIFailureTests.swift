import Foundation
import Testing

/// launch/train.sh in this checkout.
let trainScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("launch/train.sh").path

/// Failures under mpirun: every rank stops, and the user reads one line saying why.
extension MPITests {
    /// mpirun's MPMD syntax: one rank runs `first`, the other `second`, as on two machines whose
    /// copies of the files differ.
    func runTwoRanks(_ first: [String], _ second: [String]) throws -> CommandResult {
        try runCommand("/usr/bin/env", ["mpirun", "--quiet", "--oversubscribe", "--bind-to", "none",
                                        "-np", "1", vaeBinary] + first + [":", "-np", "1", vaeBinary] + second,
                       environment: mpirunEnvironment)
    }

    func errorLines(_ result: CommandResult) -> [Substring] {
        result.error.split(separator: "\n").filter { !$0.isEmpty }
    }

    /// Two ranks given datasets of 1,400 and 1,600 faces would take different numbers of steps
    /// per epoch and wait in different collective calls: refused before training, naming both.
    @Test func ranksWithDifferentDatasetsAreRefused() throws {
        let other = scratch.file("other.vaeds")
        let made = try runCommand(vaeBinary, ["synth", "--count", "1600", "--out", other])
        try #require(made.status == 0, "vae synth failed: \(made.error)")
        var second = train("differ")
        second[2] = other
        let result = try runTwoRanks(train("differ"), second)
        #expect(result.status != 0)
        let lines = errorLines(result)
        #expect(lines.count == 1, "stderr: \(result.error)")
        #expect(lines.first?.contains("the ranks' dataset files differ") == true, "stderr: \(result.error)")
        #expect(lines.first?.contains("rank 0 on ") == true && lines.first?.contains("1400 images") == true)
        #expect(lines.first?.contains("rank 1 on ") == true && lines.first?.contains("1600 images") == true)
        #expect(!result.output.contains("training 64x64x3"), "no step was taken: \(result.output)")
        #expect(!FileManager.default.fileExists(atPath: scratch.file("differ")), "nothing written")
    }

    /// A problem that only one rank has is printed once, by that rank; the other stops quietly.
    @Test func aFailureOfOneRankIsReportedByThatRankAlone() throws {
        var second = train("one")
        second[2] = scratch.file("missing.vaeds")
        let missing = try runTwoRanks(train("one"), second)
        #expect(missing.status != 0)
        #expect(errorLines(missing).count == 1 && errorLines(missing)[0].hasPrefix("rank 1: error: ")
                && errorLines(missing)[0].contains("missing.vaeds"), "stderr: \(missing.error)")

        let typo = try runTwoRanks(train("typo"), train("typo") + ["--latnet", "3"])
        #expect(typo.status != 0)
        #expect(errorLines(typo).count == 1 && errorLines(typo)[0].hasPrefix("rank 1: error: Unknown option '--latnet'"),
                "stderr: \(typo.error)")
    }

    /// A run that crashed after logging steps beyond its last checkpoint runs those steps again
    /// on resume: metrics.jsonl then holds each step once, as an uninterrupted run's does.
    @Test func resumeDropsMetricsLoggedAfterTheCheckpoint() throws {
        // 17 steps per epoch: a checkpoint at step 17, lines up to step 24, as if killed at step 24.
        for (run, steps) in [("straight", 30), ("crashed", 17)] {
            let result = try runCommand(vaeBinary, train(run, steps: steps))
            try #require(result.status == 0, "\(result.error)")
        }
        let further = try runCommand(vaeBinary, train("crashed", steps: 24, extra: ["--resume"]))
        try #require(further.status == 0, "\(further.error)")
        // Killed before its checkpoint of step 24 was written.
        try FileManager.default.removeItem(atPath: checkpointFile("crashed", step: 24))
        let metrics = scratch.file("crashed/metrics.jsonl")
        // The crash cut the last line short.
        try FileHandle(forWritingAtPath: metrics).map { try $0.seekToEnd(); $0.write(Data("{\"step\": 2".utf8)) }

        let resumed = try runCommand(vaeBinary, train("crashed", steps: 30, extra: ["--resume"]))
        try #require(resumed.status == 0, "\(resumed.error)")
        #expect(resumed.output.contains("metrics.jsonl: dropped 9 line(s) logged after the checkpoint of step 17"),
                "\(resumed.output)")
        let steps = { (run: String) in
            try String(contentsOfFile: self.scratch.file("\(run)/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
                .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
                .map { "\($0["step"]!) \($0["eval"] != nil) \($0["loss"]!)" }
        }
        #expect(try steps("crashed") == steps("straight"))
    }
}
