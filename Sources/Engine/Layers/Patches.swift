import Kernels

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

    /// Calls `body(channels)` with the models' channel counts, 3 and 32, as constants: the copies and
    /// sums of their runs then unroll (measured: col2im takes a quarter more time without).
    @inline(__always)
    private func withConstantChannels(_ body: (Int) -> Void) {
        switch channels {
        case 3: body(3)
        case 32: body(32)
        default: body(channels)
        }
    }

    /// columns [N·h·w, 16·C] ← patches of large [N, H, W, C]; taps that fall in the padding are 0.
    /// For one kernel row ky the four taps kx are adjacent pixels, so each (patch, kernel row) pair
    /// is one contiguous run of 4·C values: row y = 2·oy − 1 + ky of the image from column
    /// x = 2·ox − 1, all zeros when y is in the padding; only the first and last patch of a row have
    /// a tap in the padding (left, right).
    func im2col(_ large: UnsafePointer<Float>, _ columns: UnsafeMutablePointer<Float>, batch: Int) {
        withConstantChannels { c in im2col(large, columns, batch: batch, channels: c) }
    }

    @inline(__always)
    private func im2col(_ large: UnsafePointer<Float>, _ columns: UnsafeMutablePointer<Float>, batch: Int,
                        channels c: Int) {
        let length = 4 * c
        var run = columns
        for n in 0..<batch {
            let image = large + n * largeImageSize
            for oy in 0..<smallHeight {
                for ox in 0..<smallWidth {
                    let x0 = 2 * ox - 1
                    let taps = PatchGeometry.validTaps(origin: x0, limit: largeWidth)
                    let (valid, end) = (taps.lowerBound * c, taps.upperBound * c)
                    for ky in 0..<4 {
                        let y = 2 * oy - 1 + ky
                        // Offsets are added before forming the pointer: x0 alone may lie left of the image.
                        let pixel = (y * largeWidth + x0) * c
                        if y < 0 || y >= largeHeight {
                            zeroFloats(run, count: length)
                        } else if end - valid == length {
                            copyFloats(image + pixel, run, count: length)
                        } else {
                            zeroFloats(run, count: valid)
                            copyFloats(image + (pixel + valid), run + valid, count: end - valid)
                            zeroFloats(run + end, count: length - end)
                        }
                        run += length
                    }
                }
            }
        }
    }

    /// large [N, H, W, C] += scatter of columns [N·h·w, 16·C]: the adjoint of `im2col`.
    /// Taps in the padding are dropped. `large` must already hold its initial value.
    ///
    /// Written as a gather, one row of `large` at a time, so that each value is loaded and stored
    /// twice rather than once per patch that sees it. Row y is kernel row ky = y + 1 − 2·oy of
    /// patch rows oy = (y + 1)/2 − 1 and (y + 1)/2; each value still adds its (at most four)
    /// patches in the order of the patch rows, as a scatter over the patches in order would: the
    /// same float32 sums.
    func col2im(_ columns: UnsafePointer<Float>, _ large: UnsafeMutablePointer<Float>, batch: Int,
                avx512: Bool = CPU.hasAVX512) {
        if avx512 && channels % 16 == 0 {
            return avx512_col2im(columns, large, Int32(batch), Int32(largeHeight), Int32(largeWidth), Int32(channels))
        }
        withConstantChannels { c in col2im(columns, large, batch: batch, channels: c) }
    }

    @inline(__always)
    private func col2im(_ columns: UnsafePointer<Float>, _ large: UnsafeMutablePointer<Float>, batch: Int,
                        channels c: Int) {
        let patchRow = smallWidth * patchSize, imageRow = largeWidth * c
        for n in 0..<batch {
            let patches = columns + n * smallHeight * patchRow
            for y in 0..<largeHeight {
                let (oy, ky) = ((y + 1) / 2, (y + 1) % 2)
                let row = large + (n * largeHeight + y) * imageRow
                if oy > 0 { addKernelRow(patches + ((oy - 1) * patchRow + (ky + 2) * 4 * c), into: row, channels: c) }
                if oy < smallHeight { addKernelRow(patches + (oy * patchRow + ky * 4 * c), into: row, channels: c) }
            }
        }
    }

    /// row [W, C] += kernel row `taps` of one row of patches (patch ox at taps + ox·16·C): pixel x
    /// gets tap kx = x + 1 − 2·ox of patches ox = (x + 1)/2 − 1 and (x + 1)/2, in that order. So
    /// pixels 2·m − 1 and 2·m (2·C adjacent values) get taps 2, 3 of patch m − 1, then taps 0, 1 of
    /// patch m; pixel 0 and the last pixel see one patch each.
    @inline(__always)
    private func addKernelRow(_ taps: UnsafePointer<Float>, into row: UnsafeMutablePointer<Float>, channels c: Int) {
        let patch = patchSize
        accumulate(taps + c, into: row, count: c)
        for m in 1..<smallWidth {
            accumulate(taps + ((m - 1) * patch + 2 * c), then: taps + m * patch, into: row + (2 * m - 1) * c, count: 2 * c)
        }
        accumulate(taps + ((smallWidth - 1) * patch + 2 * c), into: row + (largeWidth - 1) * c, count: c)
    }
}
