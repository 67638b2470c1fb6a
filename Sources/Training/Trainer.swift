#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import VAECluster
import VAEData
import VAEEngine

public struct TrainingOptions: Codable, Sendable {
    public var data: String
    public var runDirectory: String
    public var epochs = 15
    /// Images per global batch, summed over ranks.
    public var batch = 64
    public var learningRate: Float = 0.0005
    public var seed: UInt64 = 1
    /// Steps between metrics lines.
    public var logEvery = 20
    /// Steps between the ranks' parameter comparisons.
    public var checkEvery = 100
    /// Stop after this many steps in all, if fewer than the epochs make (smoke runs, tests).
    public var maxSteps: Int?
    /// Continue the run in `runDirectory` from its newest intact checkpoint.
    public var resume = false
    /// Steps between checkpoints, besides those at the end of every epoch and of the run.
    public var checkpointEvery = CheckpointPolicy.defaultEvery
    /// Checkpoints kept in the run directory, the newest.
    public var keep = CheckpointPolicy.defaultKeep
    /// Threads per rank, each computing leaves of the gradient tree with one OpenBLAS thread.
    /// The result does not depend on it.
    public var threads = 1
    /// Images per leaf of the gradient tree, which fixes the order the gradients are summed in
    /// (nil: the checkpoint's when resuming, else `StepRunner.defaultLeaf` for the batch and the
    /// workers).
    public var leaf: Int?
    /// Steps between extra grids of reconstructions and samples (PNG and TensorBoard) within
    /// epochs; nil: at the end of every epoch only.
    public var sampleEvery: Int?
    /// The number format of the GEMM operands; everything else is float32 either way.
    public var precision = Precision.float32

    public init(data: String, runDirectory: String) {
        self.data = data
        self.runDirectory = runDirectory
    }

    /// Checks what can be checked without the data, for a job of `ranks` ranks.
    public func validate(ranks: Int) throws {
        guard batch > 0 else { throw TrainingError("--batch must be positive, got \(batch)") }
        guard batch >= ranks else {
            throw TrainingError("--batch \(batch) is smaller than the \(ranks) ranks: every rank needs an image")
        }
        guard epochs > 0, logEvery > 0, checkEvery > 0, maxSteps ?? 1 > 0, threads > 0, checkpointEvery > 0, keep > 0 else {
            throw TrainingError("--epochs, --log-every, --check-every, --max-steps, --threads, --checkpoint-every and --keep "
                                + "must be positive")
        }
        if let sampleEvery, sampleEvery <= 0 {
            throw TrainingError("--sample-every must be positive, got \(sampleEvery)")
        }
        guard learningRate.isFinite && learningRate > 0 else {
            throw TrainingError("--lr must be a positive number, got \(learningRate)")
        }
        if let leaf { try StepRunner.validateLeaf(leaf) }
        try precision.validate()
    }
}

/// What a finished run reports.
public struct TrainingSummary: Sendable {
    /// Steps completed, and whether the run stopped on a signal before the steps it was asked for.
    public var steps: Int
    public var stopped: Bool
    public var lastLoss: LossSums
    public var validation: LossSums?
    public var imagesPerSecond: Double
    /// Shares of the step loop's wall time spent waiting for data and in the gradient allreduce.
    public var dataWaitShare: Double
    public var allreduceShare: Double
}

/// The data-parallel training loop, run by every rank alike. Rank 0 alone writes the run
/// directory: config.json, metrics.jsonl, checkpoints (see `CheckpointPolicy`), PNG grids of
/// reconstructions and samples, loss.png (`LossPlot`) and TensorBoard events (`TensorBoardWriter`).
public final class Trainer {
    public let config: ModelConfig
    public let options: TrainingOptions
    let communicator: Communicator
    let dataset: Dataset
    let model: VAE
    let optimizer: Adam
    let runner: StepRunner
    let trainingIndices: [Int32], validationIndices: [Int32]
    let stepsPerEpoch: Int, totalSteps: Int
    let evaluationImages: FloatBuffer
    let checkpoints: CheckpointPolicy
    /// Rank 0's checkpoint to resume from; nil on other ranks and in a new run.
    private let resumePoint: IntactCheckpoint?
    private var startStep = 0
    /// Rank 0's TensorBoard events file of this process; nil on other ranks.
    private var tensorBoard: TensorBoardWriter?

