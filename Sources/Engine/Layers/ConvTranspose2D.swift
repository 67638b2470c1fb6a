/// Transposed convolution, 4x4 kernel, stride 2, padding 1:  x [N, H, W, Cin] → y [N, 2H, 2W, Cout].
/// It is the adjoint of Conv2D's input gradient, so it runs the same patch machinery backwards:
///   columns [N·H·W, 16·Cout] = x · Kᵀ        K: [4, 4, Cout, Cin] viewed as [16·Cout, Cin]
///   y = col2im(columns) + b
/// Backward, given dy:
///   dcolumns = im2col(dy),  dK = dcolumnsᵀ · x,  db = Σ_pixels dy,  dx = dcolumns · K
public final class ConvTranspose2D {
    let geometry: PatchGeometry
    public let inChannels: Int, outChannels: Int
    public let kernel: Parameter, bias: Parameter
    /// Scratch for x · Kᵀ in forward and im2col(dy) in backward.
    private let columns: FloatBuffer

    public init(name: String, height: Int, width: Int, inChannels: Int, outChannels: Int,
                maxBatch: Int, parameters: ParameterStore) {
        geometry = PatchGeometry(largeHeight: 2 * height, largeWidth: 2 * width, channels: outChannels)
        self.inChannels = inChannels
        self.outChannels = outChannels
        kernel = parameters.kernel("\(name)/kernel", shape: [4, 4, outChannels, inChannels],
                                   fanIn: 16 * outChannels, fanOut: 16 * inChannels)
        bias = parameters.bias("\(name)/bias", count: outChannels)
        columns = FloatBuffer(count: maxBatch * height * width * geometry.patchSize)
    }

    public var outputHeight: Int { geometry.largeHeight }
    public var outputWidth: Int { geometry.largeWidth }
    public var outputSize: Int { geometry.largeImageSize }
    private var inputPixels: Int { geometry.smallHeight * geometry.smallWidth }
    public var forwardFLOPs: Int { 2 * inputPixels * inChannels * geometry.patchSize }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int) {
        let rows = batch * inputPixels
        gemm(transposeB: true, m: rows, n: geometry.patchSize, k: inChannels, x, lda: inChannels,
             kernel.value, ldb: inChannels, beta: 0, columns.pointer, ldc: geometry.patchSize)
        broadcastRows(bias.value, into: y, rows: batch * outputHeight * outputWidth, width: outChannels)
        geometry.col2im(columns.pointer, y, batch: batch)
    }

    /// Writes dK and db, and dx (the input gradient).
    public func backward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         batch: Int) {
        let rows = batch * inputPixels
        geometry.im2col(dy, columns.pointer, batch: batch)
        gemm(transposeA: true, m: geometry.patchSize, n: inChannels, k: rows, columns.pointer,
             lda: geometry.patchSize, x, ldb: inChannels, beta: 0, kernel.gradient, ldc: inChannels)
        sumRows(dy, rows: batch * outputHeight * outputWidth, width: outChannels, into: bias.gradient)
        gemm(m: rows, n: inChannels, k: geometry.patchSize, columns.pointer, lda: geometry.patchSize,
             kernel.value, ldb: inChannels, beta: 0, dx, ldc: inChannels)
    }
}
