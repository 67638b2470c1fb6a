/// Transposed convolution, 4x4 kernel, stride 2, padding 1:  x [N, H, W, Cin] → y [N, 2H, 2W, Cout].
/// It is the adjoint of Conv2D's input gradient, so it runs the same patch machinery backwards,
/// a few images at a time so that the patch matrix stays in cache:
///   columns [n·H·W, 16·Cout] = x · Kᵀ        K: [4, 4, Cout, Cin] viewed as [16·Cout, Cin]
///   y = col2im(columns) + b
/// Backward, given dy:
///   dcolumns = im2col(dy),  dK = Σ dcolumnsᵀ · x,  db = Σ_pixels dy,  dx = dcolumns · K
/// In bfloat16 with Cout a multiple of 32 or 3 the GEMMs pack dcolumns straight from dy (never
/// written out); with a multiple of 32 they take dKᵀ = Σ xᵀ · dcolumns: the same products in the
/// same order, the same bits.
public final class ConvTranspose2D {
    let geometry: PatchGeometry
    public let inChannels: Int, outChannels: Int
    public let kernel: Parameter, bias: Parameter
    /// The number format of its GEMM operands.
    public let precision: Precision
    /// Images per GEMM.
    let chunk: Int
    /// x · Kᵀ of one chunk in forward, im2col(dy) of one chunk in backward.
    private let columns: FloatBuffer
    /// Kᵀ and K as the B of every chunk's GEMM, packed once per pass.
    private let kernelTransposedB: PackedB, kernelB: PackedB
    /// How backward reads the patches from dy (see above), and its dKᵀ [Cin, 16·Cout] (wide).
    private let patchPacking: PatchGeometry.Packing
    private let kernelGradientTransposed: FloatBuffer

    public init(name: String, height: Int, width: Int, inChannels: Int, outChannels: Int,
                maxBatch: Int, parameters: ParameterStore,
                patchBudget: Int = PatchGeometry.cacheBudget, precision: Precision = .float32) {
        self.precision = precision
        geometry = PatchGeometry(largeHeight: 2 * height, largeWidth: 2 * width, channels: outChannels)
        self.inChannels = inChannels
        self.outChannels = outChannels
        kernel = parameters.kernel("\(name)/kernel", shape: [4, 4, outChannels, inChannels],
                                   fanIn: 16 * outChannels, fanOut: 16 * inChannels)
        bias = parameters.bias("\(name)/bias", count: outChannels)
        chunk = geometry.imagesPerChunk(maxBatch: maxBatch, budget: patchBudget)
        columns = FloatBuffer(count: chunk * height * width * geometry.patchSize)
        kernelTransposedB = PackedB(precision, transposed: true, k: inChannels, n: geometry.patchSize)
        kernelB = PackedB(precision, k: geometry.patchSize, n: inChannels)
        patchPacking = precision == .bfloat16 ? geometry.bfloat16Packing : .none
        kernelGradientTransposed = FloatBuffer(count: patchPacking == .wide ? geometry.patchSize * inChannels : 0)
    }

    public var outputHeight: Int { geometry.largeHeight }
    public var outputWidth: Int { geometry.largeWidth }
    public var outputSize: Int { geometry.largeImageSize }
    private var inputPixels: Int { geometry.smallHeight * geometry.smallWidth }
    public var inputSize: Int { inputPixels * inChannels }
    public var forwardFLOPs: Int { 2 * inputPixels * inChannels * geometry.patchSize }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int) {
        broadcastRows(bias.value, into: y, rows: batch * outputHeight * outputWidth, width: outChannels)
        kernelTransposedB.pack(kernel.value, ldb: inChannels)
        for first in stride(from: 0, to: batch, by: chunk) {
            let images = min(chunk, batch - first), rows = images * inputPixels
            gemm(m: rows, x + first * inputSize, lda: inChannels, kernelTransposedB, beta: 0, columns.pointer,
                 ldc: geometry.patchSize)
            geometry.col2im(columns.pointer, y + first * outputSize, batch: images)
        }
    }

    /// Writes dK and db, and dx (the input gradient).
    public func backward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         batch: Int) {
        sumRows(dy, rows: batch * outputHeight * outputWidth, width: outChannels, into: bias.gradient)
        kernelB.pack(kernel.value, ldb: inChannels)
        for first in stride(from: 0, to: batch, by: chunk) {
            let images = min(chunk, batch - first), rows = images * inputPixels
            let xChunk = x + first * inputSize, dyChunk = dy + first * outputSize, dxChunk = dx + first * inputSize
            let beta: Float = first == 0 ? 0 : 1
            switch patchPacking {
            case .wide:
                bfloat16GEMM(transposeA: true, m: inChannels, k: rows, xChunk, lda: inChannels, patchesOf: dyChunk, geometry,
                             beta: beta, kernelGradientTransposed.pointer, ldc: geometry.patchSize)
                bfloat16GEMM(m: rows, patchesOf: dyChunk, geometry, kernelB, beta: 0, dxChunk, ldc: inChannels)
            case .rgb:
                bfloat16GEMM(n: inChannels, k: rows, transposedPatchesOf: dyChunk, geometry, xChunk, ldb: inChannels,
                             beta: beta, kernel.gradient, ldc: inChannels)
                bfloat16GEMM(m: rows, patchesOf: dyChunk, geometry, kernelB, beta: 0, dxChunk, ldc: inChannels)
            case .none:
                geometry.im2col(dyChunk, columns.pointer, batch: images)
                gemm(precision, transposeA: true, m: geometry.patchSize, n: inChannels, k: rows, columns.pointer,
                     lda: geometry.patchSize, xChunk, ldb: inChannels, beta: beta, kernel.gradient, ldc: inChannels)
                gemm(m: rows, columns.pointer, lda: geometry.patchSize, kernelB, beta: 0, dxChunk, ldc: inChannels)
            }
        }
        if patchPacking == .wide {
            transpose(kernelGradientTransposed.pointer, rows: inChannels, columns: geometry.patchSize, into: kernel.gradient)
        }
    }
}
