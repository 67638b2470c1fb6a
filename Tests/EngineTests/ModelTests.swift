import Foundation
import Testing
@testable import VAEEngine

/// The whole VAE in Float64, composed from the reference layers, parameters looked up by name.
struct ReferenceVAE {
    let config: ModelConfig

    /// Mean over the batch of reconstruction + beta · KL, for images x and noise eps.
    func loss(_ parameters: [String: [Double]], x: [Double], eps: [Double], batch: Int) -> Double {
        var h = x, size = config.imageSize, channels = config.imageChannels
        for (i, out) in config.encoderChannels.enumerated() {
            h = Reference.relu(Reference.conv(h, n: batch, h: size, w: size, ci: channels,
                                              parameters["enc_conv\(i + 1)/kernel"]!, parameters["enc_conv\(i + 1)/bias"]!, co: out))
            size /= 2
            channels = out
        }
        let features = config.bottleneckValues, latent = config.latent
        let mu = Reference.dense(h, n: batch, inputs: features, parameters["enc_mu/kernel"]!, parameters["enc_mu/bias"]!,
                                 outputs: latent)
        let logvar = Reference.dense(h, n: batch, inputs: features, parameters["enc_logvar/kernel"]!,
                                     parameters["enc_logvar/bias"]!, outputs: latent)
        var d = (0..<mu.count).map { (i: Int) -> Double in mu[i] + exp(0.5 * logvar[i]) * eps[i] }
        let widths = [latent] + config.decoderWidths + [features]
        for j in 1..<widths.count {
            d = Reference.relu(Reference.dense(d, n: batch, inputs: widths[j - 1], parameters["dec_fc\(j)/kernel"]!,
                                               parameters["dec_fc\(j)/bias"]!, outputs: widths[j]))
        }
        for (i, out) in config.decoderChannels.enumerated() {
            d = Reference.convTranspose(d, n: batch, h: size, w: size, ci: channels, parameters["dec_deconv\(i + 1)/kernel"]!,
                                        parameters["dec_deconv\(i + 1)/bias"]!, co: out)
            d = i == config.decoderChannels.count - 1 ? Reference.sigmoid(d) : Reference.relu(d)
            size *= 2
            channels = out
        }
        let reconstruction = 0.5 * zip(x, d).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
        let kl = 0.5 * zip(mu, logvar).map { (m: Double, v: Double) -> Double in exp(v) + m * m - v - 1 }.reduce(0, +)
        return (reconstruction + Double(config.beta) * kl) / Double(batch)
    }
}

@Suite struct ModelTests {
    /// A small VAE with every kind of layer: 8x8x3 images, two convolutions, latent 3.
    let config = ModelConfig(imageSize: 8, imageChannels: 3, encoderChannels: [4, 5], latent: 3, decoderWidths: [6],
                             beta: 0.7)

    /// A CPU without AVX512_BF16 refuses bfloat16 with one line that says why, and runs float32.
    @Test func bfloat16IsRefusedWithoutItsInstructions() throws {
        #expect(throws: ConfigError.self) { try Precision.bfloat16.validate(bfloat16Instructions: false) }
        do {
            try Precision.bfloat16.validate(bfloat16Instructions: false)
        } catch {
            let message = "\(error)"
            #expect(message.contains("AVX512_BF16") && !message.contains("\n"), "\(message)")
        }
        try Precision.bfloat16.validate(bfloat16Instructions: true)
        try Precision.float32.validate(bfloat16Instructions: false)
    }