    static let gridColumns = 8

    /// `config.imageSize` is taken from the dataset: the model is built for the images it trains on.
    public init(config requested: ModelConfig, options: TrainingOptions, communicator: Communicator) throws {
        self.options = options
        self.communicator = communicator
        // Everything that can fail on one rank and not another is checked here, in one agreement,
        // before any collective call that a failed rank would never join.
        let (dataset, config, trainingIndices) = try collectively(communicator) { () throws -> (Dataset, ModelConfig, [Int32]) in
            try options.validate(ranks: communicator.size)
            // One rank per machine hashes its copy of the file; the others learn the verdict here.
            let dataset = try Dataset(path: options.data, verifyChecksum: communicator.isFirstOnHost)
            var config = requested
            config.imageSize = dataset.imageSize
            config.imageChannels = dataset.channels
            do {
                try config.validate()
            } catch {
                throw TrainingError("\(options.data) has \(dataset.imageSize)x\(dataset.imageSize) images: \(error)")
            }
            let training = dataset.indices(in: .train)
            guard training.count >= options.batch else {
                throw TrainingError("\(options.data): \(training.count) training images, fewer than one batch of \(options.batch)")
            }
            return (dataset, config, training)
        }
        try Trainer.verifySameDataset(dataset, trainingImages: trainingIndices.count, path: options.data,
                                      communicator: communicator)
        // Rank 0 alone reads the run directory: the checkpoint to resume from, and so the run's leaf.
        let (resumePoint, rootLeaf) = try collectively(communicator) { () throws -> (IntactCheckpoint?, Int) in
            guard communicator.isRoot else { return (nil, 0) }
            let resumePoint = options.resume ? try CheckpointPolicy.newestIntactCheckpoint(in: options.runDirectory) : nil
            return (resumePoint, try Trainer.runLeaf(options: options, resumingFrom: resumePoint,
                                                     workers: communicator.size * options.threads))
        }
        var leaf = rootLeaf
        communicator.broadcast(&leaf, bytes: MemoryLayout<Int>.size)
        self.resumePoint = resumePoint
        self.dataset = dataset
        self.config = config
        self.trainingIndices = trainingIndices
        validationIndices = dataset.indices(in: .valid)
        stepsPerEpoch = trainingIndices.count / options.batch
        totalSteps = min(options.epochs * stepsPerEpoch, options.maxSteps ?? Int.max)
        // The grids decode two rows of images.
        let modelBatch = StepRunner.modelBatch(globalBatch: options.batch, ranks: communicator.size, leaf: leaf)
        model = try VAE(config: config, maxBatch: max(modelBatch, 2 * Trainer.gridColumns), precision: options.precision)
        optimizer = Adam(parameterCount: model.parameters.count, learningRate: options.learningRate)
        runner = try StepRunner(model: model, optimizer: optimizer, communicator: communicator,
                                globalBatch: options.batch, seed: options.seed, leaf: leaf, threads: options.threads)
        evaluationImages = FloatBuffer(count: model.maxBatch * config.imageValues)
        let record = CheckpointInfo(config: config, step: 0, seed: options.seed, batch: options.batch, leaf: leaf,
                                    learningRate: options.learningRate, parameters: Checkpoint.describe(model.parameters),
                                    datasetChecksum: dataset.checksum, epochs: options.epochs)
        checkpoints = CheckpointPolicy(runDirectory: options.runDirectory, every: options.checkpointEvery, keep: options.keep,
                                       record: record, model: model, optimizer: optimizer, communicator: communicator)
    }

    /// The run's leaf: when resuming, the checkpoint's (an explicit --leaf must agree); otherwise
    /// --leaf, or the default for the batch and all ranks' threads.
    private static func runLeaf(options: TrainingOptions, resumingFrom checkpoint: IntactCheckpoint?, workers: Int) throws -> Int {
        guard let checkpoint else {
            return options.leaf ?? StepRunner.defaultLeaf(globalBatch: options.batch, workers: workers)
        }
        if let requested = options.leaf, requested != checkpoint.info.leaf {
            throw TrainingError("\(checkpoint.path): the run used --leaf \(checkpoint.info.leaf); resume with the same --leaf, "
                                + "or without one")
        }
        return checkpoint.info.leaf
    }

