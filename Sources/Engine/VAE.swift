/// The convolutional VAE, read top to bottom (shapes for the `seed` preset, N images):
///
///   x [N,64,64,3] → Conv2D+ReLU [N,32,32,32] → Conv2D+ReLU [N,16,16,32] → Conv2D+ReLU [N,8,8,32]
///     → flatten [N,2048] → Dense mu [N,128], Dense logvar [N,128]
///   z = mu + exp(logvar/2)·eps [N,128]
///     → Dense+ReLU [N,256] → Dense+ReLU [N,2048] → reshape [N,8,8,32]
///     → ConvTranspose2D+ReLU [N,16,16,32] → ConvTranspose2D+ReLU [N,32,32,32]
///     → ConvTranspose2D+Sigmoid [N,64,64,3] = x̂
///
/// Every activation and gradient buffer is allocated here, once, for `maxBatch` images; a step
/// may use any batch up to it. NHWC layout throughout, so flatten and reshape cost nothing.
public final class VAE {
    public let config: ModelConfig
    public let maxBatch: Int
    public let parameters: ParameterStore
    /// The number format of every layer's GEMM operands.
    public let precision: Precision

    public let encoder: [Conv2D]
    public let muHead: Dense, logvarHead: Dense
    public let reparameterize: Reparameterize
    /// The decoder's Dense layers, the last of which maps to the bottleneck feature map.
    public let decoderDense: [Dense]
    public let decoder: [ConvTranspose2D]

    // Activations [maxBatch, ...] and their gradients, one pair per layer output.
    private let encoderOutputs: [FloatBuffer], encoderGradients: [FloatBuffer]
    private let mu: FloatBuffer, logvar: FloatBuffer, dmu: FloatBuffer, dlogvar: FloatBuffer
    private let z: FloatBuffer, dz: FloatBuffer
    private let denseOutputs: [FloatBuffer], denseGradients: [FloatBuffer]
    private let decoderOutputs: [FloatBuffer], decoderGradients: [FloatBuffer]

    /// A model with parameters of its own, or, with `primary`, a replica for another thread: it
    /// reads the primary's parameter values and has its own activations and gradient buffer.
    public init(config: ModelConfig, maxBatch: Int, precision: Precision = .float32,
                sharingParametersWith primary: VAE? = nil) throws {
        try config.validate()
        try precision.validate()
        guard maxBatch > 0 else { throw ConfigError("batch size must be positive, got \(maxBatch)") }
        self.config = config
        self.maxBatch = maxBatch
        self.precision = precision
        let parameters = ParameterStore()
        self.parameters = parameters

        var encoder: [Conv2D] = []
        var size = config.imageSize, channels = config.imageChannels
        for (i, outChannels) in config.encoderChannels.enumerated() {
            encoder.append(Conv2D(name: "enc_conv\(i + 1)", height: size, width: size, inChannels: channels,
                                  outChannels: outChannels, maxBatch: maxBatch, parameters: parameters, precision: precision))
            size /= 2
            channels = outChannels
        }
        self.encoder = encoder
        muHead = Dense(name: "enc_mu", inputs: config.bottleneckValues, outputs: config.latent, parameters: parameters,
                       precision: precision)
        logvarHead = Dense(name: "enc_logvar", inputs: config.bottleneckValues, outputs: config.latent,
                           parameters: parameters, precision: precision)
        reparameterize = Reparameterize(latent: config.latent, maxBatch: maxBatch)

        let widths = [config.latent] + config.decoderWidths + [config.bottleneckValues]
        decoderDense = (1..<widths.count).map {
            Dense(name: "dec_fc\($0)", inputs: widths[$0 - 1], outputs: widths[$0], parameters: parameters,
                  precision: precision)
        }
        var decoder: [ConvTranspose2D] = []
        for (i, outChannels) in config.decoderChannels.enumerated() {
            decoder.append(ConvTranspose2D(name: "dec_deconv\(i + 1)", height: size, width: size, inChannels: channels,
                                           outChannels: outChannels, maxBatch: maxBatch, parameters: parameters, precision: precision))
            size *= 2
            channels = outChannels
        }
        self.decoder = decoder
        parameters.allocate(sharingValuesWith: primary?.parameters)

        func buffers(_ sizes: [Int]) -> [FloatBuffer] { sizes.map { FloatBuffer(count: maxBatch * $0) } }
        encoderOutputs = buffers(encoder.map(\.outputSize))
        encoderGradients = buffers(encoder.map(\.outputSize))
        let latentSize = maxBatch * config.latent
        mu = FloatBuffer(count: latentSize)
        logvar = FloatBuffer(count: latentSize)
        dmu = FloatBuffer(count: latentSize)
        dlogvar = FloatBuffer(count: latentSize)
        z = FloatBuffer(count: latentSize)
        dz = FloatBuffer(count: latentSize)
        denseOutputs = buffers(decoderDense.map(\.outputs))
        denseGradients = buffers(decoderDense.map(\.outputs))
        decoderOutputs = buffers(decoder.map(\.outputSize))
        decoderGradients = buffers(decoder.map(\.outputSize))
    }

