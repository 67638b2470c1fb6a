import Dispatch
import Foundation
import VAEEngine

/// One rank's piece of a global batch as Float32 values in [0, 1], NHWC.
public struct Batch {
    /// count x imageSize x imageSize x channels values, valid until the next call to `next()`.
    public let images: UnsafePointer<Float>
    public let count: Int
    /// Where this piece starts in the global batch.
    public let offsetInGlobalBatch: Int
    public let epoch: Int
    public let step: Int
    /// The dataset indices of the images.
    public let indices: ArraySlice<Int32>
}

/// Delivers this rank's pieces of the global batches of a range of training steps, following
/// EpochPlan: global step s is step s % stepsPerEpoch of epoch s / stepsPerEpoch. A background thread
/// converts the next piece while the caller computes on the current one, in two buffers allocated
/// once; `waitSeconds` says how long the caller still had to wait.
public final class BatchLoader {
    public let stepsPerEpoch: Int
    public let steps: Range<Int>
    /// Total time `next()` spent waiting for the background thread.
    public private(set) var waitSeconds = 0.0
    private let pipeline: Pipeline
    private var delivered = 0
    private var stopped = false

    /// `steps` are global step numbers: a resumed run passes the steps it has left. The caller checks
    /// that there is at least one batch of training images.
    public init(dataset: Dataset, trainingIndices: [Int32], batchSize: Int, seed: UInt64, rank: Int, ranks: Int,
                steps: Range<Int>) {
        precondition(batchSize > 0 && trainingIndices.count >= batchSize,
                     "batch size \(batchSize) needs at least as many training images, there are \(trainingIndices.count)")
        stepsPerEpoch = trainingIndices.count / batchSize
        self.steps = steps
        pipeline = Pipeline(dataset: dataset, trainingIndices: trainingIndices, batchSize: batchSize, seed: seed,
                            rank: rank, ranks: ranks)
        let pipeline = self.pipeline
        let thread = Thread { pipeline.run(steps: steps) }
        thread.name = "batch loader"
        thread.start()
    }

    deinit { stop() }

    /// The piece of the next step of the range. The previous batch's buffer goes back to the
    /// background thread.
    public func next() -> Batch {
        precondition(!stopped, "BatchLoader.next called after stop")
        precondition(delivered < steps.count, "BatchLoader.next called after the last step, \(steps.upperBound - 1)")
        if delivered > 0 { pipeline.free.signal() }
        let started = monotonicSeconds()
        pipeline.filled.wait()
        waitSeconds += monotonicSeconds() - started
        defer { delivered += 1 }
        return pipeline.slots[delivered % 2].batch!
    }

    /// Stops the background thread and waits for it to finish; later calls do nothing.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        pipeline.requestStop()
        pipeline.finished.wait()
    }
}

/// One of the two places a piece is converted into and handed over from.
private final class Slot {
    let images: FloatBuffer
    /// Written by the background thread, then read by the caller, never both at once (see Pipeline).
    var batch: Batch?

    init(values: Int) { images = FloatBuffer(count: values) }
}

/// The state the background thread works on. The semaphores order every access to a slot: the
/// thread fills slot k % 2 only after `free` says the caller gave it back, and the caller reads it
/// only after `filled` says it is ready. Each slot is an object of its own in an array that never
/// changes: the two threads touch different slots at the same time, and writing an element of a
/// shared Swift array while the other thread reads it would race on the array itself.
private final class Pipeline: @unchecked Sendable {
    let dataset: Dataset
    let trainingIndices: [Int32]
    let batchSize: Int, seed: UInt64, rank: Int, ranks: Int
    let slots: [Slot]
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
        slots = (0..<2).map { _ in Slot(values: largestPiece * imageValues) }
        // Both slots start free. Signalled here rather than created with value 2: libdispatch
        // traps when a semaphore is released holding less than its initial value.
        free.signal()
        free.signal()
    }

    /// Wakes the thread if it waits for a free buffer; it finishes the piece in hand, if any, then exits.
    func requestStop() {
        stopLock.withLock { stopRequested = true }
        free.signal()
    }

    func run(steps: Range<Int>) {
        let stepsPerEpoch = trainingIndices.count / batchSize
        var plan = EpochPlan(trainingIndices: trainingIndices, batchSize: batchSize, seed: seed,
                             epoch: steps.lowerBound / stepsPerEpoch)
        for (produced, globalStep) in steps.enumerated() {
            free.wait()
            if stopLock.withLock({ stopRequested }) { break }
            let epoch = globalStep / stepsPerEpoch, step = globalStep % stepsPerEpoch
            if epoch != plan.epoch {
                plan = EpochPlan(trainingIndices: trainingIndices, batchSize: batchSize, seed: seed, epoch: epoch)
            }
            let piece = plan.piece(step: step, rank: rank, ranks: ranks)
            let slot = slots[produced % 2]
            dataset.loadFloats(piece.indices, into: slot.images.pointer)
            slot.batch = Batch(images: slot.images.pointer, count: piece.indices.count,
                               offsetInGlobalBatch: piece.offsetInGlobalBatch, epoch: epoch, step: step,
                               indices: piece.indices)
            filled.signal()
        }
        finished.signal()
    }
}
