#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The reparameterisation trick:  z = mu + exp(logvar / 2) · eps,  all [N, L],  eps ~ N(0, 1).
/// Backward, given dz:  dmu = dz,  dlogvar = dz · eps · exp(logvar / 2) / 2.
///
/// eps for the image at position p of the global batch of step s is Philox(seed, noise) row p,
/// tag s: the same on whichever rank holds the image, however the batch is split.
public final class Reparameterize {
    public let latent: Int
    /// eps [maxBatch, L]; callers may also fill it themselves (tests, sampling).
    public let noise: FloatBuffer
    /// exp(logvar / 2), kept for the backward pass.
    private let standardDeviation: FloatBuffer

    public init(latent: Int, maxBatch: Int) {
        self.latent = latent
        noise = FloatBuffer(count: maxBatch * latent)
        standardDeviation = FloatBuffer(count: maxBatch * latent)
    }

    public func drawNoise(seed: UInt64, step: Int, firstPosition: Int, batch: Int) {
        let random = Philox(seed: seed, stream: .noise)
        for i in 0..<batch {
            random.fillNormal(noise.pointer + i * latent, count: latent, tag: UInt64(step), row: UInt32(firstPosition + i))
        }
    }

    public func forward(mu: UnsafePointer<Float>, logvar: UnsafePointer<Float>, _ z: UnsafeMutablePointer<Float>,
                        batch: Int) {
        let eps = noise.pointer, std = standardDeviation.pointer
        for i in 0..<batch * latent {
            std[i] = expf(0.5 * logvar[i])
            z[i] = mu[i] + std[i] * eps[i]
        }
    }

    /// Adds to dmu and dlogvar, which already hold the KL term's gradient.
    public func backward(_ dz: UnsafePointer<Float>, dmu: UnsafeMutablePointer<Float>,
                         dlogvar: UnsafeMutablePointer<Float>, batch: Int) {
        let eps = noise.pointer, std = standardDeviation.pointer
        for i in 0..<batch * latent {
            dmu[i] += dz[i]
            dlogvar[i] += dz[i] * eps[i] * std[i] * 0.5
        }
    }
}