    /// Ranks on other machines read their own copies of the dataset. A copy with other images
    /// would give its ranks other steps per epoch (so the ranks would wait in different collective
    /// calls) or other data: every rank compares the identity of its copy with all others'.
    static func verifySameDataset(_ dataset: Dataset, trainingImages: Int, path: String, communicator: Communicator) throws {
        let identity = [dataset.checksum, UInt64(dataset.count), UInt64(trainingImages),
                        UInt64(dataset.imageSize), UInt64(dataset.channels)]
        let identities = communicator.allgather(identity)
        guard identities.contains(where: { $0 != identity }) else { return }
        let paths = communicator.allgather(text: path)
        var groups: [[UInt64]] = []
        for identity in identities where !groups.contains(identity) { groups.append(identity) }
        let descriptions = groups.map { group in
            let ranks = identities.indices.filter { identities[$0] == group }
            let hosts = Set(ranks.map { communicator.hosts[$0] }).sorted().joined(separator: ", ")
            let files = Set(ranks.map { paths[$0] }).sorted().joined(separator: ", ")
            return "\(describeRanks(ranks)) on \(hosts) read \(files): \(group[1]) images, \(group[2]) for training, "
                + "\(group[3])x\(group[3])x\(group[4]), checksum \(String(format: "%016llx", group[0]))"
        }
        throw TrainingError("the ranks' dataset files differ, every rank needs the same file: "
                            + descriptions.joined(separator: "; "), collective: true)
    }

    public func run() throws -> TrainingSummary {
        try prepareRunDirectory()
        let changes = try startState()
        try collectively(communicator) {
            guard communicator.isRoot else { return }
            tensorBoard = try TensorBoardWriter(directory: options.runDirectory + "/tensorboard", host: communicator.hosts[0],
                                                firstStep: startStep)
        }
        let reporter = communicator.isRoot
            ? try Reporter(metricsPath: metricsPath, totalSteps: totalSteps,
                           stepsPerEpoch: stepsPerEpoch, epochs: (totalSteps + stepsPerEpoch - 1) / stepsPerEpoch,
                           logEvery: options.logEvery, firstStep: startStep, globalBatch: options.batch,
                           tensorBoard: tensorBoard)
            : nil
        for line in resumePoint?.skipped ?? [] { reporter?.message(line) }
        if let resumePoint {
            let name = (resumePoint.path as NSString).lastPathComponent
            reporter?.message("resuming \(options.runDirectory) at step \(startStep) from \(name)")
        }
        if let dropped = reporter?.droppedLines, dropped > 0 {
            reporter?.message("metrics.jsonl: dropped \(dropped) line(s) logged after the checkpoint of step \(startStep); "
                              + "those steps run again")
        }
        reporter?.message("training \(config.summary) on \(trainingIndices.count) images of \(options.data); "
                          + "\(communicator.description), \(runner.threads) thread(s) per rank; batch \(options.batch) "
                          + "in leaves of \(runner.leaf), \(stepsPerEpoch) steps per epoch")
        if !changes.isEmpty {
            reporter?.resumed(step: startStep, changed: changes)
        }

        let loader = BatchLoader(dataset: dataset, trainingIndices: trainingIndices, batchSize: options.batch,
                                 seed: options.seed, rank: communicator.rank, ranks: communicator.size,
                                 steps: startStep..<totalSteps)
        var lastLoss = LossSums(), validation: LossSums?
        let loopStart = monotonicSeconds()
        let reduceStart = runner.reduceSeconds
        let stragglers = Stragglers(communicator: communicator, logEvery: options.logEvery, totalSteps: totalSteps,
                                    firstStep: startStep)
        var done = startStep
        while done < totalSteps {
            let batch = loader.next()
            lastLoss = try runner.run(images: batch.images, count: batch.count, firstPosition: batch.offsetInGlobalBatch,
                                      step: done, voteToStop: StopSignals.requested)
            done += 1
            let compute = stragglers.afterStep(done, computeSeconds: runner.computeSeconds)
            reporter?.stepFinished(step: done, images: done * options.batch, loss: lastLoss, beta: config.beta, compute: compute)
            if done % options.checkEvery == 0 { try verifyRanksAgree(step: done) }
            let epochEnded = done % stepsPerEpoch == 0 || done == totalSteps
            if epochEnded {
                validation = try endOfEpoch(step: done, reporter: reporter)
            } else if let every = options.sampleEvery, done % every == 0, communicator.isRoot {
                try writeGrids(name: String(format: "step%08d", done), step: done)
            }
            // A stop agreed on by the ranks is a checkpoint too: the run continues from there.
            if runner.stopAgreed || checkpoints.isDue(step: done, epochEnded: epochEnded) {
                try checkpoints.save(step: done)
            }
            if runner.stopAgreed { break }
        }
        try verifyRanksAgree(step: done)
        let compute = stragglers.wholeRun(step: done, computeSeconds: runner.computeSeconds)
        let seconds = max(monotonicSeconds() - loopStart, 1e-9)
        let summary = TrainingSummary(
            steps: done, stopped: done < totalSteps, lastLoss: lastLoss, validation: validation,
            imagesPerSecond: Double((done - startStep) * options.batch) / seconds,
            dataWaitShare: loader.waitSeconds / seconds, allreduceShare: (runner.reduceSeconds - reduceStart) / seconds)
        if summary.stopped {
            reporter?.event("stopped", step: done)
            if communicator.isRoot { try LossPlot.draw(metricsPath: metricsPath, to: lossPlotPath) }
        }
        reporter?.message(String(format: "%@: %d steps, %.0f images/s; waiting for data %.1f%%, allreduce %.1f%% of the time",
                                  summary.stopped ? "stopped" : "done", done - startStep, summary.imagesPerSecond,
                                  100 * summary.dataWaitShare, 100 * summary.allreduceShare))
        if communicator.size > 1 { reporter?.message(compute.summary) }
        return summary
    }

