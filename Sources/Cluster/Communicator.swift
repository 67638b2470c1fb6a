import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// The ranks of a data-parallel job. Under mpirun (or srun) it is MPI_COMM_WORLD; started any
/// other way it is a single local rank, so the same binary runs alone for debugging without
/// touching MPI at all.
///
/// MPI takes Int32 counts: callers keep every buffer under 2^31 bytes (ModelConfig bounds the
/// parameter count for that), and the conversions here trap rather than wrap if one does not.
public final class Communicator: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public let usesMPI: Bool
    /// The host each rank runs on, indexed by rank.
    public private(set) var hosts: [String] = []
    private var finalized = false
    /// The deadline of every collective call, and the arrival questions of ranks that passed it.
    let watchdog = Watchdog()

    /// Seconds a rank waits in a collective call before it gives up on the job (see `Watchdog`);
    /// nil: forever.
    public var timeout: Double? {
        get { watchdog.timeout }
        set { watchdog.timeout = newValue }
    }

    /// The training step in hand (1-based, as the progress shows it), for the watchdog's line.
    public var step: Int? {
        get { watchdog.step }
        set { watchdog.step = newValue }
    }

    /// Variables that mpirun (Open MPI, MPICH/Hydra) or Slurm's srun set in every rank's environment.
    static let launcherVariables = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"]

    public static var launchedByMPI: Bool {
        launcherVariables.contains { getenv($0) != nil }
    }

    /// Joins the MPI job when started by a launcher, otherwise stands alone as rank 0 of 1.
    /// Throws, on every rank alike, when the MPI library cannot give the thread support we need.
    public init() throws {
        guard Communicator.launchedByMPI else {
            (rank, size, usesMPI) = (0, 1, false)
            hosts = [Communicator.localHostName()]
            return
        }
        // Every collective call is nonblocking (see `Watchdog`). For the in-place allreduce, Open MPI's
        // libnbc picks a binomial reduce and broadcast: the same pairwise sums as recursive doubling,
        // but two transfers in a row (measured with 2 ranks: 0.9-1.4 ms for the 4.6 MB gradient,
        // 0.5-0.7 ms with recursive doubling, 0.4-0.9 ms for the blocking allreduce). Recursive
        // doubling adds (0+1)+(2+3) as the blocking default does, so the bits stay those of one
        // process; an explicit choice in the environment or mpirun's --mca is kept.
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "4", 0)
        var provided: Int32 = 0
        // Only the main thread calls MPI; the data loader and the gradient tree's threads never do.
        MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
        var rank: Int32 = 0, size: Int32 = 0
        MPI_Comm_rank(vae_mpi_comm_world(), &rank)
        MPI_Comm_size(vae_mpi_comm_world(), &size)
        (self.rank, self.size, usesMPI) = (Int(rank), Int(size), true)
        guard provided >= Int32(MPI_THREAD_FUNNELED) else {
            finish()
            throw ClusterError(rank: self.rank,
                               "the MPI library provides thread level \(provided), below MPI_THREAD_FUNNELED "
                               + "(\(MPI_THREAD_FUNNELED)) that this program needs; use an MPI built with thread support")
        }
        var name = [CChar](repeating: 0, count: Int(MPI_MAX_PROCESSOR_NAME) + 1)
        var length: Int32 = 0
        MPI_Get_processor_name(&name, &length)
        hosts = allgather(text: String(decoding: name.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self),
                          what: "the exchange of host names")
    }

    private static func localHostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count - 1)
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var isRoot: Bool { rank == 0 }

    /// The lowest rank on this host: the one that does a host's once-per-machine work, such as
    /// verifying its copy of the dataset.
    public var isFirstOnHost: Bool { hosts.firstIndex(of: hosts[rank]) == rank }

    /// Sums `count` floats over all ranks, in place; every rank receives the total. `what` names the
    /// call in the watchdog's line.
    public func allreduceSum(_ values: UnsafeMutablePointer<Float>, count: Int, what: String = "an allreduce") {
        guard usesMPI else { return }
        collective(what) {
            MPI_Iallreduce(vae_mpi_in_place(), values, Int32(count), vae_mpi_float(), vae_mpi_sum(), vae_mpi_comm_world(), $0)
        }
    }

    public func allreduceSum(_ values: UnsafeMutablePointer<Double>, count: Int, what: String = "an allreduce") {
        guard usesMPI else { return }
        collective(what) {
            MPI_Iallreduce(vae_mpi_in_place(), values, Int32(count), vae_mpi_double(), vae_mpi_sum(), vae_mpi_comm_world(), $0)
        }
    }

    /// Copies `bytes` bytes from `root` to every other rank.
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int = 0, what: String = "a broadcast") {
        guard usesMPI else { return }
        collective(what) { MPI_Ibcast(buffer, Int32(bytes), vae_mpi_byte(), Int32(root), vae_mpi_comm_world(), $0) }
    }

    /// Every rank's values, indexed by rank; every rank passes the same number of values.
    public func allgather(_ values: [UInt64], what: String = "an allgather") -> [[UInt64]] {
        guard usesMPI else { return [values] }
        var all = [UInt64](repeating: 0, count: size * values.count)
        values.withUnsafeBufferPointer { mine in
            all.withUnsafeMutableBufferPointer { all in
                collective(what) {
                    MPI_Iallgather(mine.baseAddress, Int32(mine.count), vae_mpi_uint64(), all.baseAddress, Int32(mine.count),
                                   vae_mpi_uint64(), vae_mpi_comm_world(), $0)
                }
            }
        }
        return (0..<size).map { Array(all[($0 * values.count)..<(($0 + 1) * values.count)]) }
    }

    public func allgather(_ value: UInt64, what: String = "an allgather") -> [UInt64] {
        allgather([value], what: what).map { $0[0] }
    }

    /// Every rank's text (a host name, a path), indexed by rank; each is cut to 512 UTF-8 bytes.
    public func allgather(text: String, what: String = "an allgather") -> [String] {
        let width = 64  // 8-byte words: 512 bytes
        var words = [UInt64](repeating: 0, count: width)
        words.withUnsafeMutableBytes { raw in
            let bytes = Array(text.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
        }
        return allgather(words, what: what).map { words in
            words.withUnsafeBytes { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
    }

    public func barrier(what: String = "a barrier") {
        guard usesMPI else { return }
        collective(what) { MPI_Ibarrier(vae_mpi_comm_world(), $0) }
    }

    /// Ends the whole job from one rank, for errors the other ranks cannot learn about in step.
    public func abort(code: Int32) -> Never {
        if usesMPI && !finalized { MPI_Abort(vae_mpi_comm_world(), code) }
        exit(code)
    }

    public func finish() {
        guard usesMPI, !finalized else { return }
        finalized = true
        watchdog.close()
        MPI_Finalize()
    }

    /// Library and transport in one line, for logs.
    public var description: String {
        guard usesMPI else { return "single process (not launched by mpirun)" }
        var length: Int32 = 0
        var version = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING))
        MPI_Get_library_version(&version, &length)
        let text = String(decoding: version.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let library = text.split(separator: ",").first.map(String.init) ?? "MPI"
        let machines = Set(hosts).count
        return "\(size) MPI ranks on \(machines) host\(machines == 1 ? "" : "s") (\(library))"
    }
}

/// A failure of the MPI setup itself, raised alike on every rank.
public struct ClusterError: Error, CustomStringConvertible {
    public let description: String
    /// The rank that raised it: rank 0 reports it, the others stay quiet.
    public let rank: Int

    init(rank: Int, _ description: String) {
        self.rank = rank
        self.description = description
    }
}

/// "rank 3", "ranks 0, 2", "ranks 4-7": rank numbers, runs of three or more as a range.
public func describeRanks(_ ranks: [Int]) -> String {
    var parts: [String] = []
    var index = 0
    while index < ranks.count {
        var end = index
        while end + 1 < ranks.count && ranks[end + 1] == ranks[end] + 1 { end += 1 }
        if end - index >= 2 {
            parts.append("\(ranks[index])-\(ranks[end])")
        } else {
            parts += ranks[index...end].map(String.init)
        }
        index = end + 1
    }
    return (ranks.count == 1 ? "rank " : "ranks ") + parts.joined(separator: ", ")
}
