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

/// True when no value is NaN or ±infinity: their sum is finite exactly then (barring an overflow of
/// finite values, which is as much a failure). 16 running sums keep the loop vectorised.
public func allFinite(_ values: UnsafePointer<Float>, _ count: Int) -> Bool {
    var sums = Vector(repeating: 0)
    let done = forEachVector(count: count) { i in sums += load(values + i) }
    var total = sums.sum()
    for i in done..<count { total += values[i] }
    return total.isFinite
}

/// destination[i] += source[i].
public func accumulate(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>, count: Int) {
    let done = forEachVector(count: count) { i in store(load(destination + i) + load(source + i), destination + i) }
    for i in done..<count { destination[i] += source[i] }
}