    private var metricsPath: String { options.runDirectory + "/metrics.jsonl" }
    private var lossPlotPath: String { options.runDirectory + "/loss.png" }

    // MARK: Start

    /// Rank 0 creates the run directory, or checks it when resuming; a run is never overwritten.
    private func prepareRunDirectory() throws {
        try collectively(communicator) {
            guard communicator.isRoot else { return }
            let files = FileManager.default
            // Resuming without a checkpoint stopped in `init`, saying so.
            if !options.resume && files.fileExists(atPath: options.runDirectory + "/metrics.jsonl") {
                throw TrainingError("\(options.runDirectory) already holds a run; pass --resume to continue it, or choose another --out")
            }
            do {
                try files.createDirectory(atPath: options.runDirectory, withIntermediateDirectories: true)
            } catch {
                throw TrainingError("\(options.runDirectory): cannot create the run directory: \(error.localizedDescription)")
            }
            if !options.resume { try writeRunConfiguration() }
        }
    }

    private struct RunConfiguration: Codable {
        var model: ModelConfig
        var training: TrainingOptions
        var ranks: Int
        var threadsPerRank: Int
        /// Images per leaf of the gradient tree: the same leaf gives the same bits for any ranks and threads.
        var leaf: Int
        var blasThreadsPerThread: Int
        var parameters: Int
        var trainingImages: Int
        var validationImages: Int
        var dataset: String
    }

