import VAECluster
import VAEData
import VAEEngine

/// Noise for evaluation batches is keyed far beyond any training step.
let evaluationNoiseStep = 1 << 40

/// The loss sums over `indices`, as training's validation computes them: the images go in batches
/// of `batch`, split across the ranks of `communicator` as training splits its batches, and the
/// noise of the image at position p of batch b is that of step 2^40 + b, position p, under `seed`
/// (so a run's --seed and --batch give its validation numbers, on any number of ranks).
/// `images` holds `model.maxBatch` images.
public func evaluationLoss(model: VAE, dataset: Dataset, indices: [Int32], batch: Int, seed: UInt64,
                           communicator: Communicator, images: FloatBuffer) -> LossSums {
    var local = LossSums()
    var start = 0
    var batchNumber = 0
    model.parameters.withValuesFixed {
        while start < indices.count {
            let size = min(batch, indices.count - start)
            let piece = EpochPlan.pieceRange(batchSize: size, rank: communicator.rank, ranks: communicator.size)
            for first in stride(from: piece.lowerBound, to: piece.upperBound, by: model.maxBatch) {
                let count = min(model.maxBatch, piece.upperBound - first)
                dataset.loadFloats(indices[(start + first)..<(start + first + count)], into: images.pointer)
                model.drawNoise(seed: seed, step: evaluationNoiseStep + batchNumber, firstPosition: first, batch: count)
                local += model.loss(images.pointer, batch: count)
            }
            start += size
            batchNumber += 1
        }
    }
    var sums = [local.reconstruction, local.kl, Double(local.images)]
    communicator.allreduceSum(&sums, count: 3, what: "the validation loss")
    return LossSums(reconstruction: sums[0], kl: sums[1], images: Int(sums[2]))
}
