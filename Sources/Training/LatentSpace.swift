import Foundation
import VAEData
import VAEEngine

/// Work in a model's latent space: encoding images to mu, decoding latents, and the latent
/// vectors of traversals, attribute edits and morphs, each [count, L] row-major.
public enum LatentSpace {
    /// mu and logvar of the images at `indices` of `dataset`, each [indices.count, L].
    public static func encode(_ indices: [Int32], dataset: Dataset, model: VAE) -> (means: [Float], logVariances: [Float]) {
        let latent = model.config.latent
        let images = FloatBuffer(count: model.maxBatch * model.config.imageValues)
        var means = [Float](repeating: 0, count: indices.count * latent)
        var logVariances = means
        for first in stride(from: 0, to: indices.count, by: model.maxBatch) {
            let batch = indices[first..<min(first + model.maxBatch, indices.count)]
            dataset.loadFloats(batch, into: images.pointer)
            model.encode(images.pointer, batch: batch.count)
            for j in 0..<(batch.count * latent) {
                means[first * latent + j] = model.means[j]
                logVariances[first * latent + j] = model.logVariances[j]
            }
        }
        return (means, logVariances)
    }

    /// The images [count, H, W, C] that `latents` [count, L] decode to.
    public static func decode(_ latents: [Float], model: VAE) -> [Float] {
        let latent = model.config.latent, imageValues = model.config.imageValues
        let count = latents.count / latent
        var images = [Float](repeating: 0, count: count * imageValues)
        for first in stride(from: 0, to: count, by: model.maxBatch) {
            let batch = min(model.maxBatch, count - first)
            for j in 0..<(batch * latent) { model.latents[j] = latents[first * latent + j] }
            model.decode(batch: batch)
            for j in 0..<(batch * imageValues) { images[first * imageValues + j] = model.reconstruction[j] }
        }
        return images
    }

    /// `count` draws of z ~ N(0, temperature² I): row i is Philox(seed, sampling) row i, tag 0, as
    /// the sample grids written during training draw them.
    public static func samples(count: Int, latent: Int, temperature: Float, seed: UInt64) -> [Float] {
        var latents = [Float](repeating: 0, count: count * latent)
        let random = Philox(seed: seed, stream: .sampling)
        latents.withUnsafeMutableBufferPointer { out in
            for i in 0..<count {
                random.fillNormal(out.baseAddress! + i * latent, count: latent, tag: 0, row: UInt32(i))
            }
        }
        return latents.map { $0 * temperature }
    }

    /// `steps` values evenly spaced from `range.lower` to `range.upper`, both included.
    public static func evenlySpaced(_ range: (lower: Float, upper: Float), steps: Int) -> [Float] {
        precondition(steps >= 2, "a range needs at least two steps")
        return (0..<steps).map { range.lower + (range.upper - range.lower) * Float($0) / Float(steps - 1) }
    }

    /// One row per dimension of `dimensions`: `mean` with that coordinate set to each of `values`.
    public static func traversal(of mean: [Float], dimensions: [Int], values: [Float]) -> [Float] {
        dimensions.flatMap { dimension in
            values.flatMap { value -> [Float] in
                var z = mean
                z[dimension] = value
                return z
            }
        }
    }

    /// One row per direction: `mean` + strength × direction for each of `strengths`.
    public static func edits(of mean: [Float], directions: [[Float]], strengths: [Float]) -> [Float] {
        directions.flatMap { direction in
            strengths.flatMap { strength in zip(mean, direction).map { $0 + strength * $1 } }
        }
    }

    /// `steps` points from `start` to `end` on the line between them, both included.
    public static func interpolation(from start: [Float], to end: [Float], steps: Int) -> [Float] {
        evenlySpaced((0, 1), steps: steps).flatMap { t in zip(start, end).map { $0 + t * ($1 - $0) } }
    }

    /// Each dimension's KL from N(0, 1), 0.5 · (exp(logvar) + mu² − logvar − 1), averaged over the
    /// images of `means` and `logVariances` ([N, L] each), in Double.
    public static func dimensionKL(means: [Float], logVariances: [Float], latent: Int) -> [Double] {
        var kl = [Double](repeating: 0, count: latent)
        for (j, (mu, logvar)) in zip(means, logVariances).enumerated() {
            kl[j % latent] += 0.5 * (exp(Double(logvar)) + Double(mu) * Double(mu) - Double(logvar) - 1)
        }
        let images = Double(max(means.count / latent, 1))
        return kl.map { $0 / images }
    }

    /// The `count` dimensions with the largest KL, largest first.
    public static func mostInformative(_ kl: [Double], count: Int) -> [Int] {
        Array(kl.indices.sorted { kl[$0] > kl[$1] }.prefix(count))
    }
}
