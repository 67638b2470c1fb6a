import Foundation
import Testing
import VAEEngine

/// Copies Float64 test values into an engine buffer and back.
func load(_ values: [Double], into pointer: UnsafeMutablePointer<Float>) {
    for (i, v) in values.enumerated() { pointer[i] = Float(v) }
}

func read(_ pointer: UnsafePointer<Float>, _ count: Int) -> [Double] {
    (0..<count).map { Double(pointer[$0]) }
}

func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).map { $0 * $1 }.reduce(0, +) }

/// What the two convolution layers have in common, for one test routine.
protocol PatchLayer {
    var kernel: Parameter { get }
    var bias: Parameter { get }
    var outputSize: Int { get }
    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int)
    func backward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, batch: Int)
}

extension Conv2D: PatchLayer {
    func backward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, batch: Int) {
        backward(x, dy, Optional(dx), batch: batch)
    }
}

extension ConvTranspose2D: PatchLayer {}

/// Each layer's backward against central differences of J = Σ y ⊙ w, computed in Float64 on the
/// reference implementation; each forward against the direct-loop reference.
@Suite struct LayerTests {
    /// Three images, processed one per GEMM (a 1-byte patch budget), so that chunking is exercised.
    let n = 3

    /// The precisions this machine runs (bfloat16 needs AVX512_BF16; BFloat16GEMMTests says when it
    /// is skipped).
    static let precisions = Precision.allCases.filter(\.isAvailable)

    /// Relative error allowed against the Float64 reference: float32 as before (forward 1e-5,
    /// gradients 1e-4). In bfloat16 each GEMM operand is rounded to 8 significant bits, a relative
    /// error of at most 2^-9, so each product is off by at most about 2^-8 of itself. The tests'
    /// values are independent and uniform in [-1, 1]: the errors of the K products of a sum add
    /// up like a random walk, about 2^-8·√K·rms(a·b), while the largest of the many outputs,
    /// which `relativeError` divides by, is about 3·√K·rms(a·b); the largest error of a hundred
    /// or so outputs is about 3 times the typical one. That makes about 2^-8 (4e-3) expected at
    /// the worst element (these tests see 1.2e-3 to 3.3e-3); 1e-2 leaves a factor of 2.5 and is far
    /// below the O(1) error of a wrong gradient (a transposed operand, a wrong sign or index).
    /// The GEMM itself is held to float32 rounding in BFloat16GEMMTests. Finite differences run
    /// in Float64 on the exact reference: they see no rounding of their own.
    static func tolerance(_ precision: Precision, float32: Double) -> Double {
        precision == .float32 ? float32 : 1e-2
    }

    /// [3, 6, 6, Cin] → [3, 3, 3, Cout]: odd output sides exercise both padded borders; few and
    /// many channels exercise the short and long copy runs of im2col and col2im; 32 takes, in
    /// bfloat16, the patches straight from x; 3 and 32 take the patch code compiled for the models'
    /// channel counts, 16 its general form.
    @Test(arguments: [(3, 4), (16, 5), (32, 5)], LayerTests.precisions)
    func conv2DForwardAndBackward(channels: (ci: Int, co: Int), precision: Precision) {
        let (ci, co) = channels
        let (h, w) = (6, 6)
        let store = ParameterStore()
        let conv = Conv2D(name: "c", height: h, width: w, inChannels: ci, outChannels: co, maxBatch: n, parameters: store,
                          patchBudget: 1, precision: precision)
        store.allocate()
        checkPatchLayer(conv, inputSize: h * w * ci, seed: 1, precision: precision) { x, k, b in
            Reference.conv(x, n: n, h: h, w: w, ci: ci, k, b, co: co)
        }
    }

    /// [3, 3, 3, Cin] → [3, 6, 6, Cout], with few and many channels (32: in bfloat16, the patches
    /// of dy straight from dy in backward; 3, 32 and 16 output channels: both forms of the patch
    /// code, as above).
    @Test(arguments: [(4, 3), (5, 16), (5, 32)], LayerTests.precisions)
    func convTranspose2DForwardAndBackward(channels: (ci: Int, co: Int), precision: Precision) {
        let (ci, co) = channels
        let (h, w) = (3, 3)
        let store = ParameterStore()
        let deconv = ConvTranspose2D(name: "d", height: h, width: w, inChannels: ci, outChannels: co, maxBatch: n,
                                     parameters: store, patchBudget: 1, precision: precision)
        store.allocate()
        checkPatchLayer(deconv, inputSize: h * w * ci, seed: 5, precision: precision) { x, k, b in
            Reference.convTranspose(x, n: n, h: h, w: w, ci: ci, k, b, co: co)
        }
    }

