import CBLAS

/// Row-wise helpers for a [rows, width] matrix, shared by the layers that add a bias.

/// y[r, :] = bias for every row: the starting value a GEMM with beta = 1 accumulates onto.
/// A plain loop, not a memcpy per row: rows are as narrow as the 3 channels of an image.
@inline(__always)
func broadcastRows(_ bias: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
    var row = y
    for _ in 0..<rows {
        for j in 0..<width { row[j] = bias[j] }
        row += width
    }
}

/// sums[j] = Σ_r m[r, j]: the bias gradient, as mᵀ · ones. A plain loop runs slowly for narrow
/// rows such as the 3 channels of an image; GEMV handles every width well.
func sumRows(_ m: UnsafePointer<Float>, rows: Int, width: Int, into sums: UnsafeMutablePointer<Float>) {
    var start = 0
    while start < rows {
        let count = min(Ones.count, rows - start)
        cblas_sgemv(CblasRowMajor, CblasTrans, Int32(count), Int32(width), 1, m + start * width, Int32(width),
                    Ones.values, 1, start == 0 ? 0 : 1, sums, 1)
        start += count
    }
}

/// t[j, i] = m[i, j] for m [rows, columns].
func transpose(_ m: UnsafePointer<Float>, rows: Int, columns: Int, into t: UnsafeMutablePointer<Float>) {
    for i in 0..<rows {
        for j in 0..<columns { t[j * rows + i] = m[i * columns + j] }
    }
}

/// A read-only vector of ones for `sumRows`.
enum Ones {
    static let count = 1 << 16
    nonisolated(unsafe) static let values: UnsafeMutablePointer<Float> = {
        let values = UnsafeMutablePointer<Float>.allocate(capacity: count)
        values.initialize(repeating: 1, count: count)
        return values
    }()
}
