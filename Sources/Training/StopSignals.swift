#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Requests to stop training at the next step boundary. SIGTERM, SIGINT and SIGUSR1 are what a
/// user's Ctrl-C or `kill`, Slurm before a time limit or a preemption (`sbatch --signal`), and
/// launch/train.sh (which turns its own TERM and INT into USR1 for mpirun, since mpirun kills its
/// ranks one second after forwarding a TERM) send. The handler only counts: the ranks agree on
/// stopping in the step's allreduce (StepRunner), so they all stop after the same step, whichever
/// rank got the signal. A second SIGINT or SIGTERM ends the process at once.
public enum StopSignals {
    fileprivate static let received = Atomic<Int>(0)

    public static func install() {
        for signalNumber in [SIGTERM, SIGINT, SIGUSR1] {
            signal(signalNumber) { signalNumber in
                let count = StopSignals.received.add(1, ordering: .relaxed).newValue
                if count > 1 && signalNumber != SIGUSR1 { _exit(128 + signalNumber) }
            }
        }
    }

    public static var requested: Bool { received.load(ordering: .relaxed) > 0 }
}
