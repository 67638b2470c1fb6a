import ArgumentParser
import VAEEngine

/// The architecture flags shared by every command that builds a model.
struct ModelOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Architecture preset: \(ModelConfig.presetNames.joined(separator: ", ")). "
                               + "'seed' is the reference model (latent 128).", valueName: "name"))
    var preset = "seed"

    @Option(help: ArgumentHelp("Encoder convolution channels, comma-separated; one stride-2 4x4 convolution each "
                               + "(default from the preset: 32,32,32).", valueName: "c1,c2,..."))
    var encoderChannels: String?

    @Option(help: ArgumentHelp("Latent dimensions (default from the preset).", valueName: "n"))
    var latent: Int?

    @Option(help: ArgumentHelp("Decoder dense widths before the reshape, comma-separated (default 256).",
                               valueName: "w1,w2,..."))
    var decoderDense: String?

    @Option(help: ArgumentHelp("Weight of the KL term in the loss (default 1).", valueName: "beta"))
    var beta: Float?

    /// The preset with the flags applied, validated (for 64x64 images; training adopts its data's size).
    func config() throws -> ModelConfig {
        var config = try ModelConfig.preset(preset)
        if let encoderChannels { config.encoderChannels = try integers(encoderChannels, flag: "--encoder-channels") }
        if let latent { config.latent = latent }
        if let decoderDense { config.decoderWidths = try integers(decoderDense, flag: "--decoder-dense") }
        if let beta { config.beta = beta }
        try config.validate()
        return config
    }

    private func integers(_ text: String, flag: String) throws -> [Int] {
        try text.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let value = Int($0.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("\(flag) expects comma-separated whole numbers, got '\(text)'")
            }
            return value
        }
    }
}

import Foundation

extension Precision: ExpressibleByArgument {}

/// The number format of the GEMM operands, for the commands that train.
struct PrecisionOption: ParsableArguments {
    @Option(help: ArgumentHelp("""
        GEMM operands: fp32 (the reference; the package's AVX-512 kernel, or OpenBLAS) or bf16 \
        (rounded to bfloat16, products summed in float32; needs AVX512_BF16). Parameters, Adam, the loss and the gradients stay float32.
        """, valueName: "fp32|bf16"))
    var precision = Precision.float32
}
