/// Fully connected:  x [N, in] → y [N, out] = x · W + b,   W [in, out].
/// Backward, given dy:
///   dW = xᵀ · dy,   db = Σ_rows dy,   dx = dy · Wᵀ  (or dx += dy · Wᵀ when two layers read one x)
public final class Dense {
    public let inputs: Int, outputs: Int
    public let weight: Parameter, bias: Parameter
    /// The number format of its GEMM operands.
    public let precision: Precision
    /// W [in, out] as the forward's B, and Wᵀ as the B of dx = dy · Wᵀ: packed once per scope of
    /// fixed parameter values (once per training step rather than once per leaf).
    private let weightB: PackedB, weightTransposedB: PackedB

    public init(name: String, inputs: Int, outputs: Int, parameters: ParameterStore, precision: Precision = .float32) {
        self.precision = precision
        self.inputs = inputs
        self.outputs = outputs
        weight = parameters.kernel("\(name)/kernel", shape: [inputs, outputs], fanIn: inputs, fanOut: outputs)
        bias = parameters.bias("\(name)/bias", count: outputs)
        weightB = PackedB(precision, k: inputs, n: outputs)
        weightTransposedB = PackedB(precision, transposed: true, k: outputs, n: inputs)
    }

    public var forwardFLOPs: Int { 2 * inputs * outputs }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int) {
        broadcastRows(bias.value, into: y, rows: batch, width: outputs)
        weightB.pack(weight.value, ldb: outputs, fixedIn: weight.store.fixedValuesScope)
        gemm(m: batch, x, lda: inputs, weightB, beta: 1, y, ldc: outputs)
    }

    public func backward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>?,
                         accumulate: Bool = false, batch: Int) {
        gemm(precision, transposeA: true, m: inputs, n: outputs, k: batch, x, lda: inputs, dy, ldb: outputs,
             beta: 0, weight.gradient, ldc: outputs)
        sumRows(dy, rows: batch, width: outputs, into: bias.gradient)
        guard let dx else { return }
        weightTransposedB.pack(weight.value, ldb: outputs, fixedIn: weight.store.fixedValuesScope)
        gemm(m: batch, dy, lda: outputs, weightTransposedB, beta: accumulate ? 1 : 0, dx, ldc: inputs)
    }
}
