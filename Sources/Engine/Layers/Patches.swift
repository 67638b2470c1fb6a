/// The patch geometry shared by Conv2D and ConvTranspose2D: a 4x4 kernel with stride 2 and
/// padding 1 links a "large" map [N, H, W, C] to a "small" map [N, H/2, W/2, ·].
/// Small position (oy, ox) sees large rows 2·oy − 1 + ky and columns 2·ox − 1 + kx, ky, kx in 0..<4.
///
/// A patch row holds 16·C values ordered (ky, kx, c), matching the Keras kernel layouts
/// [kh, kw, cin, cout] (conv) and [kh, kw, cout, cin] (transposed conv).
public struct PatchGeometry {
    static let kernel = 4
    let largeHeight: Int, largeWidth: Int, channels: Int

    var smallHeight: Int { largeHeight / 2 }
    var smallWidth: Int { largeWidth / 2 }
    /// Values in one patch row: 16·C.
    var patchSize: Int { 16 * channels }
    var largeImageSize: Int { largeHeight * largeWidth * channels }

    /// Images whose patch matrix fits in `budget` bytes (at least one). With the whole batch's
    /// patches at once (33 MB for the second convolution at batch 64) the GEMM streams them from
    /// memory; `vae bench` measured 480 images/s that way, 620-655 with budgets of 64 KB to 1 MB.
    /// Later, with the other speed-ups, medians of 3-6 interleaved runs: 128 KB 749, 256 KB 745,
    /// 512 KB 723, 1 MB 695 images/s. Several BLAS threads split each GEMM between them, so each
    /// gets a budget's worth of rows:
    /// with 2 threads and one budget per GEMM, thread start-up per small GEMM made training slower
    /// than with 1 thread.
    public static var cacheBudget: Int { (256 << 10) * BLAS.threads }

    func imagesPerChunk(maxBatch: Int, budget: Int) -> Int {
        let bytesPerImage = smallHeight * smallWidth * patchSize * MemoryLayout<Float>.size
        return min(maxBatch, max(1, budget / bytesPerImage))
    }

    /// For kernel row/column offset 2·o − 1 + k, the k range that stays inside 0..<limit.
    @inline(__always)
    private static func validTaps(origin: Int, limit: Int) -> Range<Int> {
        max(0, -origin)..<min(kernel, limit - origin)
    }

    /// Visits every (patch, kernel row) pair of `batch` images in column order. For one kernel row
    /// the four taps kx are adjacent pixels, so each pair is one contiguous run of up to 4·C values:
    /// `inside(run, pixel, taps)` gets the run's offset in the columns, the offset in the large map
    /// of its first tap's pixel (x = 2·ox − 1, possibly left of the image) and the taps inside the
    /// image; `padding(run)` gets the runs whose kernel row falls above or below the image.
    @inline(__always)
    private func forEachRun(batch: Int, inside: (_ run: Int, _ pixel: Int, _ taps: Range<Int>) -> Void,
                            padding: (_ run: Int) -> Void) {
        var run = 0
        for n in 0..<batch {
            for oy in 0..<smallHeight {
                for ox in 0..<smallWidth {
                    let x0 = 2 * ox - 1
                    let taps = PatchGeometry.validTaps(origin: x0, limit: largeWidth)
                    for ky in 0..<4 {
                        let y = 2 * oy - 1 + ky
                        if y >= 0 && y < largeHeight {
                            inside(run, n * largeImageSize + (y * largeWidth + x0) * channels, taps)
                        } else {
                            padding(run)
                        }
                        run += 4 * channels
                    }
                }
            }
        }
    }

    /// columns [N·h·w, 16·C] ← patches of large [N, H, W, C]; taps that fall in the padding are 0.
    func im2col(_ large: UnsafePointer<Float>, _ columns: UnsafeMutablePointer<Float>, batch: Int) {
        let c = channels, length = 4 * c
        forEachRun(batch: batch, inside: { run, pixel, taps in
            let destination = columns + run
            let (valid, end) = (taps.lowerBound * c, taps.upperBound * c)
            for i in 0..<valid { destination[i] = 0 }
            // Offsets are added before forming the pointer: `pixel` alone may lie left of the image.
            copyFloats(large + (pixel + valid), destination + valid, count: end - valid)
            for i in end..<length { destination[i] = 0 }
        }, padding: { run in
            for i in 0..<length { columns[run + i] = 0 }
        })
    }

    /// large [N, H, W, C] += scatter of columns [N·h·w, 16·C]: the adjoint of `im2col`.
    /// Taps in the padding are dropped. `large` must already hold its initial value.
    func col2im(_ columns: UnsafePointer<Float>, _ large: UnsafeMutablePointer<Float>, batch: Int) {
        let c = channels
        forEachRun(batch: batch, inside: { run, pixel, taps in
            let first = taps.lowerBound * c
            accumulate(columns + (run + first), into: large + (pixel + first), count: taps.count * c)
        }, padding: { _ in })
    }
}

/// destination[0..<count] = source[0..<count], four values at a time. Runs here are short (12
/// values for an RGB image), where a memcpy call or a generic loop's set-up costs more than the copy.
@inline(__always)
func copyFloats(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i + 4 <= count {
        UnsafeMutableRawPointer(destination + i).storeBytes(of: UnsafeRawPointer(source + i).loadUnaligned(as: SIMD4<Float>.self),
                                                            as: SIMD4<Float>.self)
        i += 4
    }
    while i < count {
        destination[i] = source[i]
        i += 1
    }
}
