import CMPI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Never hang: a deadline on every collective call, so that a rank stopped, hung or lost ends the
/// job with a line saying why instead of leaving the others waiting until the batch system's limit.
///
/// MPI runs with MPI_THREAD_FUNNELED (only the main thread calls MPI), so no watchdog thread may
/// call MPI_Abort. Instead every collective call is started nonblocking (MPI_Iallreduce and the
/// like) and completed on the main thread by polling MPI_Test against the deadline: the first
/// milliseconds in a tight loop (the usual lateness of a peer), then with naps of up to a quarter
/// of a millisecond, so that a rank waiting for a stopped peer idles instead of spinning.
///
/// Past the deadline the rank asks every other rank where it is (a point-to-point message: a
/// rank waiting in a collective call answers with the number of collective calls it has started),
/// waits a moment for answers, prints one line naming the ranks that have not arrived, and calls
/// MPI_Abort, so that the launcher ends every rank and exits non-zero. Nothing is written on the
/// way: rank 0 writes checkpoints between collective calls, each atomically, so the last one stays.
final class Watchdog {
    /// Seconds to wait in one collective call; nil: forever.
    var timeout: Double?
    /// The training step in hand, for the line.
    var step: Int?
    /// Collective calls this rank has started: ranks waiting in the same call count the same.
    private var started: Int64 = 0
    /// The receive of another rank's question, posted while a deadline is set, and its buffers.
    private var question: MPI_Request?
    private let questionBuffer = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
    private let answerBuffer = UnsafeMutablePointer<Int64>.allocate(capacity: 1)

    static let questionTag: Int32 = 7_101, answerTag: Int32 = 7_102
    /// Polling without naps this long, then naps growing to `longestNap` microseconds.
    static let spinSeconds = 0.005, longestNap: UInt32 = 250
    /// How long a rank past its deadline waits for the others' answers.
    static let answerSeconds = 2.0

    deinit {
        questionBuffer.deallocate()
        answerBuffer.deallocate()
    }

    /// Waits for the collective call `request` of `communicator`, named `what` in the line.
    func wait(_ request: inout MPI_Request?, what: String, communicator: Communicator) {
        started += 1
        if timeout != nil && question == nil { listenForQuestion() }
        let start = Watchdog.now()
        var done: Int32 = 0, nap: UInt32 = 0
        while true {
            MPI_Test(&request, &done, vae_mpi_status_ignore())
            if done != 0 { return }
            answerQuestions()
            let waited = Watchdog.now() - start
            if let timeout, waited > timeout { giveUp(what: what, waited: waited, timeout: timeout, communicator: communicator) }
            if waited > Watchdog.spinSeconds {
                usleep(nap)
                nap = min(max(2 * nap, 10), Watchdog.longestNap)
            }
        }
    }

    /// Cancels the pending question, before MPI_Finalize.
    func close() {
        guard question != nil else { return }
        MPI_Cancel(&question)
        MPI_Wait(&question, vae_mpi_status_ignore())
    }

    private static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

    private func listenForQuestion() {
        MPI_Irecv(questionBuffer, 1, vae_mpi_int64(), MPI_ANY_SOURCE, Watchdog.questionTag, vae_mpi_comm_world(), &question)
    }

    /// Tells a rank past its deadline which collective call this one waits in.
    private func answerQuestions() {
        guard question != nil else { return }
        var asked: Int32 = 0
        var status = MPI_Status()
        MPI_Test(&question, &asked, &status)
        guard asked != 0 else { return }
        answerBuffer.pointee = started
        var answer: MPI_Request?
        MPI_Isend(answerBuffer, 1, vae_mpi_int64(), status.MPI_SOURCE, Watchdog.answerTag, vae_mpi_comm_world(), &answer)
        MPI_Request_free(&answer)
        listenForQuestion()
    }

    /// Prints the line and ends the job. Of several ranks waiting in the same call, the lowest
    /// speaks; the others give it a timeout more to do so (its abort ends them).
    private func giveUp(what: String, waited: Double, timeout: Double, communicator: Communicator) -> Never {
        let (here, elsewhere, missing) = whereAreTheOthers(communicator: communicator)
        if let speaker = here.min(), speaker < communicator.rank {
            let patience = Watchdog.now()
            while Watchdog.now() - patience < timeout {
                answerQuestions()
                usleep(1_000)
            }
        }
        func named(_ ranks: [Int]) -> String {
            describeRanks(ranks) + " on " + Set(ranks.map { communicator.hosts[$0] }).sorted().joined(separator: ", ")
        }
        var absent: [String] = []
        if !missing.isEmpty { absent.append(named(missing) + " did not arrive (stopped, hung or lost)") }
        if !elsewhere.isEmpty { absent.append(named(elsewhere) + " wait in another collective call") }
        let line = "rank \(communicator.rank) on \(communicator.hosts[communicator.rank]): error: "
            + (step.map { "step \($0): " } ?? "before training: ")
            + String(format: "waited %.1f s for %@ (--timeout %g); ", waited, what, timeout)
            + (absent.isEmpty ? "every rank answered, the call did not complete" : absent.joined(separator: "; "))
            + "; aborting the job, the checkpoints are as they were (continue with --resume)\n"
        _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
        MPI_Abort(vae_mpi_comm_world(), 1)
        exit(1)
    }

    /// Asks every other rank which collective call it waits in, and waits up to `answerSeconds`
    /// for the answers: the ranks in this call, those in another, and those that did not answer.
    private func whereAreTheOthers(communicator: Communicator) -> (here: [Int], elsewhere: [Int], missing: [Int]) {
        let others = (0..<communicator.size).filter { $0 != communicator.rank }
        let replies = UnsafeMutablePointer<Int64>.allocate(capacity: communicator.size)
        var receives = [MPI_Request?](repeating: nil, count: communicator.size)
        for rank in others {
            MPI_Irecv(replies + rank, 1, vae_mpi_int64(), Int32(rank), Watchdog.answerTag, vae_mpi_comm_world(), &receives[rank])
            var sent: MPI_Request?
            MPI_Isend(answerBuffer, 0, vae_mpi_int64(), Int32(rank), Watchdog.questionTag, vae_mpi_comm_world(), &sent)
            MPI_Request_free(&sent)
        }
        var answered = Set<Int>()
        let asked = Watchdog.now()
        while answered.count < others.count && Watchdog.now() - asked < Watchdog.answerSeconds {
            for rank in others where !answered.contains(rank) {
                var done: Int32 = 0
                MPI_Test(&receives[rank], &done, vae_mpi_status_ignore())
                if done != 0 { answered.insert(rank) }
            }
            answerQuestions()
            usleep(1_000)
        }
        // Receives still pending are left to the abort that follows, and so is their buffer (never freed).
        let here = answered.filter { replies[$0] == started }.sorted()
        return (here, answered.subtracting(here).sorted(), others.filter { !answered.contains($0) })
    }
}

extension Communicator {
    /// Starts a nonblocking collective call with `start` and waits for it under the watchdog.
    func collective(_ what: String, _ start: (UnsafeMutablePointer<MPI_Request?>) -> Int32) {
        var request: MPI_Request?
        _ = start(&request)
        watchdog.wait(&request, what: what, communicator: self)
    }
}