    /// Forward against `reference`; dx, dK and db against central differences of J = Σ y ⊙ w.
    private func checkPatchLayer(_ layer: some PatchLayer, inputSize: Int, seed: UInt64, precision: Precision,
                                 reference: ([Double], [Double], [Double]) -> [Double]) {
        let x = randomValues(n * inputSize, seed: seed)
        let k = randomValues(layer.kernel.count, seed: seed + 1), b = randomValues(layer.bias.count, seed: seed + 2)
        let ySize = n * layer.outputSize
        let weights = randomValues(ySize, seed: seed + 3)
        let xBuffer = FloatBuffer(count: x.count), y = FloatBuffer(count: ySize)
        let dy = FloatBuffer(count: ySize), dx = FloatBuffer(count: x.count)
        load(x, into: xBuffer.pointer); load(k, into: layer.kernel.value); load(b, into: layer.bias.value)
        load(weights, into: dy.pointer)

        layer.forward(xBuffer.pointer, y.pointer, batch: n)
        let (forwardTolerance, gradientTolerance) = (Self.tolerance(precision, float32: 1e-5),
                                                     Self.tolerance(precision, float32: 1e-4))
        #expect(relativeError(read(y.pointer, ySize), reference(x, k, b)) < forwardTolerance)

        layer.backward(xBuffer.pointer, dy.pointer, dx.pointer, batch: n)
        let ix = probeIndices(x.count), ik = probeIndices(k.count), ib = probeIndices(b.count)
        let numericX = Reference.numericGradient(x, indices: ix) { dot(reference($0, k, b), weights) }
        let numericK = Reference.numericGradient(k, indices: ik) { dot(reference(x, $0, b), weights) }
        let numericB = Reference.numericGradient(b, indices: ib) { dot(reference(x, k, $0), weights) }
        #expect(relativeError(ix.map { Double(dx.pointer[$0]) }, numericX) < gradientTolerance)
        #expect(relativeError(ik.map { Double(layer.kernel.gradient[$0]) }, numericK) < gradientTolerance)
        #expect(relativeError(ib.map { Double(layer.bias.gradient[$0]) }, numericB) < gradientTolerance)
    }

    @Test(arguments: [false, true], LayerTests.precisions)
    func denseForwardAndBackward(accumulate: Bool, precision: Precision) {
        let (rows, inputs, outputs) = (3, 5, 7)
        let store = ParameterStore()
        let dense = Dense(name: "f", inputs: inputs, outputs: outputs, parameters: store, precision: precision)
        store.allocate()
        let x = randomValues(rows * inputs, seed: 9)
        let wt = randomValues(inputs * outputs, seed: 10), b = randomValues(outputs, seed: 11)
        let weights = randomValues(rows * outputs, seed: 12)
        let prior = randomValues(rows * inputs, seed: 13)
        let xBuffer = FloatBuffer(count: x.count), y = FloatBuffer(count: rows * outputs)
        let dy = FloatBuffer(count: rows * outputs), dx = FloatBuffer(count: x.count)
        load(x, into: xBuffer.pointer); load(wt, into: dense.weight.value); load(b, into: dense.bias.value)
        load(weights, into: dy.pointer); load(prior, into: dx.pointer)

        dense.forward(xBuffer.pointer, y.pointer, batch: rows)
        let expected = Reference.dense(x, n: rows, inputs: inputs, wt, b, outputs: outputs)
        let (forwardTolerance, gradientTolerance) = (Self.tolerance(precision, float32: 1e-5),
                                                     Self.tolerance(precision, float32: 1e-4))
        #expect(relativeError(read(y.pointer, rows * outputs), expected) < forwardTolerance)

        dense.backward(xBuffer.pointer, dy.pointer, dx.pointer, accumulate: accumulate, batch: rows)
        func objective(_ x: [Double], _ wt: [Double], _ b: [Double]) -> Double {
            dot(Reference.dense(x, n: rows, inputs: inputs, wt, b, outputs: outputs), weights)
        }
        var numericX = Reference.numericGradient(x, indices: Array(x.indices)) { objective($0, wt, b) }
        if accumulate { numericX = zip(numericX, prior).map { $0 + $1 } }
        let numericW = Reference.numericGradient(wt, indices: Array(wt.indices)) { objective(x, $0, b) }
        let numericB = Reference.numericGradient(b, indices: Array(b.indices)) { objective(x, wt, $0) }
        #expect(relativeError(read(dx.pointer, x.count), numericX) < gradientTolerance)
        #expect(relativeError(read(dense.weight.gradient, wt.count), numericW) < gradientTolerance)
        #expect(relativeError(read(dense.bias.gradient, b.count), numericB) < gradientTolerance)
    }

