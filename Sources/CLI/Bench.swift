import ArgumentParser
import Foundation
import VAECluster
import VAEData
import VAEEngine
import VAETraining

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training speed on generated faces, against this machine's GEMM rates.",
        discussion: """
            Trains the model (default: the 'seed' preset at batch 64) on synthetic faces and prints \
            steady-state training images/s (after --warmup steps, median of --repeats runs), the GFLOP/s \
            that rate means from the model's analytic FLOP count (about 85 MFLOP per image), and the \
            GEMM rate of a large square product measured in the same run, in float32 (the kernel fp32 uses) and, \
            on a CPU with AVX512_BF16, in bfloat16 (the kernel --precision bf16 uses).

            Under mpirun every rank trains on its piece of each global batch and the ranks allreduce \
            their gradients, exactly as 'vae train' does; rank 0 reports the global rate, the \
            allreduce's share of the time and the time of one allreduce of the gradients. \
            launch/bench.sh compares 1 rank x 1 thread, 1 rank with 2 OpenBLAS threads, 1 rank x 2 threads \
            and 2 ranks x 1 thread.

            Always run it from a release build (swift build -c release). Example:
              .build/release/vae bench --threads 1 --steps 100 --repeats 3
            """)

    @OptionGroup var model: ModelOptions

    @OptionGroup var precision: PrecisionOption

    @Option(help: "Images per step.")
    var batch = 64

    @Option(help: "Timed steps per run.")
    var steps = 100

    @Option(help: "Untimed steps before each run.")
    var warmup = 10

    @Option(help: "Timed runs; the median is reported.")
    var repeats = 3

    @Option(help: "Threads per rank, each computing leaves of the gradient tree with one OpenBLAS thread.")
    var threads = 1

    @Option(help: ArgumentHelp("""
        Images per leaf of the gradient tree, a power of two from 1 to 32 (default: as 'vae train' \
        chooses it for the batch, ranks and threads).
        """, valueName: "n"))
    var leaf: Int?

    @Option(help: "OpenBLAS threads per thread (over 1, float32 products go to OpenBLAS instead of the package's kernel).")
    var blasThreads = 1

    @Option(help: "Distinct generated images cycled through.")
    var images = 1024

    func validate() throws {
        for (name, value) in [("--batch", batch), ("--steps", steps), ("--repeats", repeats), ("--threads", threads),
                              ("--blas-threads", blasThreads), ("--images", images)] where value <= 0 {
            throw ValidationError("\(name) must be positive, got \(value)")
        }
        if warmup < 0 { throw ValidationError("--warmup must be zero or more, got \(warmup)") }
        if let leaf { try StepRunner.validateLeaf(leaf) }
    }

    func run() throws {
        let communicator = Failure.joinJob()
        do {
            try measure(communicator: communicator)
        } catch {
            Failure.exitReporting(error, communicator: communicator)
        }
        communicator.finish()
    }

    private func measure(communicator: Communicator) throws {
        let config = try collectively(communicator) { () throws -> ModelConfig in
            guard batch >= communicator.size else {
                throw ValidationError("--batch \(batch) is smaller than the \(communicator.size) ranks")
            }
            try precision.precision.validate()
            return try model.config()
        }
        BLAS.threads = blasThreads
        let piece = EpochPlan.pieceRange(batchSize: batch, rank: communicator.rank, ranks: communicator.size)
        let leaf = leaf ?? StepRunner.defaultLeaf(globalBatch: batch, workers: communicator.size * threads)
        let modelBatch = StepRunner.modelBatch(globalBatch: batch, ranks: communicator.size, leaf: leaf)
        let vae = try VAE(config: config, maxBatch: modelBatch, precision: precision.precision)
        vae.parameters.initialize(seed: 1)
        let runner = try StepRunner(model: vae, optimizer: Adam(parameterCount: vae.parameters.count),
                                    communicator: communicator, globalBatch: batch, seed: 1, leaf: leaf, threads: threads)
        let data = SyntheticFaces(seed: 1, imageSize: config.imageSize).floatImages(count: max(images, batch))
        func report(_ line: String) { if communicator.isRoot { print(line) } }

        let flops = Double(vae.trainingFLOPsPerImage)
        report("model: \(model.preset): \(config.summary); \(vae.parameters.count) parameters; "
               + String(format: "%.1f MFLOP per image (forward + backward)", flops / 1e6))
        report("\(communicator.description); \(runner.threads) thread(s) per rank; leaves of \(leaf) images; "
               + "BLAS: \(BLAS.configuration), \(BLAS.threads) thread(s) per thread; GEMM operands \(precision.precision.rawValue)")
        // Both peaks where the machine has both, whichever precision trains.
        let peaks = Precision.allCases.filter(\.isAvailable).map { ($0, BLAS.measurePeakGFLOPS($0)) }
        for (precision, peak) in peaks {
            report(String(format: "GEMM 1536x1536x1536 in %@ on one rank: %.1f GFLOP/s", precision.rawValue, peak))
        }

        var step = 0
        func train(steps count: Int) throws {
            for _ in 0..<count {
                let first = (step * batch) % (data.count / config.imageValues - batch + 1) + piece.lowerBound
                _ = try runner.run(images: data.pointer + first * config.imageValues, count: piece.count,
                                   firstPosition: piece.lowerBound, step: step)
                step += 1
            }
        }
        var rates: [Double] = [], reduceShares: [Double] = []
        for attempt in 1...repeats {
            try train(steps: warmup)
            communicator.barrier()
            let (start, reduceStart) = (monotonicSeconds(), runner.reduceSeconds)
            try train(steps: steps)
            let seconds = monotonicSeconds() - start
            rates.append(Double(steps * batch) / seconds)
            reduceShares.append((runner.reduceSeconds - reduceStart) / seconds)
            report(String(format: "run %d: %.0f images/s (%.2f ms per step)", attempt, rates.last!,
                          1000 * seconds / Double(steps)))
        }
        let rate = median(rates)
        let achieved = rate * flops / 1e9
        if communicator.size > 1 {
            report(String(format: "allreduce of %.1f MB of gradients: %.2f ms; %.1f%% of training time",
                          Double(4 * vae.parameters.count) / 1e6, 1000 * allreduceSeconds(runner), 100 * median(reduceShares)))
        }
        // The peaks were measured on one thread (with its OpenBLAS threads); every thread of every rank has one.
        let workers = communicator.size * runner.threads
        let shares = peaks.map { precision, peak in
            String(format: "%.0f%% of %d x %@ GEMM peak", 100 * achieved / (peak * Double(workers)), workers, precision.rawValue)
        }
        report(String(format: "training: %.0f images/s (median of %d), %.1f GFLOP/s = ", rate, repeats, achieved)
               + shares.joined(separator: ", "))
    }

    /// Median time of one allreduce of the whole gradient buffer, alone.
    private func allreduceSeconds(_ runner: StepRunner) -> Double {
        let gradients = runner.model.parameters.gradients
        var times: [Double] = []
        for _ in 0..<20 {
            runner.communicator.barrier()
            let start = monotonicSeconds()
            runner.communicator.allreduceSum(gradients.pointer, count: runner.model.parameters.count)
            times.append(monotonicSeconds() - start)
        }
        return median(times)
    }
}
