/// One trainable tensor: a named view into the model's single parameter buffer, with its
/// gradient at the same offset in the single gradient buffer.
public final class Parameter {
    public let name: String
    /// Keras layout: conv kernels [kh, kw, cin, cout], transposed-conv kernels [kh, kw, cout, cin],
    /// dense kernels [in, out], biases [out].
    public let shape: [Int]
    public let count: Int
    public let offset: Int
    /// Glorot-uniform limit sqrt(6 / (fanIn + fanOut)), or nil for zero-initialised biases.
    let glorotLimit: Float?
    unowned let store: ParameterStore

    init(name: String, shape: [Int], offset: Int, glorotLimit: Float?, store: ParameterStore) {
        self.name = name
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.offset = offset
        self.glorotLimit = glorotLimit
        self.store = store
    }

    public var value: UnsafeMutablePointer<Float> { store.values.pointer + offset }
    public var gradient: UnsafeMutablePointer<Float> { store.gradientTarget + offset }
}

/// All parameters of a model in one contiguous Float32 buffer, all gradients in another, so that
/// one collective call can average every gradient and one loop can update every parameter.
/// Layers declare their parameters while the model is built; `allocate` then lays out the buffers.
public final class ParameterStore {
    public private(set) var parameters: [Parameter] = []
    public private(set) var count = 0
    public private(set) var values = FloatBuffer(count: 0)
    public private(set) var gradients = FloatBuffer(count: 0)
    /// Where backward writes the gradients: the gradient buffer, unless a caller that sums partial
    /// gradients (the trainer's GradientTree) points it at a buffer of its own with the same layout.
    public var gradientTarget: UnsafeMutablePointer<Float>

    /// While the values are fixed (inside `withValuesFixed`), a number no earlier scope of this
    /// store had; nil outside any scope.
    public private(set) var fixedValuesScope: Int?
    private var scopesEntered = 0

    public init() {
        gradientTarget = gradients.pointer
    }

    /// Runs `body`, in which nothing may write the values of `stores` (a model and its replicas,
    /// which share them). Layers then convert and pack their kernels for the GEMM once per scope
    /// instead of once per pass (PackedB.pack(_:ldb:fixedIn:)): a training step packs the dense
    /// weights once, not once per leaf of its gradient tree. Outside any scope they pack on every
    /// pass, so values written between passes (finite differences, a checkpoint loaded, Adam's
    /// update) are always read afresh.
    public static func withValuesFixed<Result>(_ stores: [ParameterStore], _ body: () throws -> Result) rethrows -> Result {
        for store in stores {
            precondition(store.fixedValuesScope == nil, "scopes of fixed values do not nest")
            store.scopesEntered += 1
            store.fixedValuesScope = store.scopesEntered
        }
        defer { for store in stores { store.fixedValuesScope = nil } }
        return try body()
    }

    public func withValuesFixed<Result>(_ body: () throws -> Result) rethrows -> Result {
        try ParameterStore.withValuesFixed([self], body)
    }

    /// A kernel initialised Glorot-uniform with the given fans (Keras' default).
    func kernel(_ name: String, shape: [Int], fanIn: Int, fanOut: Int) -> Parameter {
        declare(name, shape: shape, glorotLimit: (6 / Float(fanIn + fanOut)).squareRoot())
    }

    /// A bias initialised to zero (Keras' default).
    func bias(_ name: String, count: Int) -> Parameter {
        declare(name, shape: [count], glorotLimit: nil)
    }

    private func declare(_ name: String, shape: [Int], glorotLimit: Float?) -> Parameter {
        precondition(values.count == 0, "parameters are declared before the store is allocated")
        let parameter = Parameter(name: name, shape: shape, offset: count, glorotLimit: glorotLimit, store: self)
        parameters.append(parameter)
        count += parameter.count
        return parameter
    }

    /// Lays out the value and gradient buffers once every parameter is declared. The gradient
    /// buffer has `gradientTail` spare values after the gradients, so that statistics (loss sums)
    /// can ride along in the same collective call. A replica of a model (for a second thread) reads
    /// the values of `primary`, which must have the same layout, and has gradients of its own.
    public func allocate(gradientTail: Int = 4, sharingValuesWith primary: ParameterStore? = nil) {
        if let primary {
            precondition(primary.parameters.map(\.shape) == parameters.map(\.shape), "a replica has the primary's layout")
            values = primary.values
        } else {
            values = FloatBuffer(count: count)
        }
        gradients = FloatBuffer(count: count + gradientTail)
        gradientTarget = gradients.pointer
    }

    /// Keras-default initialisation, reproducible from `seed`: parameter i draws its values
    /// from Philox stream `initialization`, tag i.
    public func initialize(seed: UInt64) {
        let random = Philox(seed: seed, stream: .initialization)
        for (index, parameter) in parameters.enumerated() {
            if let limit = parameter.glorotLimit {
                random.fillUniform(parameter.value, count: parameter.count, low: -limit, high: limit,
                                   tag: UInt64(index), row: 0)
            } else {
                parameter.value.update(repeating: 0, count: parameter.count)
            }
        }
    }

    public func parameter(named name: String) -> Parameter? {
        parameters.first { $0.name == name }
    }
}