    @Test func activationsMatchDefinitions() {
        let x = randomValues(64, seed: 14, low: -4, high: 4), upstream = randomValues(64, seed: 15)
        check({ ReLU.forward($0, count: $1) }, { ReLU.backward(output: $0, $1, count: $2) }, Reference.relu, x, upstream)
        check({ Sigmoid.forward($0, count: $1) }, Sigmoid.backward, Reference.sigmoid, x, upstream)
    }

    /// The AVX-512 passes (Kernels' elementwise.c) give the bits of the Swift loops, on values over
    /// the sigmoid's whole range and past its clamps, zeros of both signs, infinities and NaN (in the
    /// vectors and in the scalar tail that the count leaves).
    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512: only the Swift loops run"))
    func avx512PassesGiveTheBitsOfTheSwiftLoops() {
        let specials: [Float] = [0, -0.0, .infinity, -.infinity, .nan, 88, -88, 88.5, -88.5, 1e-40, -1e-40]
        let values = specials + randomValues(4000, seed: 19, low: -100, high: 100).map(Float.init) + specials
        let gradient = randomValues(values.count, seed: 20).map(Float.init)
        func run(_ avx512: Bool) -> (relu: [Float], mask: [Float], sigmoid: [Float]) {
            var relu = values, mask = gradient, sigmoid = values
            ReLU.forward(&relu, count: relu.count, avx512: avx512)
            ReLU.backward(output: relu, &mask, count: mask.count, avx512: avx512)
            Sigmoid.forward(&sigmoid, count: sigmoid.count, avx512: avx512)
            return (relu, mask, sigmoid)
        }
        let (swift, kernel) = (run(false), run(true))
        // A NaN stays NaN, though not always with the same payload bits (the compiler may order a
        // multiplication's operands either way); training stops at any NaN.
        for (name, a, b) in [("ReLU", swift.relu, kernel.relu), ("ReLU backward", swift.mask, kernel.mask),
                             ("sigmoid", swift.sigmoid, kernel.sigmoid)] {
            let different = bitDifferences(a, b).filter { !(a[$0].isNaN && b[$0].isNaN) }
            #expect(different.count == 0, "\(name): the first of \(different.first.map { values[$0] } ?? 0)")
        }
    }

    /// The vectorised sigmoid over its whole range, value by value, saturating cleanly, NaN kept.
    @Test func sigmoidIsAccurateEverywhere() {
        let x = (0..<4001).map { -100 + 0.05 * Double($0) }
        let y = FloatBuffer(count: x.count + 1)
        load(x + [.nan], into: y.pointer)
        Sigmoid.forward(y.pointer, count: x.count + 1)
        for (i, value) in x.enumerated() {
            let expected = 1 / (1 + Foundation.exp(-Double(Float(value))))  // of the Float the layer sees
            #expect(abs(Double(y.pointer[i]) - expected) <= 3e-7 * expected + 1e-37, "sigmoid(\(value)) = \(y.pointer[i])")
        }
        #expect(y.pointer[x.count].isNaN)
    }

    private func check(_ forward: (UnsafeMutablePointer<Float>, Int) -> Void,
                       _ backward: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void,
                       _ reference: ([Double]) -> [Double], _ x: [Double], _ upstream: [Double]) {
        let y = FloatBuffer(count: x.count), g = FloatBuffer(count: x.count)
        load(x, into: y.pointer); load(upstream, into: g.pointer)
        forward(y.pointer, x.count)
        #expect(relativeError(read(y.pointer, x.count), reference(x)) < 1e-6)
        backward(y.pointer, g.pointer, x.count)
        let numeric = Reference.numericGradient(x, indices: Array(x.indices)) { dot(reference($0), upstream) }
        #expect(relativeError(read(g.pointer, x.count), numeric) < 1e-4)
    }