    private func writeRunConfiguration() throws {
        let run = RunConfiguration(model: config, training: options, ranks: communicator.size, threadsPerRank: runner.threads,
                                   leaf: runner.leaf, blasThreadsPerThread: BLAS.threads,
                                   parameters: model.parameters.count, trainingImages: trainingIndices.count,
                                   validationImages: validationIndices.count, dataset: dataset.provenance.source)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(run), to: options.runDirectory + "/config.json")
    }

    /// Rank 0 initialises (or reads the checkpoint) and broadcasts, so every rank starts identical.
    /// Returns, on rank 0, what the resume changed (see `CheckpointPolicy.changesOnResume`).
    private func startState() throws -> [String: [Any]] {
        var step = 0
        var changes: [String: [Any]] = [:]
        try collectively(communicator) {
            guard communicator.isRoot else { return }
            if let resumePoint {
                changes = try checkpoints.changesOnResume(from: resumePoint)
                step = try Checkpoint.read(from: resumePoint.path, into: model, optimizer: optimizer).step
            } else {
                model.parameters.initialize(seed: options.seed)
            }
        }
        let count = model.parameters.count
        for buffer in Checkpoint.stateBuffers(model: model, optimizer: optimizer) {
            communicator.broadcast(buffer.pointer, bytes: count * MemoryLayout<Float>.size, what: "the start state from rank 0")
        }
        communicator.broadcast(&step, bytes: MemoryLayout<Int>.size)
        optimizer.restore(step: step)
        guard step <= totalSteps else {
            throw TrainingError("\(options.runDirectory): the checkpoint is at step \(step), beyond the \(totalSteps) steps "
                                + "asked for; raise --epochs", collective: true)
        }
        startStep = step
        return changes
    }

    // MARK: During training

    /// Ranks must hold identical parameters; a silent drift would make the run meaningless.
    private func verifyRanksAgree(step: Int) throws {
        let values = model.parameters.values
        let hash = xxHash64(UnsafeRawBufferPointer(start: values.pointer, count: values.count * MemoryLayout<Float>.size))
        let hashes = communicator.allgather(hash, what: "the check that the ranks' parameters agree")
        let differing = hashes.indices.filter { hashes[$0] != hashes[0] }
        guard differing.isEmpty else {
            throw TrainingError("step \(step): the parameters of \(describeRanks(differing)) differ from rank 0's; stopping",
                                collective: true)
        }
    }

    private func endOfEpoch(step: Int, reporter: Reporter?) throws -> LossSums? {
        var validation: LossSums?
        if !validationIndices.isEmpty {
            let loss = evaluate(validationIndices)
            reporter?.evaluation(step: step, partition: "valid", loss: loss, beta: config.beta)
            validation = loss
        }
        if communicator.isRoot {
            let epoch = (step + stepsPerEpoch - 1) / stepsPerEpoch
            try writeGrids(name: String(format: "epoch%03d", epoch), step: step)
            try LossPlot.draw(metricsPath: metricsPath, to: lossPlotPath)
        }
        return validation
    }

    /// Loss over `indices`, split across ranks batch by batch, with fixed noise (tag: evaluation).
    func evaluate(_ indices: [Int32]) -> LossSums {
        evaluationLoss(model: model, dataset: dataset, indices: indices, batch: options.batch, seed: options.seed,
                       communicator: communicator, images: evaluationImages)
    }

    /// Rank 0: the first images of the validation partition (or training, if there is none) above
    /// their reconstructions from mu, and decodings of fixed random latents; as PNG files named
    /// by `name`, and as TensorBoard images at `step`.
    private func writeGrids(name: String, step: Int) throws {
        let count = Trainer.gridColumns
        let source = validationIndices.isEmpty ? trainingIndices : validationIndices
        let shown = Array(source.prefix(count))
        let values = config.imageValues
        let grid = FloatBuffer(count: 2 * count * values)
        dataset.loadFloats(shown, into: grid.pointer)
        dataset.loadFloats(shown, into: evaluationImages.pointer)
        model.encode(evaluationImages.pointer, batch: shown.count)
        model.latents.update(from: model.means, count: shown.count * config.latent)
        model.decode(batch: shown.count)
        (grid.pointer + shown.count * values).update(from: model.reconstruction, count: shown.count * values)
        let reconstructions = "\(options.runDirectory)/reconstructions-\(name).png"
        try writeImageGrid(path: reconstructions, pixels: grid.pointer,
                           count: 2 * shown.count, imageSize: config.imageSize, columns: count)
        tensorBoard?.image(tag: "reconstructions", pngFile: reconstructions, step: step)

        let samples = 2 * count
        let random = Philox(seed: options.seed, stream: .sampling)
        for i in 0..<samples {
            random.fillNormal(model.latents + i * config.latent, count: config.latent, tag: 0, row: UInt32(i))
        }
        model.decode(batch: samples)
        let samplesPath = "\(options.runDirectory)/samples-\(name).png"
        try writeImageGrid(path: samplesPath, pixels: model.reconstruction,
                           count: samples, imageSize: config.imageSize, columns: count)
        tensorBoard?.image(tag: "samples", pngFile: samplesPath, step: step)
    }
}

