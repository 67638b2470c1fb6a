import Dispatch
import Foundation
import VAEEngine

/// One rank's piece of a global batch as Float32 values in [0, 1], NHWC.
public struct Batch {
    /// count x imageSize x imageSize x channels values, valid until the next call to `next()`.
    public let pixels: UnsafePointer<Float>
    public let count: Int
    /// Where this piece starts in the global batch.
    public let offsetInGlobalBatch: Int
    public let epoch: Int
    public let step: Int
    /// The dataset indices of the images.
    public let indices: ArraySlice<Int32>
}

/// Delivers this rank's pieces of the global batches, epoch after epoch, following EpochPlan. A
/// background thread converts the next piece while the caller computes on the current one, in two
/// buffers allocated once; `waitSeconds` says how long the caller still had to wait.
public final class BatchLoader {
    public let stepsPerEpoch: Int
    /// Total time `next()` spent waiting for the background thread.
    public private(set) var waitSeconds = 0.0
    private let pipeline: Pipeline
    private var delivered = 0
    private var stopped = false

    /// Starts at (`epoch`, `step`), so that a resumed run continues with the batch it would have seen.
    public init(dataset: Dataset, trainingIndices: [Int32], batchSize: Int, seed: UInt64, rank: Int, ranks: Int,
                epoch: Int = 0, step: Int = 0) throws {
        guard batchSize > 0, trainingIndices.count >= batchSize else {
            throw DataError.invalidSetting("batch size \(batchSize) needs at least as many training images, "
                + "\(dataset.path) has \(trainingIndices.count)")
        }
        stepsPerEpoch = trainingIndices.count / batchSize
        precondition(step >= 0 && step < stepsPerEpoch, "start step \(step) outside 0..<\(stepsPerEpoch)")
        pipeline = Pipeline(dataset: dataset, trainingIndices: trainingIndices, batchSize: batchSize, seed: seed,
                            rank: rank, ranks: ranks)
        let pipeline = self.pipeline
        let thread = Thread { pipeline.run(firstEpoch: epoch, firstStep: step) }
        thread.name = "batch loader"
        thread.start()
    }

    deinit { stop() }

    /// The next piece. The previous batch's pixels are handed back to the background thread.
    public func next() -> Batch {
        precondition(!stopped, "BatchLoader.next called after stop")
        if delivered > 0 { pipeline.free.signal() }
        let started = monotonicSeconds()
        pipeline.filled.wait()
        waitSeconds += monotonicSeconds() - started
        defer { delivered += 1 }
        return pipeline.slots[delivered % 2]!
    }

    /// Stops the background thread and waits for it to finish; later calls do nothing.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        pipeline.requestStop()
        pipeline.finished.wait()
    }
}

/// The state the background thread works on. The semaphores order every access: the thread fills
/// slot k % 2 only after `free` says the caller gave it back, and the caller reads it only after
/// `filled` says it is ready.
private final class Pipeline: @unchecked Sendable {
    let dataset: Dataset
    let trainingIndices: [Int32]
    let batchSize: Int, seed: UInt64, rank: Int, ranks: Int
    let buffers: [FloatBuffer]
    var slots: [Batch?] = [nil, nil]
    let free = DispatchSemaphore(value: 0)
    let filled = DispatchSemaphore(value: 0)
    let finished = DispatchSemaphore(value: 0)
    private let stopLock = NSLock()
    private var stopRequested = false

    init(dataset: Dataset, trainingIndices: [Int32], batchSize: Int, seed: UInt64, rank: Int, ranks: Int) {
        self.dataset = dataset
        self.trainingIndices = trainingIndices
        self.batchSize = batchSize
        self.seed = seed
        self.rank = rank
        self.ranks = ranks
        let largestPiece = (batchSize + ranks - 1) / ranks
        let imageValues = dataset.imageSize * dataset.imageSize * dataset.channels
        buffers = (0..<2).map { _ in FloatBuffer(count: largestPiece * imageValues) }
        // Both buffers start free. Signalled here rather than created with value 2: libdispatch
        // traps when a semaphore is released holding less than its initial value.
        free.signal()
        free.signal()
    }

    /// Wakes the thread if it waits for a free buffer; it finishes the piece in hand, if any, then exits.
    func requestStop() {
        stopLock.withLock { stopRequested = true }
        free.signal()
    }

    func run(firstEpoch: Int, firstStep: Int) {
        var plan = EpochPlan(trainingIndices: trainingIndices, batchSize: batchSize, seed: seed, epoch: firstEpoch)
        var step = firstStep
        var produced = 0
        while true {
            free.wait()
            if stopLock.withLock({ stopRequested }) { break }
            if step == plan.stepsPerEpoch {
                plan = EpochPlan(trainingIndices: trainingIndices, batchSize: batchSize, seed: seed, epoch: plan.epoch + 1)
                step = 0
            }
            let piece = plan.piece(step: step, rank: rank, ranks: ranks)
            let buffer = buffers[produced % 2].pointer
            dataset.loadFloats(piece.indices, into: buffer)
            slots[produced % 2] = Batch(pixels: buffer, count: piece.indices.count,
                                        offsetInGlobalBatch: piece.offsetInGlobalBatch, epoch: plan.epoch, step: step,
                                        indices: piece.indices)
            filled.signal()
            produced += 1
            step += 1
        }
        finished.signal()
    }
}
