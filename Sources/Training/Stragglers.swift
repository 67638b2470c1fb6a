import VAECluster

/// A slow node slows every step: the others wait for it in the gradient allreduce. To make it
/// visible (as Horovod's stall inspector does), the ranks exchange their compute time (forward and
/// backward on their piece, `StepRunner.computeSeconds`) at every logged step, in one allgather of
/// one number per rank (nothing next to the step's 4.6 MB allreduce); rank 0 puts the slowest and
/// fastest in the progress line and metrics.jsonl, and names the slowest rank of the run at the end.
final class Stragglers {
    let communicator: Communicator
    private let logEvery: Int, totalSteps: Int
    /// Compute seconds and step at the last exchange.
    private var lastSeconds = 0.0, lastStep: Int
    /// Each rank's compute seconds and the steps they took, since this process started.
    private var totals: [Double]
    private var totalStepsTimed = 0

    init(communicator: Communicator, logEvery: Int, totalSteps: Int, firstStep: Int) {
        self.communicator = communicator
        self.logEvery = logEvery
        self.totalSteps = totalSteps
        lastStep = firstStep
        totals = [Double](repeating: 0, count: communicator.size)
    }

    /// After step `step` (steps done): at a logged step, every rank's compute time per step since
    /// the last one; nil at other steps. Every rank calls it after every step.
    func afterStep(_ step: Int, computeSeconds: Double) -> ComputeSpread? {
        guard Reporter.isLogged(step: step, logEvery: logEvery, totalSteps: totalSteps) else { return nil }
        return exchange(step: step, computeSeconds: computeSeconds)
    }

    /// Every rank's compute time per step over the whole run of this process (the steps since the
    /// last logged one included). Every rank calls it once, at the end.
    func wholeRun(step: Int, computeSeconds: Double) -> ComputeSpread {
        _ = exchange(step: step, computeSeconds: computeSeconds)
        return ComputeSpread(secondsPerStep: totals.map { $0 / Double(max(totalStepsTimed, 1)) }, hosts: communicator.hosts)
    }

    private func exchange(step: Int, computeSeconds: Double) -> ComputeSpread {
        let nanoseconds = UInt64(max(computeSeconds - lastSeconds, 0) * 1e9)
        let seconds = communicator.allgather(nanoseconds, what: "the exchange of compute times").map { Double($0) * 1e-9 }
        let steps = step - lastStep
        (lastSeconds, lastStep) = (computeSeconds, step)
        for rank in totals.indices { totals[rank] += seconds[rank] }
        totalStepsTimed += steps
        return ComputeSpread(secondsPerStep: seconds.map { $0 / Double(max(steps, 1)) }, hosts: communicator.hosts)
    }
}

/// The ranks' compute time per step over an interval, indexed by rank.
struct ComputeSpread {
    let secondsPerStep: [Double]
    let hosts: [String]

    var slowest: Int { secondsPerStep.indices.max { secondsPerStep[$0] < secondsPerStep[$1] }! }
    var fastest: Int { secondsPerStep.indices.min { secondsPerStep[$0] < secondsPerStep[$1] }! }

    /// For metrics.jsonl.
    var fields: [String: Any] {
        ["compute_max_s": secondsPerStep[slowest], "compute_min_s": secondsPerStep[fastest], "slowest_rank": slowest]
    }

    /// For the progress line: "compute 45-41 ms/step, slowest rank 1".
    var brief: String {
        "compute \(milliseconds(slowest))-\(milliseconds(fastest)) ms/step, slowest rank \(slowest)"
    }

    /// For the run's summary.
    var summary: String {
        let ratio = secondsPerStep[slowest] / max(secondsPerStep[fastest], 1e-12)
        return "slowest rank: \(slowest) on \(hosts[slowest]), \(milliseconds(slowest)) ms of compute per step; "
            + "fastest: rank \(fastest) on \(hosts[fastest]), \(milliseconds(fastest)) ms (the slowest takes "
            + "\(Int((100 * (ratio - 1)).rounded()))% longer, and every rank waits for it)"
    }

    private func milliseconds(_ rank: Int) -> String {
        let value = 1000 * secondsPerStep[rank]
        return value >= 10 ? "\(Int(value.rounded()))" : "\((value * 10).rounded() / 10)"
    }
}
