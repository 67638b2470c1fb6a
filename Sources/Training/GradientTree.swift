import Dispatch
import VAEEngine

/// Sums the gradient of a piece of the global batch over a fixed binary tree of its images, so
/// that the sum is bit for bit the same however the global batch is split across ranks and threads.
///
/// Floating-point addition is commutative but not associative: summing the same per-image terms
/// in another grouping changes the last bits, and a few hundred steps of ReLUs and Adam amplify
/// such bits into visibly different parameters. So the grouping is fixed by the images and the
/// run's leaf size alone:
///   - a range of at most `leaf` images is one leaf: one forward and backward pass;
///   - a larger range splits into halves, the first one image larger when the count is odd
///     (as `EpochPlan.pieceRange` splits a batch between 2 ranks), and its gradient is
///     left half + right half.
/// When the rank count is a power of two that divides the global batch into pieces of at least a
/// leaf, every rank's piece is a node of the global batch's tree, and the allreduce adds the nodes
/// (one addition per value for 2 ranks), so 1 process and 2 ranks compute the same bits.
///
/// Threads split the tree the same way: the two halves of the piece run at once on two halves of
/// the threads, each thread on its own model replica (one OpenBLAS thread each), and are added as
/// above, so the thread count does not change the result either. Another leaf size is another
/// tree: a different summation order, equally valid, and different last bits.
final class GradientTree {
    /// The largest leaf. Larger leaves run faster per image (the dense layers' 2 MB weight matrices
    /// are read once per leaf: 10.5 ms per step of 64 with leaves of 16, 7.3 with 32, 5.8 with 64,
    /// timed in a scratch build of `vae bench`); smaller ones give more workers a leaf each and make
    /// more splits exact. 32 rather than 64 keeps one process and 2 ranks on the same leaf, and so
    /// the same bits, by default at the reference batch of 64, as they were before the leaf could
    /// change; 64 would gain at most 1.5 ms of a one-thread step of about 85 ms.
    static let largestLeaf = 32

    /// The number of leaves of a range of `count` images: one if it fits a leaf, else those of its halves.
    static func leaves(_ count: Int, leaf: Int) -> Int {
        count <= leaf ? 1 : leaves((count + 1) / 2, leaf: leaf) + leaves(count / 2, leaf: leaf)
    }

    /// Images of one leaf at most: one forward and backward pass.
    let leafImages: Int

    /// One per thread: the model it runs leaves on, and its right-hand partial sums, one buffer per
    /// tree level below the point where the threads part.
    private struct Worker {
        let model: VAE
        let partials: [FloatBuffer]
    }

    private let workers: [Worker]
    /// Values summed: the gradients and the statistics at the gradient buffer's tail.
    private let values: Int

    /// `models[0]` receives the sum in its gradient buffer; the others are its replicas, one per
    /// extra thread. Each model runs up to `leaf` images at once.
    init(models: [VAE], values: Int, largestPiece: Int, leaf: Int) {
        precondition(!models.isEmpty && models.allSatisfy { values <= $0.parameters.gradients.count },
                     "each gradient buffer holds the summed values")
        precondition(models.allSatisfy { $0.maxBatch >= min(leaf, largestPiece) }, "each model holds a leaf")
        self.values = values
        self.leafImages = leaf
        // A worker's subtree after the threads have parted, and the levels below it.
        var size = largestPiece, teams = models.count
        while teams > 1 {
            size = (size + 1) / 2
            teams /= 2
        }
        var levels = 0
        while size > leafImages {
            size = (size + 1) / 2
            levels += 1
        }
        workers = models.map { model in Worker(model: model, partials: (0..<levels).map { _ in FloatBuffer(count: values) }) }
    }

    /// Writes the sums of images `range` into the first model's gradient buffer. `leaf(images,
    /// model)` runs forward and backward on one leaf's images with `model`, writing (not adding)
    /// its `values` at `model.parameters.gradientTarget`.
    /// The parameter values are fixed meanwhile, so each model packs its kernels once for all its leaves.
    func sum(_ range: Range<Int>, leaf: (Range<Int>, VAE) -> Void) {
        ParameterStore.withValuesFixed(workers.map(\.model.parameters)) {
            sum(range, into: workers[0].model.parameters.gradients.pointer, team: workers.indices, leaf: leaf)
        }
        for worker in workers { worker.model.parameters.gradientTarget = worker.model.parameters.gradients.pointer }
    }

    /// The workers in `team` share `range`: while there are two or more, each half goes to half the
    /// team, the second half into the gradient buffer of that half's first model.
    private func sum(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>, team: Range<Int>,
                     leaf: (Range<Int>, VAE) -> Void) {
        guard team.count > 1 && range.count > leafImages else {
            sum(range, into: destination, worker: workers[team.lowerBound], level: 0, leaf: leaf)
            return
        }
        let (left, right) = GradientTree.halves(range)
        let split = team.lowerBound + (team.count + 1) / 2
        let rightDestination = workers[split].model.parameters.gradients.pointer
        withoutActuallyEscaping(leaf) { leaf in
            let parts = TwoParts {
                self.sum(left, into: destination, team: team.lowerBound..<split, leaf: leaf)
            } second: {
                self.sum(right, into: rightDestination, team: split..<team.upperBound, leaf: leaf)
            }
            DispatchQueue.concurrentPerform(iterations: 2) { parts.run($0) }
        }
        accumulate(rightDestination, into: destination, count: values)
    }

    /// One worker alone: the tree below `range`, the right halves in its partial sums.
    private func sum(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>, worker: Worker, level: Int,
                     leaf: (Range<Int>, VAE) -> Void) {
        if range.count <= leafImages {
            worker.model.parameters.gradientTarget = destination
            leaf(range, worker.model)
            return
        }
        let (left, right) = GradientTree.halves(range)
        sum(left, into: destination, worker: worker, level: level + 1, leaf: leaf)
        sum(right, into: worker.partials[level].pointer, worker: worker, level: level + 1, leaf: leaf)
        accumulate(worker.partials[level].pointer, into: destination, count: values)
    }

    private static func halves(_ range: Range<Int>) -> (Range<Int>, Range<Int>) {
        let middle = range.lowerBound + (range.count + 1) / 2
        return (range.lowerBound..<middle, middle..<range.upperBound)
    }
}

/// Two pieces of work for two threads. They touch disjoint buffers (their own models, partial
/// sums and destinations) and read the shared parameter values, which nothing writes meanwhile.
private struct TwoParts: @unchecked Sendable {
    let first: () -> Void, second: () -> Void

    init(_ first: @escaping () -> Void, second: @escaping () -> Void) {
        self.first = first
        self.second = second
    }

    func run(_ part: Int) { part == 0 ? first() : second() }
}