    @Test func everyParameterGradientMatchesFiniteDifferences() throws {
        let batch = 3
        let model = try VAE(config: config, maxBatch: batch)
        model.parameters.initialize(seed: 11)
        // Larger biases than the zero init, so that no ReLU sits on its kink.
        for parameter in model.parameters.parameters where parameter.name.hasSuffix("bias") {
            load(randomValues(parameter.count, seed: UInt64(parameter.offset), low: -0.3, high: 0.3), into: parameter.value)
        }
        let x = randomValues(batch * config.imageValues, seed: 21, low: 0, high: 1)
        let images = FloatBuffer(count: x.count)
        load(x, into: images.pointer)
        model.drawNoise(seed: 4, step: 9, firstPosition: 0, batch: batch)
        let eps = read(model.reparameterize.noise.pointer, batch * config.latent)

        let sums = model.loss(images.pointer, batch: batch, gradientScale: 1 / Float(batch))
        var values: [String: [Double]] = [:]
        for parameter in model.parameters.parameters { values[parameter.name] = read(parameter.value, parameter.count) }
        let reference = ReferenceVAE(config: config)
        let referenceLoss = reference.loss(values, x: x, eps: eps, batch: batch)
        #expect(abs(sums.means(beta: config.beta).loss - referenceLoss) < 1e-5 * referenceLoss)

        #expect(model.parameters.parameters.count == 2 * (config.encoderChannels.count + 2 + config.decoderWidths.count + 1
                                                          + config.decoderChannels.count))
        for parameter in model.parameters.parameters {
            let probes = probeIndices(parameter.count, limit: 24)
            let numeric = Reference.numericGradient(values[parameter.name]!, indices: probes) { theta in
                var perturbed = values
                perturbed[parameter.name] = theta
                return reference.loss(perturbed, x: x, eps: eps, batch: batch)
            }
            let analytic = probes.map { Double(parameter.gradient[$0]) }
            let error = relativeError(analytic, numeric, floor: 1e-4)
            #expect(error < 2e-3, "\(parameter.name): relative error \(error)")
        }
    }

    /// Inside a scope of fixed values the dense layers pack their weights (W and Wᵀ) once for every
    /// pass; a change of the weights outside the scope is always seen: after it, the loss and the
    /// gradients are, bit for bit, a fresh model's with the changed values, twice in a new scope
    /// and then outside any scope. (In float32 nothing is converted, so it is bfloat16 that would
    /// see stale panels.)
    @Test(arguments: Precision.allCases.filter(\.isAvailable))
    func weightsChangedOutsideAScopeAreNotReadFromOldPacks(precision: Precision) throws {
        let batch = 3
        let images = FloatBuffer(count: batch * config.imageValues)
        load(randomValues(images.count, seed: 21, low: 0, high: 1), into: images.pointer)
        typealias Pass = (loss: LossSums, gradients: [Float])
        func pass(_ model: VAE) -> Pass {
            model.drawNoise(seed: 4, step: 9, firstPosition: 0, batch: batch)
            let loss = model.loss(images.pointer, batch: batch, gradientScale: 1)
            return (loss, Array(model.parameters.gradients.buffer.prefix(model.parameters.count)))
        }
        func same(_ a: Pass, _ b: Pass) -> Bool {
            a.loss == b.loss && a.gradients.elementsEqual(b.gradients) { $0.bitPattern == $1.bitPattern }
        }
        let model = try VAE(config: config, maxBatch: batch, precision: precision)
        model.parameters.initialize(seed: 11)
        /// Scales the dense kernels, and returns a pass of a fresh model with the new values.
        func changeDenseWeights() throws -> Pass {
            for parameter in model.parameters.parameters where parameter.name.hasSuffix("kernel") && parameter.shape.count == 2 {
                for i in 0..<parameter.count { parameter.value[i] *= 1.5 }
            }
            let fresh = try VAE(config: config, maxBatch: batch, precision: precision)
            fresh.parameters.values.pointer.update(from: model.parameters.values.pointer, count: model.parameters.count)
            return pass(fresh)
        }
        let before = model.parameters.withValuesFixed { [pass(model), pass(model)] }
        // The comparisons outside #expect, which would print every gradient.
        let sameInScope = same(before[0], before[1])
        #expect(sameInScope, "the second pass in a scope")
        var expected = try changeDenseWeights()
        let changed = !same(before[0], expected)
        #expect(changed, "the change shows in the loss")
        let after = model.parameters.withValuesFixed { [pass(model), pass(model)] }
        let sameInNewScope = same(after[0], expected) && same(after[1], expected)
        #expect(sameInNewScope, "in a new scope")
        expected = try changeDenseWeights()
        let sameOutside = same(pass(model), expected)
        #expect(sameOutside, "outside any scope")
    }

    @Test func seedPresetIsTheReferenceModel() throws {
        let model = try VAE(config: ModelConfig.preset("seed"), maxBatch: 2)
        let shapes = model.parameters.parameters.map { "\($0.name) \($0.shape)" }
        #expect(shapes == [
            "enc_conv1/kernel [4, 4, 3, 32]", "enc_conv1/bias [32]", "enc_conv2/kernel [4, 4, 32, 32]", "enc_conv2/bias [32]",
            "enc_conv3/kernel [4, 4, 32, 32]", "enc_conv3/bias [32]", "enc_mu/kernel [2048, 128]", "enc_mu/bias [128]",
            "enc_logvar/kernel [2048, 128]", "enc_logvar/bias [128]", "dec_fc1/kernel [128, 256]", "dec_fc1/bias [256]",
            "dec_fc2/kernel [256, 2048]", "dec_fc2/bias [2048]", "dec_deconv1/kernel [4, 4, 32, 32]", "dec_deconv1/bias [32]",
            "dec_deconv2/kernel [4, 4, 32, 32]", "dec_deconv2/bias [32]", "dec_deconv3/kernel [4, 4, 3, 32]",
            "dec_deconv3/bias [3]",
        ])
        #expect(model.parameters.count == 1_152_675)  // as the PyTorch and Keras peers count
        // About 85 MFLOP per image, forward and backward (DEVELOPERS.md).
        #expect((84_000_000...86_000_000).contains(model.trainingFLOPsPerImage))
        #expect(try VAE(config: ModelConfig.preset("seed-latent100"), maxBatch: 1).config.latent == 100)
    }

    @Test func glorotInitializationIsReproducibleAndBounded() throws {
        let a = try VAE(config: config, maxBatch: 1), b = try VAE(config: config, maxBatch: 1)
        a.parameters.initialize(seed: 3)
        b.parameters.initialize(seed: 3)
        #expect(read(a.parameters.values.pointer, a.parameters.count) == read(b.parameters.values.pointer, b.parameters.count))
        for parameter in a.parameters.parameters {
            let values = read(parameter.value, parameter.count)
            if parameter.name.hasSuffix("bias") {
                #expect(values.allSatisfy { $0 == 0 })
            } else {
                let fans = parameter.shape.count == 2 ? parameter.shape[0] + parameter.shape[1]
                    : 16 * (parameter.shape[2] + parameter.shape[3])
                let limit = (6 / Double(fans)).squareRoot()
                #expect(values.allSatisfy { abs($0) <= limit } && values.contains { abs($0) > limit / 2 })
            }
        }
    }

    @Test(arguments: [
        (ModelConfig(latent: 0), "latent size"),
        (ModelConfig(encoderChannels: [32, 0, 32]), "encoder channels"),
        (ModelConfig(imageSize: 60), "divisible"),
        (ModelConfig(encoderChannels: []), "at least one"),
        (ModelConfig(decoderWidths: [-4]), "decoder dense"),
        (ModelConfig(beta: .nan), "beta"),
        (ModelConfig(latent: 100_000), "latent size"),
        // 2 x 65,536^2 weights: more than 2^31 values, which MPI's Int32 counts could not carry.
        (ModelConfig(decoderWidths: [65_536, 65_536]), "parameters, more than the 268435456 allowed"),
    ])
    func invalidConfigurationsAreRejected(config: ModelConfig, message: String) {
        #expect { try VAE(config: config, maxBatch: 4) } throws: { "\($0)".contains(message) }
    }

    /// The count that validation bounds is the count the model allocates.
    @Test(arguments: [ModelConfig(), ModelConfig(latent: 100), ModelConfig(decoderWidths: [256, 512]),
                      ModelConfig(imageSize: 32, imageChannels: 1, encoderChannels: [8, 24], latent: 5, decoderWidths: [])])
    func parameterCountMatchesTheBuiltModel(config: ModelConfig) throws {
        #expect(try VAE(config: config, maxBatch: 1).parameters.count == config.parameterCount)
    }

    @Test func unknownPresetIsNamed() {
        #expect { try ModelConfig.preset("big") } throws: { "\($0)".contains("unknown preset 'big'") }
    }

    /// Adam against the Keras 3 update written out in Float64 for three steps.
    @Test func adamMatchesKeras() throws {
        let model = try VAE(config: config, maxBatch: 1)
        model.parameters.initialize(seed: 1)
        let count = model.parameters.count
        var p = read(model.parameters.values.pointer, count)
        var m = [Double](repeating: 0, count: count), v = m
        let adam = Adam(parameterCount: count, learningRate: 0.01)
        for t in 1...3 {
            let g = randomValues(count, seed: UInt64(t))
            load(g, into: model.parameters.gradients.pointer)
            adam.update(model.parameters)
            let alpha = 0.01 * (1 - pow(0.999, Double(t))).squareRoot() / (1 - pow(0.9, Double(t)))
            for i in 0..<count {
                m[i] = 0.9 * m[i] + 0.1 * g[i]
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
                p[i] -= alpha * m[i] / (v[i].squareRoot() + 1e-7)
            }
        }
        #expect(relativeError(read(model.parameters.values.pointer, count), p) < 1e-5)
        #expect(adam.step == 3)
    }

    /// Adam on gradients of 1e-7 to 1e-5, where the place of ε shows, against the numbers Keras
    /// 3.15.1's own Adam gives (jax backend, float32, lr 0.01, β1 0.9, β2 0.999, ε 1e-7), which does
    ///   α = lr·√(1 − β2^t)/(1 − β1^t),  m += (g − m)(1 − β1),  v += (g² − v)(1 − β2),  p −= m·α/(√v + ε).
    /// PyTorch adds ε to the bias-corrected √(v/(1 − β2^t)) instead; that would move these
    /// parameters by up to 0.013 more. 20 parameters (16 for the vectorised loop, 4 tiny ones after it) start
    /// at 1, and the gradient of step t is factors[t] · sizes[i] · (−1)^i. The expected values are
    /// what this prints:
    ///     import os; os.environ["KERAS_BACKEND"] = "jax"
    ///     import numpy as np, keras
    ///     sizes = np.array([...the sizes below...], np.float32)
    ///     signs = np.array([(-1) ** i for i in range(20)], np.float32)
    ///     var = keras.Variable(np.ones(20, np.float32))
    ///     adam = keras.optimizers.Adam(learning_rate=0.01)
    ///     for f in [1, -0.5, 2]: adam.apply([np.float32(f) * sizes * signs], [var])
    ///     print(", ".join(np.format_float_positional(x, unique=True) for x in np.asarray(var)))
    @Test func adamMatchesKerasOnTinyGradients() {
        let sizes: [Float] = [0.5, 1, 2, 0, 1e-7, 1.5e-7, 2e-7, 3e-7, 5e-7, 7e-7, 1e-6, 1.5e-6, 2e-6, 3e-6, 5e-6, 7e-6,
                              1e-7, 1e-6, 5e-6, 1e-5]
        let factors: [Float] = [1, -0.5, 2]
        let keras: [Float] = [0.98075575, 1.0192443, 0.9807557, 1, 0.999158, 1.001232, 0.9983965, 1.0022968, 0.99648494,
                              1.0045549, 0.99413735, 1.0075672, 0.99112916, 1.010746, 0.98701626, 1.0142819, 0.999158,
                              1.0058627, 0.98701626, 1.0154562]
        let parameters = ParameterStore()
        _ = Dense(name: "adam", inputs: 4, outputs: 4, parameters: parameters)
        parameters.allocate()
        parameters.values.fill(1)
        let adam = Adam(parameterCount: parameters.count, learningRate: 0.01)
        for factor in factors {
            for i in 0..<parameters.count {
                parameters.gradients.pointer[i] = factor * sizes[i] * (i % 2 == 0 ? 1 : -1)
            }
            adam.update(parameters)
        }
        let values = Array(UnsafeBufferPointer(start: parameters.values.pointer, count: parameters.count))
        let difference = zip(values, keras).map { abs($0 - $1) }.max()!
        // A few float32 ulps near 1 (measured 1.8e-7: Keras rounds α and the moments in other orders).
        #expect(difference < 3e-7, "largest difference from Keras \(difference)")
    }

    /// The AVX-512 update (Kernels' avx512_adam) gives the bits of the Swift loop, three steps in a
    /// row, on gradients from 1e-9 to 10 of both signs and a count that leaves a scalar tail.
    @Test(.enabled(if: CPU.hasAVX512, "this CPU has no AVX-512: only the Swift loop runs"))
    func avx512AdamGivesTheBitsOfTheSwiftLoop() {
        let count = 1000 + 7
        let gradients = randomValues(3 * count, seed: 41).enumerated().map { Float($1) * powf(10, Float($0 % 11) - 9) }
        func run(_ avx512: Bool) -> [Float] {
            var (p, m, v) = (randomValues(count, seed: 42).map(Float.init), [Float](repeating: 0, count: count),
                             [Float](repeating: 0, count: count))
            for step in 0..<3 {
                Array(gradients[step * count..<(step + 1) * count]).withUnsafeBufferPointer { g in
                    Adam.update(&p, g.baseAddress!, &m, &v, count: count, 0.9, 0.999, 1e-7, correction: 0.01 * Float(step + 1),
                                avx512: avx512)
                }
            }
            return p + m + v
        }
        let (swift, kernel) = (run(false), run(true))
        let different = bitDifferences(swift, kernel)
        #expect(different.count == 0, "the first at \(different.first ?? -1)")
    }
}
