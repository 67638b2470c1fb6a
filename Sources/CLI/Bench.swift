import ArgumentParser
import Foundation
import VAECluster
import VAEData
import VAEEngine
import VAETraining

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training speed on generated faces, against this machine's SGEMM rate.",
        discussion: """
            Trains the model (default: the 'seed' preset at batch 64) on synthetic faces in one
            process and prints steady-state training images/s (after warm-up steps, median of
            --repeats runs), the GFLOP/s that rate means from the model's analytic FLOP count, and
            the SGEMM rate of a large square product measured in the same run.

            Always run it from a release build (swift build -c release). Example:
              .build/release/vae bench --threads 1 --steps 100 --repeats 3
            """)

    @OptionGroup var model: ModelOptions

    @Option(help: "Images per step.")
    var batch = 64

    @Option(help: "Timed steps per run.")
    var steps = 100

    @Option(help: "Untimed steps before each run.")
    var warmup = 10

    @Option(help: "Timed runs; the median is reported.")
    var repeats = 3

    @Option(help: "OpenBLAS threads (the engine itself runs on one thread).")
    var threads = 1

    @Option(help: "Distinct generated images cycled through.")
    var images = 1024

    func validate() throws {
        for (name, value) in [("--batch", batch), ("--steps", steps), ("--repeats", repeats), ("--threads", threads),
                              ("--images", images)] where value <= 0 {
            throw ValidationError("\(name) must be positive, got \(value)")
        }
        if warmup < 0 { throw ValidationError("--warmup must be zero or more, got \(warmup)") }
    }

    func run() throws {
        BLAS.threads = threads
        let config = try model.config()
        let vae = try VAE(config: config, maxBatch: batch)
        vae.parameters.initialize(seed: 1)
        let runner = StepRunner(model: vae, optimizer: Adam(parameterCount: vae.parameters.count),
                                communicator: Communicator(), globalBatch: batch, seed: 1)
        let data = SyntheticFaces(seed: 1, imageSize: config.imageSize).floatImages(count: images)

        let flops = Double(vae.trainingFLOPsPerImage)
        print("model: \(model.preset): \(config.summary); \(vae.parameters.count) parameters; "
              + String(format: "%.1f MFLOP per image (forward + backward)", flops / 1e6))
        print("BLAS: \(BLAS.configuration), \(BLAS.threads) thread(s)")
        let peak = BLAS.measurePeakGFLOPS()
        print(String(format: "SGEMM 1536x1536x1536: %.1f GFLOP/s", peak))

        var step = 0
        func train(steps count: Int) throws {
            for _ in 0..<count {
                let first = (step * batch) % (images - batch + 1)
                _ = try runner.run(images: data.pointer + first * config.imageValues, count: batch, firstPosition: 0,
                                   step: step)
                step += 1
            }
        }
        var rates: [Double] = []
        for attempt in 1...repeats {
            try train(steps: warmup)
            let start = monotonicSeconds()
            try train(steps: steps)
            let rate = Double(steps * batch) / (monotonicSeconds() - start)
            rates.append(rate)
            print(String(format: "run %d: %.0f images/s (%.2f ms per step)", attempt, rate, 1000 * Double(batch) / rate))
        }
        let rate = median(rates)
        let achieved = rate * flops / 1e9
        print(String(format: "training: %.0f images/s (median of %d), %.1f GFLOP/s = %.0f%% of SGEMM peak",
                     rate, repeats, achieved, 100 * achieved / peak))
    }
}