    // MARK: Outputs of the last forward pass

    /// mu [batch, L] of the last `encode`.
    public var means: UnsafeMutablePointer<Float> { mu.pointer }
    /// logvar [batch, L] of the last `encode`.
    public var logVariances: UnsafeMutablePointer<Float> { logvar.pointer }
    /// z [batch, L]: written by the forward pass, or by the caller before `decode`.
    public var latents: UnsafeMutablePointer<Float> { z.pointer }
    /// x̂ [batch, H, W, C] of the last `decode`.
    public var reconstruction: UnsafeMutablePointer<Float> { decoderOutputs[decoderOutputs.count - 1].pointer }

    /// Forward and backward multiply-adds ×2 per image, from the layer shapes. The first
    /// convolution needs no input gradient, so backward is twice forward less that GEMM.
    public var trainingFLOPsPerImage: Int {
        let forward = encoder.map(\.forwardFLOPs).reduce(0, +) + muHead.forwardFLOPs + logvarHead.forwardFLOPs
            + decoderDense.map(\.forwardFLOPs).reduce(0, +) + decoder.map(\.forwardFLOPs).reduce(0, +)
        return 3 * forward - encoder[0].forwardFLOPs
    }

    // MARK: Forward

    /// x [batch, H, W, C] → mu, logvar.
    public func encode(_ x: UnsafePointer<Float>, batch: Int) {
        var input = x
        for (layer, output) in zip(encoder, encoderOutputs) {
            layer.forward(input, output.pointer, batch: batch)
            ReLU.forward(output.pointer, count: batch * layer.outputSize)
            input = UnsafePointer(output.pointer)
        }
        muHead.forward(input, mu.pointer, batch: batch)
        logvarHead.forward(input, logvar.pointer, batch: batch)
    }

    /// `latents` [batch, L] → `reconstruction` [batch, H, W, C].
    public func decode(batch: Int) {
        var input = UnsafePointer(z.pointer)
        for (layer, output) in zip(decoderDense, denseOutputs) {
            layer.forward(input, output.pointer, batch: batch)
            ReLU.forward(output.pointer, count: batch * layer.outputs)
            input = UnsafePointer(output.pointer)
        }
        for (i, (layer, output)) in zip(decoder, decoderOutputs).enumerated() {
            layer.forward(input, output.pointer, batch: batch)
            if i == decoder.count - 1 {
                Sigmoid.forward(output.pointer, count: batch * layer.outputSize)
            } else {
                ReLU.forward(output.pointer, count: batch * layer.outputSize)
            }
            input = UnsafePointer(output.pointer)
        }
    }

    /// Draws eps for the images at global-batch positions firstPosition..<firstPosition+batch of
    /// step `step` (see Reparameterize).
    public func drawNoise(seed: UInt64, step: Int, firstPosition: Int, batch: Int) {
        reparameterize.drawNoise(seed: seed, step: step, firstPosition: firstPosition, batch: batch)
    }

