import VAECluster
import VAEData
import VAEEngine

/// One data-parallel optimisation step, the same on every rank:
///   1. draw the noise of this rank's piece of the global batch (keyed by global position),
///   2. forward and backward on the piece, gradients scaled by 1 / global batch size, so that
///      their sum over ranks is the gradient of the global batch mean; the piece's images are
///      summed over a GradientTree, so the sum does not depend on the split,
///   3. one allreduce over the flat gradient buffer, the loss sums riding along at its tail
///      (summed over the same tree, so that they too are the same bits for any split),
///   4. stop before any update if anything is not finite, on every rank alike,
///   5. the same Adam update on every rank.
/// The allreduce also carries each rank's vote to stop after this step (a signal it received), so
/// that every rank learns of any rank's vote in the same step.
public final class StepRunner {
    public let model: VAE
    public let optimizer: Adam
    public let communicator: Communicator
    public let globalBatch: Int
    public let seed: UInt64
    /// Images of one leaf of the gradient tree at most: a run parameter, since it fixes the order
    /// in which the batch's gradients are summed.
    public let leaf: Int
    /// Leaves of the gradient tree computed at once, each on its own model replica.
    public let threads: Int
    private let tree: GradientTree
    /// Seconds spent in the allreduce, summed over steps (for the communication share).
    public private(set) var reduceSeconds = 0.0
    /// Seconds this rank spent computing its piece's gradients, summed over steps (for `Stragglers`).
    public private(set) var computeSeconds = 0.0

    /// Whether any rank voted to stop after the last step.
    public private(set) var stopAgreed = false

    /// Values appended to the gradients: the loss sums (reconstruction, KL, images) and the votes
    /// to stop.
    static let tailSlots = 4

    /// The most images the model runs at once on one rank: the largest piece, or one leaf of the
    /// gradient tree if that is smaller.
    public static func modelBatch(globalBatch: Int, ranks: Int, leaf: Int) -> Int {
        min(largestPiece(globalBatch: globalBatch, ranks: ranks), leaf)
    }

    /// Leaf sizes are powers of two, so that halving a power-of-two batch ends exactly on them.
    public static func validateLeaf(_ leaf: Int) throws {
        guard leaf > 0 && leaf <= GradientTree.largestLeaf && leaf & (leaf - 1) == 0 else {
            throw TrainingError("--leaf must be a power of two from 1 to \(GradientTree.largestLeaf), got \(leaf)")
        }
    }

    /// The leaf a new run takes unless told otherwise: the largest, up to 32, that gives each of
    /// `workers` (ranks x threads per rank, rounded down to a power of two) a leaf of the global
    /// batch. Rounded down because a batch of a power of two images has a power-of-two number of
    /// leaves: leaves for workers beyond a power of two would be half as large, and some workers
    /// would run two of them, which takes longer than one leaf twice the size (measured: README, "Many
    /// cores: the leaf size").
    public static func defaultLeaf(globalBatch: Int, workers: Int) -> Int {
        let usableWorkers = 1 << (Int.bitWidth - 1 - max(workers, 1).leadingZeroBitCount)
        var leaf = GradientTree.largestLeaf
        while leaf > 1 && GradientTree.leaves(globalBatch, leaf: leaf) < usableWorkers { leaf /= 2 }
        return leaf
    }

    static func largestPiece(globalBatch: Int, ranks: Int) -> Int {
        EpochPlan.pieceRange(batchSize: globalBatch, rank: 0, ranks: ranks).count
    }

    /// The gradient tree has leaves of `leaf` images (a power of two up to 32); `threads` model
    /// replicas compute its leaves at once (at most as many as the largest piece has leaves); each
    /// should have one OpenBLAS thread.
    public init(model: VAE, optimizer: Adam, communicator: Communicator, globalBatch: Int, seed: UInt64,
                leaf: Int, threads: Int = 1) throws {
        precondition(model.parameters.gradients.count >= model.parameters.count + StepRunner.tailSlots,
                     "the gradient buffer needs room for the loss sums")
        precondition(model.maxBatch >= StepRunner.modelBatch(globalBatch: globalBatch, ranks: communicator.size, leaf: leaf),
                     "the model needs room for one leaf of the gradient tree")
        precondition(threads > 0, "at least one thread")
        try StepRunner.validateLeaf(leaf)
        self.model = model
        self.optimizer = optimizer
        self.communicator = communicator
        self.globalBatch = globalBatch
        self.seed = seed
        self.leaf = leaf
        let largestPiece = StepRunner.largestPiece(globalBatch: globalBatch, ranks: communicator.size)
        self.threads = min(threads, GradientTree.leaves(largestPiece, leaf: leaf))
        // Replicas only ever run one leaf (the first model may be larger, e.g. to draw image grids).
        let replicas = try (1..<self.threads).map { _ in
            try VAE(config: model.config, maxBatch: min(largestPiece, leaf), precision: model.precision,
                    sharingParametersWith: model)
        }
        tree = GradientTree(models: [model] + replicas, values: model.parameters.count + StepRunner.tailSlots,
                            largestPiece: largestPiece, leaf: leaf)
    }

    /// Trains on this rank's piece: `count` images at positions firstPosition... of global batch `step`.
    /// Returns the loss sums of the whole global batch; `stopAgreed` then says whether any rank
    /// voted to stop.
    public func run(images: UnsafePointer<Float>, count: Int, firstPosition: Int, step: Int,
                    voteToStop: Bool = false) throws -> LossSums {
        let parameters = model.parameters
        communicator.step = step + 1
        let computeStart = monotonicSeconds()
        tree.sum(0..<count) { leaf, model in
            model.drawNoise(seed: seed, step: step, firstPosition: firstPosition + leaf.lowerBound, batch: leaf.count)
            let sums = model.loss(images + leaf.lowerBound * model.config.imageValues, batch: leaf.count,
                                  gradientScale: 1 / Float(globalBatch))
            let tail = model.parameters.gradientTarget + model.parameters.count
            tail[0] = Float(sums.reconstruction)
            tail[1] = Float(sums.kl)
            tail[2] = Float(sums.images)
            tail[3] = 0
        }

        let start = monotonicSeconds()
        computeSeconds += start - computeStart
        parameters.gradients.pointer[parameters.count + 3] = voteToStop ? 1 : 0
        communicator.allreduceSum(parameters.gradients.pointer, count: parameters.count + StepRunner.tailSlots,
                                  what: "the gradient allreduce")
        reduceSeconds += monotonicSeconds() - start

        let tail = parameters.gradients.pointer + parameters.count
        let total = LossSums(reconstruction: Double(tail[0]), kl: Double(tail[1]), images: Int(tail[2].rounded()))
        stopAgreed = tail[3] > 0
        guard total.reconstruction.isFinite, total.kl.isFinite, allFinite(parameters.gradients.pointer, parameters.count)
        else {
            throw TrainingError("step \(step): loss or gradient is not finite (reconstruction \(total.reconstruction), "
                                + "KL \(total.kl)); stopped before updating the parameters. Try a lower --lr.",
                                collective: true)
        }
        optimizer.update(parameters, parts: threads)
        return total
    }
}
