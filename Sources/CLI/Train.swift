import ArgumentParser
import Foundation
import VAECluster
import VAEEngine
import VAETraining

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the VAE on a dataset file, alone or as one of many MPI ranks.",
        discussion: """
            Run it directly for a single process, or under mpirun (launch/train.sh) for data-parallel \
            training: every rank memory-maps the dataset, takes its piece of every shuffled global \
            batch, and all ranks take the same Adam step after one gradient allreduce. Data order and \
            noise do not depend on the number of ranks or threads, and gradients are summed over a \
            fixed tree of the batch's images with leaves of --leaf images. With the same --leaf, 1 \
            process with any --threads and 2 ranks train to the same bits (as do 4 and 8 ranks, and \
            ranks x threads, when their pieces hold at least a leaf); other splits agree up to \
            rounding. Another --leaf is another summation order, equally valid, whose last bits differ \
            and grow apart over the steps. The default --leaf depends on ranks x threads: pin it to \
            compare runs.

            Rank 0 writes RUN_DIR: config.json, metrics.jsonl (one JSON line per logged step and per \
            evaluation), checkpoint-NNNNNNNN.bin named by step (every --checkpoint-every steps, each \
            epoch and at the end; the newest --keep are kept), PNG grids of reconstructions and \
            samples (each epoch, and every --sample-every steps), loss.png (the loss curves, redrawn \
            each epoch) and TensorBoard events in RUN_DIR/tensorboard (tensorboard --logdir RUN_DIR). An existing run is never overwritten: --resume continues it from its \
            newest intact checkpoint.

            SIGTERM, SIGINT (Ctrl-C) or SIGUSR1 to this process or to any rank stops every rank after \
            the current step: rank 0 writes a checkpoint and prints how to continue, and all exit 0. A \
            second SIGINT or SIGTERM stops at once. Under mpirun, send mpirun SIGUSR1 (it kills its ranks \
            one second after forwarding a SIGTERM); launch/train.sh does so for you.

            Examples:
              vae train --data faces.vaeds --out runs/faces --epochs 5
              launch/train.sh --ranks 2 -- --data celeba.vaeds --out runs/celeba
              vae train --data celeba.vaeds --out runs/celeba --resume --epochs 30
            """)

    @Option(help: ArgumentHelp("Dataset file from 'vae prepare' or 'vae synth'.", valueName: "file"))
    var data: String

    @Option(help: ArgumentHelp("Run directory for metrics, checkpoints and image grids.", valueName: "dir"))
    var out: String

    @OptionGroup var model: ModelOptions

    @OptionGroup var precision: PrecisionOption

    @Option(help: "Passes over the training partition.")
    var epochs = 15

    @Option(help: "Global batch size, summed over all ranks.")
    var batch = 64

    @Option(help: "Adam learning rate.")
    var lr: Float = 0.0005

    @Option(help: "Seed for initialisation, shuffling and noise.")
    var seed: UInt64 = 1

    @Option(help: "Steps between metrics lines.")
    var logEvery = 20

    @Option(help: "Steps between checks that all ranks hold identical parameters.")
    var checkEvery = 100

    @Option(help: "Stop after this many steps in all (for smoke runs).")
    var maxSteps: Int?

    @Flag(help: "Continue the run in --out from its newest intact checkpoint.")
    var resume = false

    @Option(help: ArgumentHelp("Steps between checkpoints, besides those at each epoch's end and the run's.",
                               valueName: "n"))
    var checkpointEvery = CheckpointPolicy.defaultEvery

    @Option(help: ArgumentHelp("Checkpoints kept in --out, the newest.", valueName: "n"))
    var keep = CheckpointPolicy.defaultKeep

    @Option(help: ArgumentHelp("""
        Threads per rank, each with one OpenBLAS thread (default: every core for a single process, \
        1 under mpirun; at most the leaves of a rank's piece). They share a rank's piece of the \
        batch along the gradient tree, so with the same --leaf the result is the same bits with any \
        count.
        """, valueName: "n"))
    var threads: Int?

    @Option(help: ArgumentHelp("""
        Images per leaf of the gradient tree, a power of two from 1 to 32: one forward and backward \
        pass on one thread (default: the largest that gives each worker, ranks x threads counted \
        down to a power of two, a leaf of the batch; when resuming, the checkpoint's). Smaller \
        leaves let more workers share a batch, at a lower rate per core. Fixed for the run and its \
        resumes.
        """, valueName: "n"))
    var leaf: Int?

    @Option(help: ArgumentHelp("""
        OpenBLAS threads per thread (default: OPENBLAS_NUM_THREADS, else 1); over 1, float32 products \
        go to OpenBLAS instead of the package's one-thread kernel. This model's products are too small \
        to share well: threads or ranks use cores better.
        """, valueName: "n"))
    var blasThreads: Int?

    @Option(help: ArgumentHelp("""
        Steps between extra grids of reconstructions and samples (reconstructions-stepNNNNNNNN.png, \
        samples-stepNNNNNNNN.png and TensorBoard images) within epochs (default: at epoch ends only).
        """, valueName: "n"))
    var sampleEvery: Int?

    @Option(help: ArgumentHelp("""
        Seconds a rank waits in one collective call (the gradient allreduce, a check) before it \
        prints one line naming the ranks that did not arrive and aborts the job with a non-zero \
        status; 0: wait forever. The default is hundreds of times a step at --batch 64.
        """, valueName: "seconds"))
    var timeout = Train.defaultTimeout

    static let defaultTimeout = 300.0

    func run() throws {
        let communicator = Failure.joinJob()
        // Before the first collective call; a bad value is refused in it, on every rank alike.
        communicator.timeout = timeout.isFinite && timeout > 0 ? timeout : nil
        do {
            // Every argument is checked on every rank before any other MPI work, and the ranks
            // agree on the outcome: a bad flag ends the job with one line, not one per rank.
            let (config, options) = try collectively(communicator) { try validatedInputs(ranks: communicator.size) }
            BLAS.threads = blasThreads ?? ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"].flatMap(Int.init) ?? 1
            StopSignals.install()
            let summary = try Trainer(config: config, options: options, communicator: communicator).run()
            if summary.stopped && communicator.isRoot {
                print("stopped at step \(summary.steps); continue with: \(continueCommand())")
            }
        } catch {
            Failure.exitReporting(error, communicator: communicator)
        }
        communicator.finish()
    }

    /// The command that continues this run: this one with --resume, or, under launch/train.sh,
    /// the launcher's own command line, which it passes in VAE_CONTINUE_COMMAND.
    private func continueCommand() -> String {
        let command = ProcessInfo.processInfo.environment["VAE_CONTINUE_COMMAND"]
            ?? CommandLine.arguments.map(shellQuoted).joined(separator: " ")
        return resume ? command : command + " --resume"
    }

    private func shellQuoted(_ word: String) -> String {
        let plain = !word.isEmpty && word.unicodeScalars.allSatisfy {
            CharacterSet.alphanumerics.contains($0) || "_-./=:,+@%".unicodeScalars.contains($0)
        }
        return plain ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    private func validatedInputs(ranks: Int) throws -> (ModelConfig, TrainingOptions) {
        for (name, value) in [("--threads", threads), ("--blas-threads", blasThreads)] where value ?? 1 <= 0 {
            throw ValidationError("\(name) must be positive, got \(value!)")
        }
        guard timeout.isFinite && timeout >= 0 else {
            throw ValidationError("--timeout must be 0 (no limit) or a positive number of seconds, got \(timeout)")
        }
        var options = TrainingOptions(data: data, runDirectory: out)
        options.epochs = epochs
        options.batch = batch
        options.learningRate = lr
        options.seed = seed
        options.logEvery = logEvery
        options.checkEvery = checkEvery
        options.maxSteps = maxSteps
        options.resume = resume
        options.checkpointEvery = checkpointEvery
        options.keep = keep
        options.threads = threads ?? (ranks > 1 ? 1 : ProcessInfo.processInfo.activeProcessorCount)
        options.leaf = leaf
        options.sampleEvery = sampleEvery
        options.precision = precision.precision
        try options.validate(ranks: ranks)
        return (try model.config(), options)
    }
}
