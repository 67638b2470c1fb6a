import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// The ranks of a data-parallel job. Under mpirun (or srun) it is MPI_COMM_WORLD; started any
/// other way it is a single local rank, so the same binary runs alone for debugging without
/// touching MPI at all.
public final class Communicator: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public let usesMPI: Bool
    private var finalized = false

    /// Variables that mpirun (Open MPI, MPICH/Hydra) or Slurm's srun set in every rank's environment.
    static let launcherVariables = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"]

    public static var launchedByMPI: Bool {
        launcherVariables.contains { getenv($0) != nil }
    }

    /// Joins the MPI job when started by a launcher, otherwise stands alone as rank 0 of 1.
    public init() {
        guard Communicator.launchedByMPI else {
            (rank, size, usesMPI) = (0, 1, false)
            return
        }
        var provided: Int32 = 0
        // Only the main thread calls MPI; the data loader thread never does.
        MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
        var rank: Int32 = 0, size: Int32 = 0
        MPI_Comm_rank(vae_mpi_comm_world(), &rank)
        MPI_Comm_size(vae_mpi_comm_world(), &size)
        (self.rank, self.size, usesMPI) = (Int(rank), Int(size), true)
    }

    public var isRoot: Bool { rank == 0 }

    /// Sums `count` floats over all ranks, in place; every rank receives the total.
    public func allreduceSum(_ values: UnsafeMutablePointer<Float>, count: Int) {
        guard usesMPI else { return }
        MPI_Allreduce(vae_mpi_in_place(), values, Int32(count), vae_mpi_float(), vae_mpi_sum(), vae_mpi_comm_world())
    }

    public func allreduceSum(_ values: UnsafeMutablePointer<Double>, count: Int) {
        guard usesMPI else { return }
        MPI_Allreduce(vae_mpi_in_place(), values, Int32(count), vae_mpi_double(), vae_mpi_sum(), vae_mpi_comm_world())
    }

    /// Copies `bytes` bytes from `root` to every other rank.
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int = 0) {
        guard usesMPI else { return }
        MPI_Bcast(buffer, Int32(bytes), vae_mpi_byte(), Int32(root), vae_mpi_comm_world())
    }

    /// Every rank's value, indexed by rank.
    public func allgather(_ value: UInt64) -> [UInt64] {
        guard usesMPI else { return [value] }
        var mine = value
        var all = [UInt64](repeating: 0, count: size)
        MPI_Allgather(&mine, 1, vae_mpi_uint64(), &all, 1, vae_mpi_uint64(), vae_mpi_comm_world())
        return all
    }

    public func barrier() {
        guard usesMPI else { return }
        MPI_Barrier(vae_mpi_comm_world())
    }

    /// Ends the whole job from one rank, for errors the other ranks cannot learn about in step.
    public func abort(code: Int32) -> Never {
        if usesMPI && !finalized { MPI_Abort(vae_mpi_comm_world(), code) }
        exit(code)
    }

    public func finish() {
        guard usesMPI, !finalized else { return }
        finalized = true
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
        return "\(size) MPI ranks (\(library))"
    }
}

