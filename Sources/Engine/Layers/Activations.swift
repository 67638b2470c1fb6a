/// Activations work in place on the previous layer's output: their backward needs only that
/// output y, never the input, so no extra buffer is kept. Each value's result depends on that value
/// alone, the same wherever a vector starts, so a layer may apply one row by row as it writes.

/// The activation a layer applies to what it writes, for the layers that do (see ConvTranspose2D's
/// forward and Conv2D's backward): on rows still in cache rather than as a pass over the batch.
public enum Activation: Sendable {
    case identity, relu, sigmoid

    public func forward(_ y: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .identity: break
        case .relu: ReLU.forward(y, count: count)
        case .sigmoid: Sigmoid.forward(y, count: count)
        }
    }

    public func backward(output y: UnsafePointer<Float>, _ gradient: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .identity: break
        case .relu: ReLU.backward(output: y, gradient, count: count)
        case .sigmoid: Sigmoid.backward(output: y, gradient, count: count)
        }
    }
}

/// y = max(x, 0).  Backward: dx = dy · [y > 0].
public enum ReLU {
    public static func forward(_ y: UnsafeMutablePointer<Float>, count: Int) {
        let done = forEachVector(count: count) { i in
            let value = load(y + i)
            store(value.replacing(with: 0, where: value .< 0), y + i)
        }
        for i in done..<count where y[i] < 0 { y[i] = 0 }
    }

    public static func backward(output y: UnsafePointer<Float>, _ gradient: UnsafeMutablePointer<Float>, count: Int) {
        let done = forEachVector(count: count) { i in
            store(load(gradient + i).replacing(with: 0, where: load(y + i) .<= 0), gradient + i)
        }
        for i in done..<count where y[i] <= 0 { gradient[i] = 0 }
    }
}

/// y = 1 / (1 + exp(−x)).  Backward: dx = dy · y · (1 − y).
public enum Sigmoid {
    public static func forward(_ y: UnsafeMutablePointer<Float>, count: Int) {
        let done = forEachVector(count: count) { i in store(1 / (1 + exponential(-load(y + i))), y + i) }
        guard done < count else { return }
        // The last few values through the same vector code, so that their bits do not depend on
        // where the vectors start.
        var tail = Vector(repeating: 0)
        for i in done..<count { tail[i - done] = y[i] }
        tail = 1 / (1 + exponential(-tail))
        for i in done..<count { y[i] = tail[i - done] }
    }

    public static func backward(output y: UnsafePointer<Float>, _ gradient: UnsafeMutablePointer<Float>, count: Int) {
        let done = forEachVector(count: count) { i in
            let value = load(y + i)
            store(load(gradient + i) * value * (1 - value), gradient + i)
        }
        for i in done..<count { gradient[i] = gradient[i] * y[i] * (1 - y[i]) }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
