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
struct MultiHostTests: RunDirectoryTests {
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

    /// launch/train.sh on 2 hosts x 1 rank, started in the background so that a test can break a
    /// host mid-run: small steps (batch 16) with a checkpoint every 2, far more steps than it gets to.
    func startTrainingOnHosts(_ run: String, timeout: Int) throws -> StartedCommand {
        try StartedCommand(netnsHostsScript, ["--hosts", "2", "--", "sh", "-c", #"exec "$0" --hostfile "$NETNS_HOSTFILE" --no-bind -- "$@""#,
                                              trainScript, "--data", MPITests.dataset.path, "--out", scratch.file(run),
                                              "--max-steps", "400", "--log-every", "1", "--batch", "16", "--checkpoint-every", "2",
                                              "--timeout", "\(timeout)"],
                           environment: mpirunEnvironment.merging(["VAE_BINARY": vaeBinary]) { $1 })
    }

    /// The hosts' addresses and each host's end of its link, host 1 first, from the harness's opening
    /// line ("netns-hosts: 2 host(s) A B on SUBNET, 1 slot(s) each, links L1 L2").
    func hosts(_ job: StartedCommand) throws -> (addresses: [String], links: [String]) {
        let opening = try #require(try job.error().split(separator: "\n").first { $0.hasPrefix("netns-hosts: ") && $0.contains(", links ") })
        let words = opening.split(separator: " ").map(String.init)
        let addresses = words[words.firstIndex { $0 == "host(s)" }! + 1 ..< words.firstIndex(of: "on")!]
        return (Array(addresses), Array(words[(words.firstIndex(of: "links")! + 1)...]))
    }

    /// Nothing of the harness's run is left: no namespace and no link with its id (the links' common prefix).
    func expectTornDown(_ links: [String]) throws {
        let id = String(links[0].dropLast(2))
        let namespaces = try runCommand("/usr/bin/env", ["ip", "netns", "list"]).output
        let interfaces = try runCommand("/usr/bin/env", ["ip", "-o", "link"]).output
        #expect(!namespaces.contains(id) && !interfaces.contains(id), "left behind:\n\(namespaces)\(interfaces)")
    }

    /// Breaks a running job (`fault`, described by `what`) and checks what every fault must give: the
    /// job ends non-zero with exactly one `error:` line (returned), the checkpoints written before
    /// are unchanged, and the harness leaves nothing behind. Prints how long the job took to end.
    func breakJob(_ job: StartedCommand, _ run: String, links: [String], _ what: String, fault: () throws -> Void) throws -> Substring? {
        let before = try checkpointFiles(run)
        try fault()
        let broken = Date()
        let result = try job.finish(timeLimit: 180)
        print("MultiHostTests: the job ended \(Date().timeIntervalSince(broken)) s after \(what)")
        #expect(result.status != 0)
        let errors = result.error.split(separator: "\n").filter { $0.contains("error:") }
        #expect(errors.count == 1, "stderr: \(result.error)")
        let after = try checkpointFiles(run)
        for (file, bytes) in before { #expect(after[file] == bytes, "\(file) changed") }
        try expectTornDown(links)
        return errors.first
    }

    /// SIGSTOP to the rank on host 2: rank 0 on host 1 waits --timeout seconds in the allreduce and
    /// prints one line naming rank 1 and its host; the job ends non-zero, the checkpoints untouched.
    @Test func stoppedRankOnAHostEndsTheJobWithOneLine() throws {
        let job = try startTrainingOnHosts("stalled", timeout: 12)  // far above a debug build's step on a loaded machine
        try waitForStep(3, of: "stalled")
        let hostLinks = try hosts(job).links
        // The rank on host 2: the one in that host's namespace (pids say nothing about which host).
        let ranks = rankProcesses("stalled")
        let namespaces = try ranks.map { try runCommand("/usr/bin/env", ["ip", "netns", "identify", "\($0)"]).output }
        let onHost2 = try #require(zip(ranks, namespaces).first { $0.1.hasSuffix("-2\n") }?.0, "ranks \(ranks) in \(namespaces)")
        let line = try breakJob(job, "stalled", links: hostLinks, "SIGSTOP to the rank on host 2 (--timeout 12)") {
            kill(onHost2, SIGSTOP)
        }
        #expect(line?.hasPrefix("rank 0 on host1: error: ") == true
                && line?.contains("(--timeout 12); rank 1 on host2 did not arrive") == true, "\(line ?? "")")
    }

    /// Host 2's link taken down, as a pulled cable: mpirun's keepalives (launch/train.sh sets them)
    /// notice the lost daemon, and train.sh prints one line naming the host; the job ends non-zero,
    /// and one process on the remaining host continues from the newest checkpoint. The timeout is
    /// above the keepalives' ~20 s: when the watchdog speaks first, its MPI_Abort leaves mpirun
    /// waiting for the lost host's daemon (see the README).
    @Test func lostHostEndsTheJobAndTheRunContinuesOnTheOther() throws {
        let job = try startTrainingOnHosts("lost", timeout: 120)
        try waitForStep(3, of: "lost")
        let (addresses, hostLinks) = try hosts(job)
        try #require(hostLinks.count == 2 && addresses.count == 2, "\(addresses) \(hostLinks)")
        let line = try breakJob(job, "lost", links: hostLinks, "host 2's link went down") {
            let down = try runCommand("/usr/bin/env", ["ip", "link", "set", hostLinks[1], "down"])
            try #require(down.status == 0, "\(down.error)")
        }
        #expect(line?.hasPrefix("train.sh: error: host \(addresses[1]) was lost") == true && line?.hasSuffix(" --resume") == true,
                "\(line ?? "")")

        let newest = try #require(try checkpointSteps("lost").first)
        let resumed = try runCommand(vaeBinary, ["train", "--data", MPITests.dataset.path, "--out", scratch.file("lost"),
                                                 "--max-steps", "\(newest + 2)", "--batch", "16", "--resume"])
        #expect(resumed.status == 0, "\(resumed.error)")
        #expect(resumed.output.contains("resuming \(scratch.file("lost")) at step \(newest) from"), "\(resumed.output)")
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
