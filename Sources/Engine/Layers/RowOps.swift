/// Row-wise helpers for a [rows, width] matrix, shared by the layers that add a bias.

/// y[r, :] = bias for every row: the starting value a GEMM with beta = 1 accumulates onto.
@inline(__always)
func broadcastRows(_ bias: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
    var row = y
    for _ in 0..<rows {
        row.update(from: bias, count: width)
        row += width
    }
}

/// sums[j] = Σ_r m[r, j]: the bias gradient.
@inline(__always)
func sumRows(_ m: UnsafePointer<Float>, rows: Int, width: Int, into sums: UnsafeMutablePointer<Float>) {
    sums.update(repeating: 0, count: width)
    var row = m
    for _ in 0..<rows {
        for j in 0..<width { sums[j] += row[j] }
        row += width
    }
}
