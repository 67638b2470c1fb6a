import Kernels

/// Adam as Keras 3 implements it (β1 0.9, β2 0.999, ε 1e-7), over the whole flat parameter
/// buffer in one loop:
///   m ← β1·m + (1−β1)·g,   v ← β2·v + (1−β2)·g²
///   p ← p − lr·sqrt(1−β2^t)/(1−β1^t) · m / (sqrt(v) + ε)
/// On a CPU with AVX-512 the loop runs in Kernels (elementwise.c), with the same bits.
public final class Adam {
    public var learningRate: Float
    public let beta1: Float, beta2: Float, epsilon: Float
    /// Steps taken so far (t of the bias correction).
    public private(set) var step: Int = 0
    /// First and second moments, same layout as the parameter buffer (saved in checkpoints).
    public let firstMoment: FloatBuffer, secondMoment: FloatBuffer

    public init(parameterCount: Int, learningRate: Float = 0.0005, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-7) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        firstMoment = FloatBuffer(count: parameterCount)
        secondMoment = FloatBuffer(count: parameterCount)
    }

    /// One step over every parameter, split into `parts` ranges run at once (one per thread of the
    /// process, which would otherwise wait for one thread's pass over 32 MB): each value's update
    /// is its own, so the split changes no bits.
    public func update(_ parameters: ParameterStore, parts: Int = 1) {
        step += 1
        let t = Double(step)
        let correction = Float(Double(learningRate) * (1 - pow(Double(beta2), t)).squareRoot() / (1 - pow(Double(beta1), t)))
        let count = parameters.count, part = (count / max(parts, 1) + 15) / 16 * 16
        let (values, gradients, firstMoment, secondMoment) = (parameters.values, parameters.gradients, firstMoment, secondMoment)
        let (b1, b2, eps) = (beta1, beta2, epsilon)
        DispatchQueue.concurrentPerform(iterations: max(parts, 1)) { index in
            let first = min(index * part, count), end = min(first + part, count)
            Adam.update(values.pointer + first, gradients.pointer + first, firstMoment.pointer + first,
                        secondMoment.pointer + first, count: end - first, b1, b2, eps, correction: correction)
        }
    }

    static func update(_ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
                       _ v: UnsafeMutablePointer<Float>, count: Int, _ b1: Float, _ b2: Float, _ eps: Float,
                       correction: Float, avx512: Bool = CPU.hasAVX512) {
        if avx512 { return avx512_adam(p, g, m, v, count, b1, b2, eps, correction) }
        let done = forEachVector(count: count) { i in
            let gradient = load(g + i)
            let first = b1 * load(m + i) + (1 - b1) * gradient
            let second = b2 * load(v + i) + (1 - b2) * gradient * gradient
            store(first, m + i)
            store(second, v + i)
            store(load(p + i) - correction * first / (second.squareRoot() + eps), p + i)
        }
        for i in done..<count {
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
            p[i] -= correction * m[i] / (v[i].squareRoot() + eps)
        }
    }

    /// Restores the step counter when training resumes from a checkpoint.
    public func restore(step: Int) { self.step = step }
}

import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
