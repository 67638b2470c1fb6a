/// Convolution, 4x4 kernel, stride 2, padding 1:  x [N, H, W, Cin] → y [N, H/2, W/2, Cout].
///
/// One GEMM over the whole batch:
///   columns [N·H/2·W/2, 16·Cin] = im2col(x)
///   y = columns · K + b                    K: [4, 4, Cin, Cout] viewed as [16·Cin, Cout]
/// Backward, given dy:
///   dK = columnsᵀ · dy,   db = Σ_rows dy,   dx = col2im(dy · Kᵀ)
public final class Conv2D {
    let geometry: PatchGeometry
    public let inChannels: Int, outChannels: Int
    public let kernel: Parameter, bias: Parameter
    /// The patches of the last forward input, kept for dK.
    private let columns: FloatBuffer
    /// dy · Kᵀ before it is scattered back onto dx.
    private let columnGradient: FloatBuffer

    public init(name: String, height: Int, width: Int, inChannels: Int, outChannels: Int,
                maxBatch: Int, parameters: ParameterStore) {
        geometry = PatchGeometry(largeHeight: height, largeWidth: width, channels: inChannels)
        self.inChannels = inChannels
        self.outChannels = outChannels
        kernel = parameters.kernel("\(name)/kernel", shape: [4, 4, inChannels, outChannels],
                                   fanIn: 16 * inChannels, fanOut: 16 * outChannels)
        bias = parameters.bias("\(name)/bias", count: outChannels)
        let rows = maxBatch * geometry.smallHeight * geometry.smallWidth
        columns = FloatBuffer(count: rows * geometry.patchSize)
        columnGradient = FloatBuffer(count: rows * geometry.patchSize)
    }

    public var outputHeight: Int { geometry.smallHeight }
    public var outputWidth: Int { geometry.smallWidth }
    public var outputSize: Int { outputHeight * outputWidth * outChannels }
    /// Multiply-adds ×2 of the forward GEMM, per image.
    public var forwardFLOPs: Int { 2 * outputHeight * outputWidth * geometry.patchSize * outChannels }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int) {
        let rows = batch * outputHeight * outputWidth
        geometry.im2col(x, columns.pointer, batch: batch)
        broadcastRows(bias.value, into: y, rows: rows, width: outChannels)
        gemm(m: rows, n: outChannels, k: geometry.patchSize, columns.pointer, lda: geometry.patchSize,
             kernel.value, ldb: outChannels, beta: 1, y, ldc: outChannels)
    }

    /// Writes dK and db; writes dx unless it is nil (the first layer needs no input gradient).
    public func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>?, batch: Int) {
        let rows = batch * outputHeight * outputWidth
        gemm(transposeA: true, m: geometry.patchSize, n: outChannels, k: rows, columns.pointer,
             lda: geometry.patchSize, dy, ldb: outChannels, beta: 0, kernel.gradient, ldc: outChannels)
        sumRows(dy, rows: rows, width: outChannels, into: bias.gradient)
        guard let dx else { return }
        gemm(transposeB: true, m: rows, n: geometry.patchSize, k: outChannels, dy, lda: outChannels,
             kernel.value, ldb: outChannels, beta: 0, columnGradient.pointer, ldc: geometry.patchSize)
        dx.update(repeating: 0, count: batch * geometry.largeImageSize)
        geometry.col2im(columnGradient.pointer, dx, batch: batch)
    }
}
