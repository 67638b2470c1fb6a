import VAEEngine

/// The order of one epoch's training images and how each global batch is split across ranks.
///
/// The contract that makes training independent of the number of ranks:
/// - every rank derives the same order from (seed, epoch) alone, with no communication;
/// - global batch `step` is images [step * B, (step + 1) * B) of that order, whatever the rank count;
/// - each rank takes one contiguous piece of it; piece sizes differ by at most one
///   (the first B % R ranks take one image more);
/// - the incomplete last batch of an epoch is dropped, never padded with repeats.
public struct EpochPlan: Sendable {
    public let epoch: Int
    public let batchSize: Int
    /// The epoch's training images (dataset indices) in shuffled order.
    public let order: [Int32]

    /// `trainingIndices` are dataset indices (usually `dataset.indices(in: .train)`).
    public init(trainingIndices: [Int32], batchSize: Int, seed: UInt64, epoch: Int) {
        precondition(batchSize > 0, "batch size must be positive")
        self.epoch = epoch
        self.batchSize = batchSize
        let permutation = Philox(seed: seed, stream: .shuffle).permutation(trainingIndices.count, tag: UInt64(epoch))
        order = permutation.map { trainingIndices[Int($0)] }
    }

    public var stepsPerEpoch: Int { order.count / batchSize }

    public func globalBatch(step: Int) -> ArraySlice<Int32> {
        precondition(step >= 0 && step < stepsPerEpoch, "step \(step) outside 0..<\(stepsPerEpoch)")
        return order[(step * batchSize)..<((step + 1) * batchSize)]
    }

    /// The positions in a global batch of `batchSize` images that `rank` of `ranks` handles.
    public static func pieceRange(batchSize: Int, rank: Int, ranks: Int) -> Range<Int> {
        precondition(ranks > 0 && rank >= 0 && rank < ranks, "rank \(rank) outside 0..<\(ranks)")
        let base = batchSize / ranks, extra = batchSize % ranks
        let start = rank * base + min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }

    /// The images of global batch `step` that `rank` handles, and where its piece starts in that batch
    /// (noise and other per-image randomness is keyed by the global position, so it does not
    /// depend on the number of ranks).
    public func piece(step: Int, rank: Int, ranks: Int) -> (indices: ArraySlice<Int32>, offsetInGlobalBatch: Int) {
        let batch = globalBatch(step: step)
        let range = EpochPlan.pieceRange(batchSize: batchSize, rank: rank, ranks: ranks)
        return (batch[(batch.startIndex + range.lowerBound)..<(batch.startIndex + range.upperBound)], range.lowerBound)
    }
}
