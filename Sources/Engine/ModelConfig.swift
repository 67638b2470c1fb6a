/// The architecture and loss weight of a VAE, stored with everything the program writes.
///
/// Encoder: one Conv2D (4x4, stride 2, ReLU) per entry of `encoderChannels`, then two Dense heads
/// to mu and logvar. Decoder: Dense + ReLU per entry of `decoderWidths`, a Dense + ReLU to the
/// encoder's last feature map, then ConvTranspose2D (4x4, stride 2) layers mirroring the encoder's
/// channels back to the image channels, ReLU between them and Sigmoid at the end.
public struct ModelConfig: Codable, Equatable, Sendable {
    public var imageSize: Int
    public var imageChannels: Int
    public var encoderChannels: [Int]
    public var latent: Int
    public var decoderWidths: [Int]
    public var beta: Float

    public init(imageSize: Int = 64, imageChannels: Int = 3, encoderChannels: [Int] = [32, 32, 32],
                latent: Int = 128, decoderWidths: [Int] = [256], beta: Float = 1) {
        self.imageSize = imageSize
        self.imageChannels = imageChannels
        self.encoderChannels = encoderChannels
        self.latent = latent
        self.decoderWidths = decoderWidths
        self.beta = beta
    }

    /// The reference model of the 2023 study, and its latent-100 variant.
    public static let presets: [String: ModelConfig] = [
        "seed": ModelConfig(),
        "seed-latent100": ModelConfig(latent: 100),
    ]
    public static let presetNames = presets.keys.sorted()

    public static func preset(_ name: String) throws -> ModelConfig {
        guard let config = presets[name] else {
            throw ConfigError("unknown preset '\(name)' (known: \(presetNames.joined(separator: ", ")))")
        }
        return config
    }

    /// Side of the encoder's last feature map.
    public var bottleneckSize: Int { imageSize >> encoderChannels.count }
    /// Values in the encoder's last feature map, the decoder's reshape target.
    public var bottleneckValues: Int { bottleneckSize * bottleneckSize * (encoderChannels.last ?? imageChannels) }
    public var imageValues: Int { imageSize * imageSize * imageChannels }
    /// Output channels of the decoder's transposed convolutions: the encoder's, mirrored, then the image's.
    public var decoderChannels: [Int] { Array(encoderChannels.dropLast().reversed()) + [imageChannels] }

    /// Limits that keep every buffer and index well inside memory and Int32 BLAS arguments.
    static let maxChannels = 1024, maxLatent = 8192, maxWidth = 65_536, maxImageSize = 1024
    /// 2^28 parameters: 1 GiB per Float32 buffer, so that a buffer's byte count, and the value
    /// count of the gradient allreduce, fit the Int32 counts MPI takes.
    public static let maxParameters = 1 << 28

    /// Weights and biases of the model this configuration describes, in the order the VAE holds them.
    public var parameterCount: Int {
        let convolution = { (input: Int, output: Int) in 4 * 4 * input * output + output }
        let dense = { (input: Int, output: Int) in input * output + output }
        let encoder = zip([imageChannels] + encoderChannels, encoderChannels).map(convolution).reduce(0, +)
        let heads = 2 * dense(bottleneckValues, latent)
        let widths = [latent] + decoderWidths + [bottleneckValues]
        let decoderDense = zip(widths, widths.dropFirst()).map(dense).reduce(0, +)
        let decoder = zip([encoderChannels.last ?? imageChannels] + decoderChannels, decoderChannels).map(convolution)
            .reduce(0, +)
        return encoder + heads + decoderDense + decoder
    }

    public func validate() throws {
        func check(_ condition: Bool, _ message: @autoclosure () -> String) throws {
            if !condition { throw ConfigError(message()) }
        }
        try check(imageSize > 0 && imageSize <= ModelConfig.maxImageSize,
                  "image size must be between 1 and \(ModelConfig.maxImageSize), got \(imageSize)")
        try check(imageChannels > 0 && imageChannels <= 4, "image channels must be between 1 and 4, got \(imageChannels)")
        try check(!encoderChannels.isEmpty, "the encoder needs at least one convolution")
        for channels in encoderChannels {
            try check(channels > 0 && channels <= ModelConfig.maxChannels,
                      "encoder channels must be between 1 and \(ModelConfig.maxChannels), got \(channels)")
        }
        let factor = 1 << encoderChannels.count
        try check(imageSize % factor == 0,
                  "image size \(imageSize) must be divisible by 2^\(encoderChannels.count) = \(factor) for \(encoderChannels.count) stride-2 convolutions")
        try check(latent > 0 && latent <= ModelConfig.maxLatent, "latent size must be between 1 and \(ModelConfig.maxLatent), got \(latent)")
        for width in decoderWidths {
            try check(width > 0 && width <= ModelConfig.maxWidth,
                      "decoder dense widths must be between 1 and \(ModelConfig.maxWidth), got \(width)")
        }
        try check(beta.isFinite && beta >= 0, "beta must be a finite number >= 0, got \(beta)")
        try check(parameterCount <= ModelConfig.maxParameters,
                  "the model would have \(parameterCount) parameters, more than the \(ModelConfig.maxParameters) allowed")
    }

    /// One line for logs: "64x64x3 enc 32-32-32 latent 128 dec 256 beta 1".
    public var summary: String {
        "\(imageSize)x\(imageSize)x\(imageChannels), encoder \(encoderChannels.map(String.init).joined(separator: "-")), "
            + "latent \(latent), decoder dense \(decoderWidths.map(String.init).joined(separator: "-")), beta \(beta)"
    }
}

public struct ConfigError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
