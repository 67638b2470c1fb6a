import Kernels

/// What this CPU runs, checked once.
public enum CPU {
    /// AVX-512 (and an OS that saves its registers): the Swift engine is compiled for baseline
    /// x86-64, where SIMD16<Float> becomes 128-bit SSE, so the hottest element-wise passes have
    /// AVX-512 versions in Kernels, with the same bits.
    public static let hasAVX512 = f32_gemm_available()
}

/// Element-wise loops over 16 floats at a time. The optimiser does not reliably vectorise loops
/// with selects (ReLU's mask), so the hot element-wise passes are written on
/// SIMD16<Float> explicitly: `forEachVector` runs the vector body, a scalar loop the last few values.
public typealias Vector = SIMD16<Float>

@inline(__always)
func load(_ pointer: UnsafePointer<Float>) -> Vector {
    UnsafeRawPointer(pointer).loadUnaligned(as: Vector.self)
}

@inline(__always)
func store(_ value: Vector, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: Vector.self)
}

/// Calls `body(i)` for i = 0, 16, 32, ... while a whole vector fits, and returns where it stopped.
@inline(__always)
func forEachVector(count: Int, _ body: (Int) -> Void) -> Int {
    var i = 0
    while i + Vector.scalarCount <= count {
        body(i)
        i += Vector.scalarCount
    }
    return i
}

/// e^x of 16 values, within 2 ulp of expf (Cephes' single-precision polynomial); saturates to
/// 0 and +infinity beyond ±88. glibc's expf, called value by value, cost the sigmoid 3% of a step.
/// Written with concrete vector operations only: generic SIMD helpers (clamping, float-to-integer
/// conversion) are not specialised by the compiler and run scalar.
@inline(__always)
func exponential(_ x: Vector) -> Vector {
    let t = x.replacing(with: 88, where: x .> 88).replacing(with: -88, where: x .< -88)
    // n = round(t / ln 2), from the bits of t / ln 2 + 1.5·2^23, whose low mantissa bits hold n.
    let magic: Float = 12_582_912
    let shifted = t * 1.442_695_04 + magic
    let n = shifted - magic
    let r = t - n * 0.693_359_375 + n * 2.121_944_4e-4  // t − n·ln 2 in two parts, exactly enough
    var p = Vector(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    p = p * r * r + r + 1
    let bits = unsafeBitCast(shifted, to: SIMD16<UInt32>.self) &- magic.bitPattern
    let scale = unsafeBitCast((bits &+ 127) &<< 23, to: Vector.self)  // 2^n
    return p * scale
}

/// True when no value is NaN or ±infinity: their sum is finite exactly then (barring an overflow of
/// finite values, which is as much a failure). 16 running sums keep the loop vectorised.
public func allFinite(_ values: UnsafePointer<Float>, _ count: Int) -> Bool {
    var sums = Vector(repeating: 0)
    let done = forEachVector(count: count) { i in sums += load(values + i) }
    var total = sums.sum()
    for i in done..<count { total += values[i] }
    return total.isFinite
}

/// Calls `body(i)` for i = start, start + 4, ... while four values fit, and returns where it
/// stopped: the tail after `forEachVector` for short runs such as an RGB pixel's 3·4 taps.
@inline(__always)
func forEachQuad(from start: Int, count: Int, _ body: (Int) -> Void) -> Int {
    var i = start
    while i + 4 <= count {
        body(i)
        i += 4
    }
    return i
}

@inline(__always)
func load4(_ pointer: UnsafePointer<Float>) -> SIMD4<Float> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD4<Float>.self)
}

@inline(__always)
func store4(_ value: SIMD4<Float>, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: SIMD4<Float>.self)
}

/// destination[i] += source[i]: 16 values at a time, then 4, then one. Both ends matter: gradient
/// buffers hold a million values, col2im's runs as few as 3 (an RGB pixel), where a scalar tail
/// after the 16-wide loop would do all the work.
@inline(__always)
public func accumulate(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>, count: Int) {
    var i = forEachVector(count: count) { i in store(load(destination + i) + load(source + i), destination + i) }
    i = forEachQuad(from: i, count: count) { i in store4(load4(destination + i) + load4(source + i), destination + i) }
    for i in i..<count { destination[i] += source[i] }
}

/// destination[i] = (destination[i] + first[i]) + second[i], in that order, vectorised as `accumulate`.
@inline(__always)
func accumulate(_ first: UnsafePointer<Float>, then second: UnsafePointer<Float>,
                into destination: UnsafeMutablePointer<Float>, count: Int) {
    var i = forEachVector(count: count) { i in
        store(load(destination + i) + load(first + i) + load(second + i), destination + i)
    }
    i = forEachQuad(from: i, count: count) { i in
        store4(load4(destination + i) + load4(first + i) + load4(second + i), destination + i)
    }
    for i in i..<count { destination[i] = destination[i] + first[i] + second[i] }
}

/// destination[0..<count] = source[0..<count], vectorised as `accumulate`: runs here are short (12
/// values for an RGB image), where a memcpy call or a generic loop's set-up costs more than the copy.
@inline(__always)
func copyFloats(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>, count: Int) {
    var i = forEachVector(count: count) { i in store(load(source + i), destination + i) }
    i = forEachQuad(from: i, count: count) { i in store4(load4(source + i), destination + i) }
    for i in i..<count { destination[i] = source[i] }
}

/// destination[0..<count] = 0, vectorised as `copyFloats` and for the same reason.
@inline(__always)
func zeroFloats(_ destination: UnsafeMutablePointer<Float>, count: Int) {
    var i = forEachVector(count: count) { i in store(Vector(repeating: 0), destination + i) }
    i = forEachQuad(from: i, count: count) { i in store4(SIMD4(repeating: 0), destination + i) }
    for i in i..<count { destination[i] = 0 }
}
