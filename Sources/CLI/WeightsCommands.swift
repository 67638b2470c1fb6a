import ArgumentParser
import Foundation
import VAEData
import VAEEngine
import VAETraining

/// Images or latents go through the model this many at a time.
let modelBatch = 64

let modelHelp = ArgumentHelp("""
    The weights: a run directory (its newest intact checkpoint), a checkpoint file, or a safetensors file \
    from 'vae export' (or PyTorch, with the configuration in its metadata).
    """, valueName: "RUN_DIR|CHECKPOINT|FILE.safetensors")

/// The model of `model` for up to `maxBatch` images, which must take the images of `dataset`.
func loadModel(_ model: String, for dataset: Dataset, maxBatch: Int) throws -> VAE {
    let vae = try WeightsFile.loadModel(model, maxBatch: maxBatch)
    let config = vae.config
    guard dataset.imageSize == config.imageSize && dataset.channels == config.imageChannels else {
        throw ValidationError("\(dataset.path) has \(dataset.imageSize)x\(dataset.imageSize)x\(dataset.channels) images; "
                              + "the model takes \(config.imageSize)x\(config.imageSize)x\(config.imageChannels)")
    }
    return vae
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model's weights as safetensors (or .npz), named and laid out as PyTorch holds them.",
        discussion: """
            Every parameter becomes one Float32 tensor named and shaped as in the PyTorch module of \
            the README (section "Export and import"): enc_conv1.weight (32, 3, 4, 4), enc_conv1.bias, \
            ..., enc_mu.*, enc_logvar.*, dec_fc1.*, dec_fc2.*, dec_deconv1.* ... Conv2d weights are \
            (out, in, kH, kW), ConvTranspose2d weights (in, out, kH, kW), Linear weights (out, in); \
            the dense layers after the encoder's flatten and before the decoder's reshape are \
            permuted to PyTorch's NCHW order. The model configuration (JSON) is the metadata entry \
            'config' (safetensors), or the member config.json (npz: one NAME.npy per tensor, \
            stored uncompressed). Adam's state is not exported. The file is written beside --out \
            and renamed into place.

            Examples:
              vae export runs/faces --out faces.safetensors
              vae export runs/faces/checkpoint-00000340.bin --out faces.npz --format npz
            """)

    @Argument(help: modelHelp)
    var model: String

    @Option(name: .customLong("out"), help: ArgumentHelp("The file to write.", valueName: "FILE"))
    var outputPath: String

    @Option(help: ArgumentHelp("safetensors or npz.", valueName: "format"))
    var format = WeightsFile.Format.safetensors.rawValue

    func validate() throws {
        guard WeightsFile.Format(rawValue: format) != nil else {
            throw ValidationError("--format \(format): expected safetensors or npz")
        }
    }

    func run() throws {
        let started = monotonicSeconds()
        let vae = try WeightsFile.loadModel(model, maxBatch: 1)
        let bytes = try WeightsFile.write(vae, format: WeightsFile.Format(rawValue: format)!, to: outputPath)
        print("wrote \(vae.parameters.parameters.count) tensors, \(vae.parameters.count) parameters (\(vae.config.summary)), "
              + "\(bytes) bytes, to \(outputPath) in " + String(format: "%.2f s", monotonicSeconds() - started))
    }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Make a run directory from a safetensors file, to sample from, evaluate or fine-tune.",
        discussion: """
            Reads a file as 'vae export' writes it (tensor names, shapes and the 'config' metadata \
            entry as in the README, section "Export and import") and writes RUN_DIR/checkpoint-00000000.bin \
            at step 0 with a fresh optimiser (zero Adam moments), RUN_DIR/config.json and an empty \
            RUN_DIR/metrics.jsonl. 'vae train --resume --data FILE --out RUN_DIR' then trains from \
            these weights; it checks --seed and --batch against the values recorded here and takes \
            the leaf recorded here, so give import the --seed, --batch and --leaf the training \
            will use (the defaults are those of 'vae train'). A missing tensor, a wrong shape or \
            dtype, a truncated or foreign file is refused with one line, and nothing is written. \
            Exporting an imported run gives the imported file back, byte for byte.

            Example:
              vae import edited.safetensors --out runs/edited
              vae train --resume --data faces.vaeds --out runs/edited --epochs 2
            """)

    @Argument(help: ArgumentHelp("The safetensors file (or a run directory or checkpoint, to restart its optimiser).",
                                 valueName: "FILE.safetensors"))
    var weights: String

    @Option(help: ArgumentHelp("The run directory to create.", valueName: "RUN_DIR"))
    var out: String

    @Option(help: "The --seed the run will train with.")
    var seed: UInt64 = 1

    @Option(help: "The --batch the run will train with.")
    var batch = 64

    @Option(help: ArgumentHelp("""
        The --leaf the run will train with (default: the one 'vae train' alone chooses on this \
        machine for --batch).
        """, valueName: "n"))
    var leaf: Int?

    func run() throws {
        let leaf = leaf ?? StepRunner.defaultLeaf(globalBatch: batch, workers: ProcessInfo.processInfo.activeProcessorCount)
        try WeightsFile.importRun(from: weights, to: out, seed: seed, batch: batch, leaf: leaf)
        print("imported \(weights) into \(out) (step 0, fresh optimiser; seed \(seed), batch \(batch), leaf \(leaf))")
    }
}

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode dataset images to their latent means and log-variances, as a NumPy array.",
        discussion: """
            Writes a float32 .npy array of shape (N, 2, L) for N images and latent size L: \
            [:, 0] is mu and [:, 1] is logvar of each image, in the order of --indices (or of the \
            file). Images are read as training reads them (bytes / 255, NHWC).

            Examples:
              vae encode runs/faces --data f.vaeds --indices 0,5,9 --out codes.npy
              vae encode m.safetensors --data f.vaeds --count 100 --partition valid \
                         --out codes.npy
            """)

    @Argument(help: modelHelp)
    var model: String

    @Option(help: ArgumentHelp("Dataset file from 'vae prepare' or 'vae synth'.", valueName: "FILE.vaeds"))
    var data: String

    @Option(help: ArgumentHelp("Positions of the images in the dataset file, comma-separated.", valueName: "i,j,..."))
    var indices: String?

    @Option(help: ArgumentHelp("Encode the first N images of --partition instead.", valueName: "N"))
    var count: Int?

    @Option(help: ArgumentHelp("With --count: train, valid, test or all.", valueName: "partition"))
    var partition = "all"

    @Option(name: .customLong("out"), help: ArgumentHelp("The .npy file to write.", valueName: "FILE.npy"))
    var outputPath: String

    func validate() throws {
        guard (indices == nil) != (count == nil) else { throw ValidationError("give either --indices or --count") }
        if let count, count <= 0 { throw ValidationError("--count \(count): expected at least 1") }
        try validatePartition(partition)
    }

    func run() throws {
        let dataset = try Dataset(path: data, verifyChecksum: false)
        let chosen = try selectedImages(dataset)
        let vae = try loadModel(model, for: dataset, maxBatch: min(chosen.count, modelBatch))
        let config = vae.config
        let latent = config.latent
        let images = FloatBuffer(count: vae.maxBatch * config.imageValues)
        var codes = [Float](repeating: 0, count: chosen.count * 2 * latent)
        for first in stride(from: 0, to: chosen.count, by: vae.maxBatch) {
            let batch = chosen[first..<min(first + vae.maxBatch, chosen.count)]
            dataset.loadFloats(batch, into: images.pointer)
            vae.encode(images.pointer, batch: batch.count)
            for i in 0..<batch.count {
                let row = (first + i) * 2 * latent
                for j in 0..<latent {
                    codes[row + j] = vae.means[i * latent + j]
                    codes[row + latent + j] = vae.logVariances[i * latent + j]
                }
            }
        }
        try NumPyArray.write(codes, shape: [chosen.count, 2, latent], to: outputPath)
        print("wrote mu and logvar of \(chosen.count) images, shape (\(chosen.count), 2, \(latent)), to \(outputPath)")
    }

    private func selectedImages(_ dataset: Dataset) throws -> [Int32] {
        guard let indices else {
            let pool = dataset.indices(in: Partition(name: partition))
            guard pool.count >= count! else {
                throw ValidationError("--count \(count!): \(data) has \(pool.count) images in partition \(partition)")
            }
            return Array(pool.prefix(count!))
        }
        return try indices.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let index = Int32($0.trimmingCharacters(in: .whitespaces)), index >= 0, Int(index) < dataset.count else {
                throw ValidationError("--indices: '\($0)' is not an image position from 0 to \(dataset.count - 1) in \(data)")
            }
            return index
        }
    }
}

struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode latent vectors to images, as a NumPy array and optionally a PNG grid.",
        discussion: """
            Reads a float32 .npy array of shape (N, L), L the model's latent size (mu of 'vae \
            encode' is codes[:, 0]; save float64 arrays with .astype(np.float32)), and writes a \
            float32 .npy array of shape (N, S, S, C): the decoded images, NHWC, values in [0, 1]. \
            --png also draws them as a grid, ceil(sqrt(N)) images wide.

            Example:
              vae decode runs/faces --latents z.npy --out images.npy --png images.png
            """)

    @Argument(help: modelHelp)
    var model: String

    @Option(help: ArgumentHelp("Latent vectors, float32 (N, L).", valueName: "FILE.npy"))
    var latents: String

    @Option(name: .customLong("out"), help: ArgumentHelp("The .npy file to write.", valueName: "FILE.npy"))
    var outputPath: String

    @Option(help: ArgumentHelp("Also draw the images to this PNG file.", valueName: "FILE.png"))
    var png: String?

    func run() throws {
        let (shape, values) = try NumPyArray.read(path: latents)
        let vae = try WeightsFile.loadModel(model, maxBatch: min(max(shape.first ?? 1, 1), modelBatch))
        let config = vae.config
        guard shape.count == 2 && shape[0] > 0 && shape[1] == config.latent else {
            throw ValidationError("\(latents): shape \(shape), expected (N, \(config.latent)) for the model's latent size")
        }
        if png != nil && config.imageChannels != 3 {
            throw ValidationError("--png draws RGB images; the model's have \(config.imageChannels) channel(s)")
        }
        let count = shape[0], imageValues = config.imageValues
        var images = [Float](repeating: 0, count: count * imageValues)
        for first in stride(from: 0, to: count, by: vae.maxBatch) {
            let batch = min(vae.maxBatch, count - first)
            values.withUnsafeBufferPointer { vae.latents.update(from: $0.baseAddress! + first * config.latent, count: batch * config.latent) }
            vae.decode(batch: batch)
            for j in 0..<(batch * imageValues) { images[first * imageValues + j] = vae.reconstruction[j] }
        }
        let side = config.imageSize
        try NumPyArray.write(images, shape: [count, side, side, config.imageChannels], to: outputPath)
        print("wrote \(count) images, shape (\(count), \(side), \(side), \(config.imageChannels)), to \(outputPath)")
        if let png {
            try images.withUnsafeBufferPointer {
                try writeImageGrid(path: png, pixels: $0.baseAddress!, count: count, imageSize: side,
                                   columns: Int(Double(count).squareRoot().rounded(.up)))
            }
            print("drew them to \(png)")
        }
    }
}
