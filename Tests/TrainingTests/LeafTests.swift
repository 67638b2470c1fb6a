import Foundation
import Testing

/// The run's leaf size through the real binary: chosen for the workers, the same bits for any split
/// at the same leaf, kept on resume. In the MPI suite, so these run one at a time too.
extension MPITests {
    /// What a run directory's config.json says.
    func configuration(_ run: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch.file("\(run)/config.json"))))
            as! [String: Any]
    }

    func checkpointBytes(_ run: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: newestCheckpoint(run)))
    }

    /// 8 ranks x 1 thread and 4 ranks x 2 threads at batch 64 choose leaves of 8 (8 workers) and
    /// write the same checkpoint bytes and losses as one process told --leaf 8, after 20 steps
    /// across an epoch end. Each rank's piece (8 or 16 images) is a node of the batch's tree; the
    /// allreduce must also add the pieces pairwise, ((0+1)+(2+3))+((4+5)+(6+7)), which MPI does not
    /// promise but Open MPI does at this size (as for 4 ranks at batch 128). Checked by hand the
    /// same way: 16, 32 and 64 ranks at leaves of 4, 2 and 1.
    @Test func ranksAndThreadsMatchOneProcessAtTheirLeaf() throws {
        let single = try runCommand(vaeBinary, train("single", extra: ["--leaf", "8", "--threads", "1"]))
        try #require(single.status == 0, "single process failed: \(single.error)")
        #expect(single.output.contains("in leaves of 8"))
        for (ranks, threads) in [(8, 1), (4, 2)] {
            let run = "ranks\(ranks)x\(threads)"
            let result = try runMPI(ranks: ranks, train(run, extra: ["--threads", "\(threads)"]))
            try #require(result.status == 0, "\(run) failed: \(result.error)")
            let configuration = try configuration(run)
            #expect(configuration["leaf"] as? Int == 8 && configuration["threadsPerRank"] as? Int == threads, "\(run)")
            #expect(try checkpointBytes(run) == checkpointBytes("single"), "\(run): checkpoints differ")
            #expect(try losses(run) == losses("single"), "\(run)")
        }
    }

    /// A resumed run keeps its checkpoint's leaf whatever its workers would choose (2 threads alone
    /// would choose 32), and so continues bit for bit; asking for another leaf is one clear error.
    @Test func resumeKeepsTheLeaf() throws {
        let straight = try runCommand(vaeBinary, train("straight", extra: ["--leaf", "8", "--threads", "1"]))
        let firstHalf = try runCommand(vaeBinary, train("halves", steps: 8, extra: ["--leaf", "8", "--threads", "1"]))
        let secondHalf = try runCommand(vaeBinary, train("halves", extra: ["--resume", "--threads", "2"]))
        try #require(straight.status == 0 && firstHalf.status == 0 && secondHalf.status == 0,
                     "\(straight.error)\(firstHalf.error)\(secondHalf.error)")
        #expect(secondHalf.output.contains("2 thread(s) per rank; batch 64 in leaves of 8"), "\(secondHalf.output)")
        #expect(try checkpointBytes("halves") == checkpointBytes("straight"))

        let other = try runCommand(vaeBinary, train("halves", steps: 30, extra: ["--resume", "--leaf", "16"]))
        #expect(other.status != 0)
        let lines = other.error.split(separator: "\n").filter { !$0.isEmpty }
        #expect(lines.count == 1 && lines[0].contains("the run used --leaf 8; resume with the same --leaf"),
                "stderr: \(other.error)")
    }
}
