import Testing
@testable import VAEEngine

/// col2im, a gather one image row at a time, against the obvious scatter of every patch in order:
/// the same float32 sums in the same order, so the same bits.
@Suite struct PatchTests {
    /// large [N, H, W, C] = start [W, C] on every row, then += each patch's taps, patch after patch.
    static func scatter(_ columns: [Float], onto start: [Float], _ geometry: PatchGeometry, batch: Int) -> [Float] {
        let (height, width, c) = (geometry.largeHeight, geometry.largeWidth, geometry.channels)
        var large = [Float]((0..<batch * height).map { _ in start }.joined())
        var patch = 0
        for n in 0..<batch { for oy in 0..<geometry.smallHeight { for ox in 0..<geometry.smallWidth {
            for ky in 0..<4 { for kx in 0..<4 {
                let (y, x) = (2 * oy - 1 + ky, 2 * ox - 1 + kx)
                guard y >= 0, y < height, x >= 0, x < width else { continue }
                for channel in 0..<c {
                    large[((n * height + y) * width + x) * c + channel] += columns[patch * 16 * c + (ky * 4 + kx) * c + channel]
                }
            } }
            patch += 1
        } } }
        return large
    }

    /// A 6x8 image (3x4 patches: every row and column of patches has both neighbours or a border),
    /// 2 images; 3 and 32 channels take the code compiled for the models' channel counts, 16 its
    /// general form. Every 7th value is −0, so that the signs of zero sums are checked too; the
    /// image starts as a bias along every row (with a −0), as in ConvTranspose2D, or as zeros, as
    /// in Conv2D's backward. On a CPU with AVX-512, 16 and 32 channels run Kernels' avx512_col2im;
    /// the Swift loops are checked too.
    @Test(arguments: [3, 16, 32], [false, CPU.hasAVX512])
    func col2imGivesTheBitsOfAScatter(channels: Int, avx512: Bool) {
        let geometry = PatchGeometry(largeHeight: 6, largeWidth: 8, channels: channels)
        let batch = 2
        let columns = randomValues(batch * 12 * geometry.patchSize, seed: 31).enumerated().map { $0 % 7 == 0 ? -0.0 : Float($1) }
        let bias = randomValues(channels, seed: 32).enumerated().map { $0 == 1 ? -0.0 : Float($1) }
        let biasRow = [Float]((0..<geometry.largeWidth).map { _ in bias }.joined())
        for start in [biasRow, [Float](repeating: 0, count: geometry.largeWidth * channels)] {
            let expected = PatchTests.scatter(columns, onto: start, geometry, batch: batch)
            var actual = [Float]((0..<batch * geometry.largeHeight).map { _ in start }.joined())
            geometry.col2im(columns, &actual, batch: batch, avx512: avx512)
            #expect(actual.elementsEqual(expected) { $0.bitPattern == $1.bitPattern })
        }
    }
}
