import VAEEngine

/// Sums the gradient of a piece of the global batch over a fixed binary tree of its images, so
/// that the sum is bit for bit the same however the global batch is split across ranks.
///
/// Floating-point addition is commutative but not associative: summing the same per-image terms
/// in another grouping changes the last bits, and a few hundred steps of ReLUs and Adam amplify
/// such bits into visibly different parameters. So the grouping is fixed by the images alone:
///   - a range of at most `leafImages` images is one leaf: one forward and backward pass;
///   - a larger range splits into halves, the first one image larger when the count is odd
///     (as `EpochPlan.pieceRange` splits a batch between 2 ranks), and its gradient is
///     left half + right half.
/// When the rank count is a power of two that divides the global batch into pieces of at least a
/// leaf, every rank's piece is a node of the global batch's tree, and the allreduce adds the nodes
/// (one addition per value for 2 ranks), so 1 process and 2 ranks compute the same bits.
final class GradientTree {
    /// The largest leaf. Larger leaves run the dense layers faster (their 2 MB weight matrices are
    /// read once per leaf: 10.5 ms per step of 64 with leaves of 16, 7.3 with 32, 5.8 with 64, timed
    /// in a scratch build of `vae bench`); smaller ones make more splits exact. 32 makes 2 ranks
    /// exact at the default batch of 64, and 4 ranks from batch 128.
    static let leafImages = 32

    private let parameters: ParameterStore
    /// Values summed: the gradients and the statistics at the gradient buffer's tail.
    private let values: Int
    /// The right-hand partial sums, one buffer per tree level.
    private let partials: [FloatBuffer]

    init(parameters: ParameterStore, values: Int, largestPiece: Int) {
        precondition(values <= parameters.gradients.count, "the gradient buffer holds \(parameters.gradients.count) values")
        self.parameters = parameters
        self.values = values
        var levels = 0, size = largestPiece
        while size > GradientTree.leafImages {
            size = (size + 1) / 2
            levels += 1
        }
        partials = (0..<levels).map { _ in FloatBuffer(count: values) }
    }

    /// Writes the sums of images `range` into the store's gradient buffer. `leaf` runs forward
    /// and backward on one leaf's images, writing (not adding) its `values` at `gradientTarget`.
    func sum(_ range: Range<Int>, leaf: (Range<Int>) -> Void) {
        sum(range, into: parameters.gradients.pointer, level: 0, leaf: leaf)
        parameters.gradientTarget = parameters.gradients.pointer
    }

    private func sum(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>, level: Int,
                     leaf: (Range<Int>) -> Void) {
        if range.count <= GradientTree.leafImages {
            parameters.gradientTarget = destination
            leaf(range)
            return
        }
        let middle = range.lowerBound + (range.count + 1) / 2
        sum(range.lowerBound..<middle, into: destination, level: level + 1, leaf: leaf)
        sum(middle..<range.upperBound, into: partials[level].pointer, level: level + 1, leaf: leaf)
        accumulate(partials[level].pointer, into: destination, count: values)
    }
}
