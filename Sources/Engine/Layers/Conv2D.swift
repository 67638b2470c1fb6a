/// Convolution, 4x4 kernel, stride 2, padding 1:  x [N, H, W, Cin] → y [N, H/2, W/2, Cout].
///
/// im2col + GEMM, a few images at a time so that the patch matrix stays in cache between
/// being written and being read by the GEMM:
///   columns [n·H/2·W/2, 16·Cin] = im2col(x)
///   y = columns · K + b                    K: [4, 4, Cin, Cout] viewed as [16·Cin, Cout]
/// Backward, given dy (the patches are rebuilt from x rather than kept from forward):
///   dK = Σ columnsᵀ · dy,   db = Σ_rows dy,   dx = col2im(dy · Kᵀ)
/// In bfloat16 with Cin a multiple of 32 or 3 the GEMMs pack the columns straight from x (never
/// written out); with a multiple of 32 backward takes dKᵀ = Σ dyᵀ · columns: the same products in
/// the same order, the same bits.
public final class Conv2D {
    let geometry: PatchGeometry
    public let inChannels: Int, outChannels: Int
    public let kernel: Parameter, bias: Parameter
    /// The number format of its GEMM operands.
    public let precision: Precision
    /// Images per GEMM.
    let chunk: Int
    /// Patches of one chunk; in backward, once dK has used them, dy · Kᵀ of the chunk. One buffer
    /// for both keeps a chunk's working set in the core's cache (the second convolution's patches of
    /// one image take 512 KB).
    private let columns: FloatBuffer
    /// K and Kᵀ as the B of every chunk's GEMM, packed once per pass.
    private let kernelB: PackedB, kernelTransposedB: PackedB
    /// How the GEMMs read the patches from x (see above), and backward's dKᵀ [Cout, 16·Cin] (wide).
    private let patchPacking: PatchGeometry.Packing
    private let kernelGradientTransposed: FloatBuffer

    public init(name: String, height: Int, width: Int, inChannels: Int, outChannels: Int,
                maxBatch: Int, parameters: ParameterStore,
                patchBudget: Int = PatchGeometry.cacheBudget, precision: Precision = .float32) {
        self.precision = precision
        geometry = PatchGeometry(largeHeight: height, largeWidth: width, channels: inChannels)
        self.inChannels = inChannels
        self.outChannels = outChannels
        kernel = parameters.kernel("\(name)/kernel", shape: [4, 4, inChannels, outChannels],
                                   fanIn: 16 * inChannels, fanOut: 16 * outChannels)
        bias = parameters.bias("\(name)/bias", count: outChannels)
        chunk = geometry.imagesPerChunk(maxBatch: maxBatch, budget: patchBudget)
        let rows = chunk * geometry.smallHeight * geometry.smallWidth
        columns = FloatBuffer(count: rows * geometry.patchSize)
        kernelB = PackedB(precision, k: geometry.patchSize, n: outChannels)
        kernelTransposedB = PackedB(precision, transposed: true, k: outChannels, n: geometry.patchSize)
        patchPacking = precision == .bfloat16 ? geometry.bfloat16Packing : .none
        kernelGradientTransposed = FloatBuffer(count: patchPacking == .wide ? geometry.patchSize * outChannels : 0)
    }

    public var outputHeight: Int { geometry.smallHeight }
    public var outputWidth: Int { geometry.smallWidth }
    public var outputSize: Int { outputHeight * outputWidth * outChannels }
    private var outputPixels: Int { outputHeight * outputWidth }
    /// Multiply-adds ×2 of the forward GEMM, per image.
    public var forwardFLOPs: Int { 2 * outputPixels * geometry.patchSize * outChannels }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int) {
        broadcastRows(bias.value, into: y, rows: batch * outputPixels, width: outChannels)
        kernelB.pack(kernel.value, ldb: outChannels)
        for first in stride(from: 0, to: batch, by: chunk) {
            let images = min(chunk, batch - first), rows = images * outputPixels
            let xChunk = x + first * geometry.largeImageSize, yChunk = y + first * outputSize
            if patchPacking != .none {
                bfloat16GEMM(m: rows, patchesOf: xChunk, geometry, kernelB, beta: 1, yChunk, ldc: outChannels)
            } else {
                geometry.im2col(xChunk, columns.pointer, batch: images)
                gemm(m: rows, columns.pointer, lda: geometry.patchSize, kernelB, beta: 1, yChunk, ldc: outChannels)
            }
        }
    }

    /// Writes dK and db; writes dx unless it is nil (the first layer needs no input gradient).
    public func backward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>?,
                         batch: Int) {
        sumRows(dy, rows: batch * outputPixels, width: outChannels, into: bias.gradient)
        if dx != nil { kernelTransposedB.pack(kernel.value, ldb: outChannels) }
        for first in stride(from: 0, to: batch, by: chunk) {
            let images = min(chunk, batch - first), rows = images * outputPixels
            let dyChunk = dy + first * outputSize, xChunk = x + first * geometry.largeImageSize
            let beta: Float = first == 0 ? 0 : 1
            switch patchPacking {
            case .wide:
                bfloat16GEMM(transposeA: true, m: outChannels, k: rows, dyChunk, lda: outChannels, patchesOf: xChunk, geometry,
                             beta: beta, kernelGradientTransposed.pointer, ldc: geometry.patchSize)
            case .rgb:
                bfloat16GEMM(n: outChannels, k: rows, transposedPatchesOf: xChunk, geometry, dyChunk, ldb: outChannels,
                             beta: beta, kernel.gradient, ldc: outChannels)
            case .none:
                geometry.im2col(xChunk, columns.pointer, batch: images)
                gemm(precision, transposeA: true, m: geometry.patchSize, n: outChannels, k: rows, columns.pointer,
                     lda: geometry.patchSize, dyChunk, ldb: outChannels, beta: beta, kernel.gradient, ldc: outChannels)
            }
            guard let dx else { continue }
            gemm(m: rows, dyChunk, lda: outChannels, kernelTransposedB, beta: 0, columns.pointer, ldc: geometry.patchSize)
            let dxChunk = dx + first * geometry.largeImageSize
            dxChunk.update(repeating: 0, count: images * geometry.largeImageSize)
            geometry.col2im(columns.pointer, dxChunk, batch: images)
        }
        if patchPacking == .wide {
            transpose(kernelGradientTransposed.pointer, rows: outChannels, columns: geometry.patchSize, into: kernel.gradient)
        }
    }
}
