import Foundation

/// Slow, obvious Float64 implementations of every layer, written straight from the definitions
/// with direct loops: the yardstick for the engine's GEMM kernels and its backward passes.
enum Reference {
    /// Conv 4x4, stride 2, padding 1. x [N,H,W,Ci], k [4,4,Ci,Co], b [Co] → [N,H/2,W/2,Co].
    static func conv(_ x: [Double], n: Int, h: Int, w: Int, ci: Int, _ k: [Double], _ b: [Double], co: Int) -> [Double] {
        let (oh, ow) = (h / 2, w / 2)
        var y = [Double](repeating: 0, count: n * oh * ow * co)
        for img in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for o in 0..<co {
            var sum = b[o]
            for ky in 0..<4 { for kx in 0..<4 {
                let iy = 2 * oy - 1 + ky, ix = 2 * ox - 1 + kx
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                for i in 0..<ci { sum += x[((img * h + iy) * w + ix) * ci + i] * k[((ky * 4 + kx) * ci + i) * co + o] }
            } }
            y[((img * oh + oy) * ow + ox) * co + o] = sum
        } } } }
        return y
    }

    /// Transposed conv 4x4, stride 2, padding 1: every input pixel scatters its kernel-weighted
    /// values onto the 4x4 output window at (2·iy − 1, 2·ix − 1). x [N,H,W,Ci], k [4,4,Co,Ci].
    static func convTranspose(_ x: [Double], n: Int, h: Int, w: Int, ci: Int, _ k: [Double], _ b: [Double],
                              co: Int) -> [Double] {
        let (oh, ow) = (2 * h, 2 * w)
        var y = [Double](repeating: 0, count: n * oh * ow * co)
        for img in 0..<n { for p in 0..<oh * ow { for o in 0..<co { y[(img * oh * ow + p) * co + o] = b[o] } } }
        for img in 0..<n { for iy in 0..<h { for ix in 0..<w { for ky in 0..<4 { for kx in 0..<4 {
            let oy = 2 * iy - 1 + ky, ox = 2 * ix - 1 + kx
            guard oy >= 0, oy < oh, ox >= 0, ox < ow else { continue }
            for o in 0..<co { for i in 0..<ci {
                y[((img * oh + oy) * ow + ox) * co + o] += x[((img * h + iy) * w + ix) * ci + i] * k[((ky * 4 + kx) * co + o) * ci + i]
            } }
        } } } } }
        return y
    }

    /// x [N,In] · W [In,Out] + b.
    static func dense(_ x: [Double], n: Int, inputs: Int, _ wt: [Double], _ b: [Double], outputs: Int) -> [Double] {
        var y = [Double](repeating: 0, count: n * outputs)
        for r in 0..<n { for o in 0..<outputs {
            var sum = b[o]
            for i in 0..<inputs { sum += x[r * inputs + i] * wt[i * outputs + o] }
            y[r * outputs + o] = sum
        } }
        return y
    }

    static func relu(_ x: [Double]) -> [Double] { x.map { max($0, 0) } }
    static func sigmoid(_ x: [Double]) -> [Double] { x.map { 1 / (1 + exp(-$0)) } }

    /// Central difference dJ/dθ_i for the entries `indices` of `theta`, in Float64.
    static func numericGradient(_ theta: [Double], indices: [Int], step: Double = 1e-5,
                                _ objective: ([Double]) -> Double) -> [Double] {
        indices.map { i in
            var plus = theta, minus = theta
            plus[i] += step
            minus[i] -= step
            return (objective(plus) - objective(minus)) / (2 * step)
        }
    }
}

/// Deterministic test values.
func randomValues(_ count: Int, seed: UInt64, low: Double = -1, high: Double = 1) -> [Double] {
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return low + (high - low) * Double(state >> 11) / Double(1 << 53)
    }
}

/// Indices at which `a` and `b` hold different bits.
func bitDifferences(_ a: [Float], _ b: [Float]) -> [Int] {
    a.indices.filter { a[$0].bitPattern != b[$0].bitPattern }
}

/// Indices to probe: all of a small tensor, an even spread of a large one.
func probeIndices(_ count: Int, limit: Int = 60) -> [Int] {
    count <= limit ? Array(0..<count) : (0..<limit).map { $0 * count / limit }
}

/// max |a − b| relative to the larger of max |b| and `floor`.
func relativeError(_ a: [Double], _ b: [Double], floor: Double = 1e-3) -> Double {
    precondition(a.count == b.count)
    let scale = max(b.map(abs).max() ?? 0, floor)
    return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
}
