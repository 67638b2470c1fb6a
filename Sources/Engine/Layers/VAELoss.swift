#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Loss sums over the images of a batch (or of a rank's piece of it). Sums, not means, so that
/// pieces from several ranks add up exactly before one division by the global image count.
public struct LossSums: Equatable, Sendable {
    public var reconstruction: Double
    public var kl: Double
    public var images: Int

    public init(reconstruction: Double = 0, kl: Double = 0, images: Int = 0) {
        self.reconstruction = reconstruction
        self.kl = kl
        self.images = images
    }

    public static func += (a: inout LossSums, b: LossSums) {
        a.reconstruction += b.reconstruction
        a.kl += b.kl
        a.images += b.images
    }

    /// Per-image means: (loss, reconstruction, KL) with loss = reconstruction + beta · KL.
    public func means(beta: Float) -> (loss: Double, reconstruction: Double, kl: Double) {
        let n = Double(max(images, 1))
        return ((reconstruction + Double(beta) * kl) / n, reconstruction / n, kl / n)
    }
}

/// The VAE loss per image:
///   reconstruction = 0.5 · Σ (x − x̂)²
///   KL             = 0.5 · Σ (exp(logvar) + mu² − logvar − 1)
///   loss           = reconstruction + beta · KL,  averaged over the global batch.
/// Gradients, with scale = 1 / (global batch size):
///   dx̂ = scale · (x̂ − x),   dmu = scale · beta · mu,   dlogvar = scale · beta · (exp(logvar) − 1) / 2
public enum VAELoss {
    public static func reconstruction(x: UnsafePointer<Float>, reconstruction xhat: UnsafePointer<Float>,
                                      gradient: UnsafeMutablePointer<Float>?, scale: Float,
                                      batch: Int, imageSize: Int) -> Double {
        var total = 0.0
        for n in 0..<batch {
            let offset = n * imageSize
            // 16 running sums, not one: a single float sum is a chain of dependent additions, which
            // took 1.3% of a bfloat16 training step.
            var sums = Vector(repeating: 0)
            let done = forEachVector(count: imageSize) { i in
                let difference = load(xhat + offset + i) - load(x + offset + i)
                sums += difference * difference
                if let gradient { store(scale * difference, gradient + offset + i) }
            }
            var sum = sums.sum()
            for i in offset + done..<offset + imageSize {
                let difference = xhat[i] - x[i]
                sum += difference * difference
                gradient?[i] = scale * difference
            }
            total += 0.5 * Double(sum)
        }
        return total
    }

    public static func kl(mu: UnsafePointer<Float>, logvar: UnsafePointer<Float>, dmu: UnsafeMutablePointer<Float>?,
                          dlogvar: UnsafeMutablePointer<Float>?, scale: Float, beta: Float,
                          batch: Int, latent: Int) -> Double {
        var total = 0.0
        let weight = scale * beta
        for n in 0..<batch {
            let offset = n * latent
            var sum: Float = 0
            for i in offset..<offset + latent {
                let variance = expf(logvar[i])
                sum += variance + mu[i] * mu[i] - logvar[i] - 1
                dmu?[i] = weight * mu[i]
                dlogvar?[i] = weight * 0.5 * (variance - 1)
            }
            total += 0.5 * Double(sum)
        }
        return total
    }
}