    @Test func reparameterizationAndLossMatchFiniteDifferences() {
        let (rows, latent, beta) = (3, 5, 0.7)
        let mu = randomValues(rows * latent, seed: 16), logvar = randomValues(rows * latent, seed: 17)
        let upstream = randomValues(rows * latent, seed: 18)
        let layer = Reparameterize(latent: latent, maxBatch: rows)
        layer.drawNoise(seed: 3, step: 11, firstPosition: 0, batch: rows)
        let eps = read(layer.noise.pointer, rows * latent)
        let muBuffer = FloatBuffer(count: mu.count), logvarBuffer = FloatBuffer(count: mu.count)
        let z = FloatBuffer(count: mu.count), dz = FloatBuffer(count: mu.count)
        let dmu = FloatBuffer(count: mu.count), dlogvar = FloatBuffer(count: mu.count)
        load(mu, into: muBuffer.pointer); load(logvar, into: logvarBuffer.pointer); load(upstream, into: dz.pointer)

        let scale = 1.0 / Double(rows)
        let kl = VAELoss.kl(mu: muBuffer.pointer, logvar: logvarBuffer.pointer, dmu: dmu.pointer, dlogvar: dlogvar.pointer,
                            scale: Float(scale), beta: Float(beta), batch: rows, latent: latent)
        layer.forward(mu: muBuffer.pointer, logvar: logvarBuffer.pointer, z.pointer, batch: rows)
        layer.backward(dz.pointer, dmu: dmu.pointer, dlogvar: dlogvar.pointer, batch: rows)

        func klSum(_ mu: [Double], _ logvar: [Double]) -> Double {
            zip(mu, logvar).map { (m: Double, v: Double) -> Double in 0.5 * (exp(v) + m * m - v - 1) }.reduce(0, +)
        }
        func latents(_ mu: [Double], _ logvar: [Double]) -> [Double] {
            (0..<mu.count).map { (i: Int) -> Double in mu[i] + exp(0.5 * logvar[i]) * eps[i] }
        }
        func objective(_ mu: [Double], _ logvar: [Double]) -> Double {
            dot(latents(mu, logvar), upstream) + scale * beta * klSum(mu, logvar)
        }
        #expect(abs(kl - klSum(mu, logvar)) < 1e-4 * abs(kl))
        #expect(relativeError(read(z.pointer, mu.count), latents(mu, logvar)) < 1e-6)
        let numericMu = Reference.numericGradient(mu, indices: Array(mu.indices)) { objective($0, logvar) }
        let numericLogvar = Reference.numericGradient(logvar, indices: Array(logvar.indices)) { objective(mu, $0) }
        #expect(relativeError(read(dmu.pointer, mu.count), numericMu) < 1e-4)
        #expect(relativeError(read(dlogvar.pointer, mu.count), numericLogvar) < 1e-4)
    }

    @Test func noiseDependsOnlyOnStepAndGlobalPosition() {
        let whole = Reparameterize(latent: 7, maxBatch: 6), piece = Reparameterize(latent: 7, maxBatch: 2)
        whole.drawNoise(seed: 5, step: 42, firstPosition: 0, batch: 6)
        piece.drawNoise(seed: 5, step: 42, firstPosition: 3, batch: 2)
        #expect(read(piece.noise.pointer, 14) == read(whole.noise.pointer + 21, 14))
    }

    /// 100,000 draws against N(0, 1), each statistic within 5 standard errors: the mean (SE 1/√n),
    /// the variance (SE √(2/n)) and the shares beyond ±1, ±2 and ±3 (SE √(p(1−p)/n)). The tails
    /// catch noise of the right mean and variance but the wrong shape, such as uniform(−√3, √3).
    @Test func noiseIsStandardNormal() {
        let (latent, batch) = (100, 1000)
        let layer = Reparameterize(latent: latent, maxBatch: batch)
        layer.drawNoise(seed: 9, step: 3, firstPosition: 0, batch: batch)
        let values = read(layer.noise.pointer, latent * batch)
        let n = Double(values.count)
        let mean = values.reduce(0, +) / n
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / (n - 1)
        #expect(abs(mean) < 5 / n.squareRoot(), "mean \(mean)")
        #expect(abs(variance - 1) < 5 * (2 / n).squareRoot(), "variance \(variance)")
        for k in [1.0, 2, 3] {
            let expected = erfc(k / 2.squareRoot())  // P(|eps| > k) for a standard normal
            let share = Double(values.filter { abs($0) > k }.count) / n
            #expect(abs(share - expected) < 5 * (expected * (1 - expected) / n).squareRoot(),
                    "share beyond ±\(k): \(share), a standard normal has \(expected)")
        }
    }
}
