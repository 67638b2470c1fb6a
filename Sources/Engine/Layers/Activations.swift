import Kernels

/// Activations work in place on the previous layer's output: their backward needs only that
/// output y, never the input, so no extra buffer is kept. On a CPU with AVX-512 (`avx512`) the
/// passes run in Kernels (elementwise.c), with the same bits as the Swift loops here.

/// y = max(x, 0).  Backward: dx = dy · [y > 0].
public enum ReLU {
    public static func forward(_ y: UnsafeMutablePointer<Float>, count: Int, avx512: Bool = CPU.hasAVX512) {
        if avx512 { return avx512_relu_forward(y, count) }
        let done = forEachVector(count: count) { i in
            let value = load(y + i)
            store(value.replacing(with: 0, where: value .< 0), y + i)
        }
        for i in done..<count { y[i] = max(y[i], 0) }
    }

    public static func backward(output y: UnsafePointer<Float>, _ gradient: UnsafeMutablePointer<Float>, count: Int,
                                avx512: Bool = CPU.hasAVX512) {
        if avx512 { return avx512_relu_backward(y, gradient, count) }
        let done = forEachVector(count: count) { i in
            store(load(gradient + i).replacing(with: 0, where: load(y + i) .<= 0), gradient + i)
        }
        for i in done..<count where y[i] <= 0 { gradient[i] = 0 }
    }
}

/// y = 1 / (1 + exp(−x)).  Backward: dx = dy · y · (1 − y).
public enum Sigmoid {
    public static func forward(_ y: UnsafeMutablePointer<Float>, count: Int, avx512: Bool = CPU.hasAVX512) {
        if avx512 { return avx512_sigmoid_forward(y, count) }
        let done = forEachVector(count: count) { i in store(1 / (1 + exponential(-load(y + i))), y + i) }
        for i in done..<count { y[i] = 1 / (1 + expf(-y[i])) }
    }

    public static func backward(output y: UnsafePointer<Float>, _ gradient: UnsafeMutablePointer<Float>, count: Int) {
        let done = forEachVector(count: count) { i in
            let value = load(y + i)
            store(load(gradient + i) * value * (1 - value), gradient + i)
        }
        for i in done..<count { gradient[i] *= y[i] * (1 - y[i]) }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
