import Foundation
import Testing

/// launch/netns-hosts.sh in this checkout.
let netnsHostsScript = URL(fileURLWithPath: trainScript).deletingLastPathComponent().appendingPathComponent("netns-hosts.sh").path

/// The harness's one line saying why network namespaces cannot be made here (not root, or `ip netns
/// add` refused), or nil where they can. Any other failure of the harness is not a reason to skip:
/// the tests then run and fail, under CI as anywhere.
let namespacesForbidden: String? = {
    guard let probe = try? runCommand(netnsHostsScript, ["--hosts", "1", "--", "true"]) else { return nil }
    return probe.status == 77 ? probe.error.trimmingCharacters(in: .whitespacesAndNewlines) : nil
}()

/// Ranks on separate "hosts": network namespaces with their own network stacks, addresses and cores,
/// started by mpirun through a launch agent instead of ssh (launch/netns-hosts.sh). The ranks talk
/// TCP across a bridge, as on separate machines, and must still train to the same bytes as one process.
@Suite(.serialized, .timeLimit(.minutes(20)),
       .enabled(if: namespacesForbidden == nil, Comment(rawValue: namespacesForbidden ?? "")))
struct MultiHostTests {
    let scratch: ScratchDirectory

    init() throws {
        scratch = try ScratchDirectory()
    }

    /// Two steps, enough for Adam's moments and a second allreduce, on the MPI tests' 1400 faces.
    func train(_ run: String, batch: Int) -> [String] {
        ["train", "--data", MPITests.dataset.path, "--out", scratch.file(run), "--max-steps", "2", "--log-every", "1",
         "--batch", "\(batch)", "--leaf", "32"]
    }

    /// `vae` on `hosts` namespace hosts with `slots` ranks each, through plain mpirun set up by the harness.
    func runOnHosts(_ hosts: Int, slots: Int, shape: [String] = [], _ arguments: [String]) throws -> CommandResult {
        try runCommand(netnsHostsScript, ["--hosts", "\(hosts)", "--slots", "\(slots)"] + shape.flatMap { ["--shape", $0] }
                       + ["--", "mpirun", "--quiet", "-np", "\(hosts * slots)", "-x", "OPENBLAS_NUM_THREADS", vaeBinary] + arguments,
                       environment: mpirunEnvironment)
    }

    /// The bytes of a run's last checkpoint (both runs stop after step 2).
    func checkpoint(_ run: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: scratch.file("\(run)/checkpoint-00000002.bin")))
    }

    /// stderr without the harness's own lines and Open MPI's harmless race warning of its rsh
    /// launcher ("setpgid ... failed in parent": the agent had already started).
    func unexpectedErrors(_ result: CommandResult) -> [Substring] {
        result.error.split(separator: "\n").filter {
            !$0.isEmpty && !$0.hasPrefix("netns-hosts: ") && !$0.contains("plm:rsh: Warning: setpgid")
        }
    }

    /// The images/s of a run's closing `done:` line.
    func imagesPerSecond(_ result: CommandResult) -> String {
        result.output.split(separator: "\n").first { $0.contains("done: ") }.map { String($0[$0.range(of: "done: ")!.lowerBound...]) }
            ?? "(no done line)"
    }

    /// 2 hosts x 1 rank at batch 64 and 2 hosts x 2 ranks at batch 128 (pieces of 32, leaves of the
    /// gradient tree, added pairwise across the hosts): the same checkpoint bytes as one process.
    @Test(arguments: [(1, 64), (2, 128)])
    func hostsTrainLikeOneProcess(slots: Int, batch: Int) throws {
        let single = try runCommand(vaeBinary, train("single", batch: batch))
        try #require(single.status == 0, "single process failed: \(single.error)")
        let hosts = try runOnHosts(2, slots: slots, train("hosts", batch: batch))
        try #require(hosts.status == 0, "2 hosts x \(slots) failed: \(hosts.error)")
        #expect(hosts.output.contains("\(2 * slots) MPI ranks on 2 hosts"), "\(hosts.output)")
        #expect(try checkpoint("hosts") == checkpoint("single"), "2 hosts x \(slots) ranks: checkpoints differ")
        #expect(unexpectedErrors(hosts).isEmpty, "stderr: \(hosts.error)")
    }

    /// One host's link slowed to 100 Mbit/s with 1% of its packets dropped each way: TCP resends, the
    /// run is slower and the bytes are the same. The harness counts the drops and the packets held
    /// back for the rate, so the test knows the shaping really happened (the kernel here has no netem,
    /// so there is no fixed delay: the rate limit's queue is the delay).
    @Test func shapedLinkOnlySlowsTheRun() throws {
        let single = try runCommand(vaeBinary, train("single", batch: 64))
        try #require(single.status == 0, "single process failed: \(single.error)")
        let plain = try runOnHosts(2, slots: 1, train("plain", batch: 64))
        let shaped = try runOnHosts(2, slots: 1, shape: ["2:rate=100mbit,loss=1%"], train("shaped", batch: 64))
        try #require(plain.status == 0 && shaped.status == 0, "\(plain.error)\(shaped.error)")
        #expect(try checkpoint("shaped") == checkpoint("single"), "shaped link: checkpoints differ")
        #expect(try checkpoint("plain") == checkpoint("single"), "plain link: checkpoints differ")
        let report = try #require(shaped.error.split(separator: "\n").first { $0.contains("packets dropped") },
                                  "no shaping report: \(shaped.error)")
        let counts = report.split(separator: "): ").last!.split(separator: " ").compactMap { Int($0) }
        #expect(counts.count == 2 && counts[0] > 0 && counts[1] > 0, "\(report)")
        #expect(unexpectedErrors(shaped).isEmpty, "stderr: \(shaped.error)")
        // The rates are reported, not asserted: the machine is shared.
        print("MultiHostTests: plain link \(imagesPerSecond(plain)); shaped link \(imagesPerSecond(shaped)); \(report)")
    }
}

/// launch/slurm.sbatch on a real Slurm cluster of this one machine (launch/slurm-local.sh starts
/// munge, slurmctld and slurmd for the test, and stops them). launch/slurm-check.sh does the work:
/// a 2-task batch job writes the same checkpoint bytes as launch/train.sh with 2 ranks, and a job
/// stopped by `scancel --signal=TERM` after step 3 checkpoints, requeues itself, resumes and ends
/// with those bytes too. slurmd starts jobs as their users, so it needs root: elsewhere the test is
/// skipped, saying so.
@Suite(.serialized, .timeLimit(.minutes(20)),
       .enabled(if: getuid() == 0, "launch/slurm-local.sh needs root (slurmd runs jobs as their users)"))
struct SlurmTests {
    @Test func batchJobTrainsLikeTrainShAndResumesAfterTERM() throws {
        let script = URL(fileURLWithPath: trainScript).deletingLastPathComponent().appendingPathComponent("slurm-check.sh").path
        // 8 steps of 256 images: 5 to go after the stop, so the job cannot finish before it.
        let result = try runCommand(script, [MPITests.dataset.path, "8"], environment: ["VAE_BINARY": vaeBinary],
                                    timeLimit: 900)
        #expect(result.status == 0, "stdout: \(result.output)\nstderr: \(result.error)")
        let lines = result.output.split(separator: "\n").filter { $0.hasPrefix("slurm-check: ") }
        #expect(lines.count == 4, "\(result.output)")
        #expect(lines.last?.contains("stopped, requeued, resumed: the same checkpoint-00000008.bin bytes") == true, "\(result.output)")
        print(lines.joined(separator: "\n"))
    }
}