    /// Full forward pass with the current noise; returns the loss sums over the batch.
    /// With a `gradientScale` (1 / global batch size) it also runs backward and writes every
    /// parameter's gradient into the gradient buffer (overwriting it).
    @discardableResult
    public func loss(_ x: UnsafePointer<Float>, batch: Int, gradientScale: Float? = nil) -> LossSums {
        precondition(batch > 0 && batch <= maxBatch, "batch \(batch) outside 1...\(maxBatch)")
        encode(x, batch: batch)
        reparameterize.forward(mu: mu.pointer, logvar: logvar.pointer, z.pointer, batch: batch)
        decode(batch: batch)
        let scale = gradientScale ?? 0
        let xhatGradient = gradientScale == nil ? nil : decoderGradients[decoderGradients.count - 1].pointer
        let reconstructionSum = VAELoss.reconstruction(x: x, reconstruction: reconstruction, gradient: xhatGradient,
                                                       scale: scale, batch: batch, imageSize: config.imageValues)
        let klSum = VAELoss.kl(mu: mu.pointer, logvar: logvar.pointer,
                               dmu: gradientScale == nil ? nil : dmu.pointer,
                               dlogvar: gradientScale == nil ? nil : dlogvar.pointer,
                               scale: scale, beta: config.beta, batch: batch, latent: config.latent)
        if gradientScale != nil { backward(x, batch: batch) }
        return LossSums(reconstruction: reconstructionSum, kl: klSum, images: batch)
    }

    // MARK: Backward

    /// From dx̂, dmu and dlogvar (written by the loss) down to every parameter gradient.
    private func backward(_ x: UnsafePointer<Float>, batch: Int) {
        let last = decoder.count - 1
        Sigmoid.backward(output: decoderOutputs[last].pointer, decoderGradients[last].pointer,
                         count: batch * decoder[last].outputSize)
        for i in stride(from: last, through: 0, by: -1) {
            let (input, inputGradient) = i == 0
                ? (denseOutputs[denseOutputs.count - 1], denseGradients[denseGradients.count - 1])
                : (decoderOutputs[i - 1], decoderGradients[i - 1])
            decoder[i].backward(input.pointer, decoderGradients[i].pointer, inputGradient.pointer, batch: batch)
            ReLU.backward(output: input.pointer, inputGradient.pointer, count: batch * decoder[i].inputSize)
        }
        for i in stride(from: decoderDense.count - 1, through: 0, by: -1) {
            let (input, inputGradient) = i == 0 ? (z, dz) : (denseOutputs[i - 1], denseGradients[i - 1])
            decoderDense[i].backward(input.pointer, denseGradients[i].pointer, inputGradient.pointer, batch: batch)
            if i > 0 { ReLU.backward(output: input.pointer, inputGradient.pointer, count: batch * decoderDense[i].inputs) }
        }
        reparameterize.backward(dz.pointer, dmu: dmu.pointer, dlogvar: dlogvar.pointer, batch: batch)
        let features = encoderOutputs[encoderOutputs.count - 1], featureGradient = encoderGradients[encoderGradients.count - 1]
        muHead.backward(features.pointer, dmu.pointer, featureGradient.pointer, batch: batch)
        logvarHead.backward(features.pointer, dlogvar.pointer, featureGradient.pointer, accumulate: true, batch: batch)
        for i in stride(from: encoder.count - 1, through: 0, by: -1) {
            ReLU.backward(output: encoderOutputs[i].pointer, encoderGradients[i].pointer, count: batch * encoder[i].outputSize)
            encoder[i].backward(i == 0 ? x : UnsafePointer(encoderOutputs[i - 1].pointer), encoderGradients[i].pointer,
                                i == 0 ? nil : encoderGradients[i - 1].pointer, batch: batch)
        }
    }
}
