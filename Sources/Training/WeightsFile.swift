#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import VAEEngine

/// The model's weights as the equivalent PyTorch module holds them (README, "Export and import"),
/// in a safetensors or .npz file, and back.
///
/// The engine keeps Keras layouts over NHWC maps; PyTorch keeps its own over NCHW maps. Each
/// engine parameter becomes one PyTorch tensor by a reshape and a transpose (as NumPy would write
/// it, `torch = engine.reshape(view).transpose(axes).reshape(shape)`):
///   Conv2d weight           engine [kh, kw, in, out]   → (out, in, kh, kw)      axes (3, 2, 0, 1)
///   ConvTranspose2d weight  engine [kh, kw, out, in]   → (in, out, kh, kw)      axes (3, 2, 0, 1)
///   Linear weight           engine [in, out]           → (out, in)              axes (1, 0)
///   enc_mu, enc_logvar      engine [H, W, C, out]      → (out, C·H·W)           axes (3, 2, 0, 1)
///     (their input is the NHWC feature map flattened; PyTorch flattens NCHW)
///   last decoder Linear     engine [in, H, W, C]       → (C·H·W, in)            axes (3, 1, 2, 0)
///     and its bias          engine [H, W, C]           → (C·H·W)                axes (2, 0, 1)
///     (its output is reshaped to NHWC in the engine, to NCHW in PyTorch)
///   other biases            unchanged
/// Names: the engine's "enc_conv1/kernel" is "enc_conv1.weight", "enc_conv1/bias" "enc_conv1.bias".
public enum WeightsFile {
    /// The metadata key that holds the model configuration (ModelConfig as JSON).
    static let configKey = "config"

    // MARK: The PyTorch layout

    /// One engine parameter as PyTorch holds it.
    struct TorchTensor {
        let parameter: Parameter
        let name: String
        let shape: [Int]
        /// For each value of the PyTorch tensor, in its order, the index of that value in the engine's.
        let engineIndices: [Int]

        init(_ parameter: Parameter, view: [Int]? = nil, axes: [Int]? = nil, shape: [Int]? = nil) {
            let view = view ?? parameter.shape
            let axes = axes ?? Array(view.indices)
            precondition(view.reduce(1, *) == parameter.count, "\(parameter.name): view \(view) of \(parameter.shape)")
            self.parameter = parameter
            // "enc_conv1/kernel" → "enc_conv1.weight"
            let parts = parameter.name.split(separator: "/")
            name = String(parts[0]) + "." + (parts[1] == "kernel" ? "weight" : String(parts[1]))
            self.shape = shape ?? axes.map { view[$0] }
            engineIndices = transposedIndices(shape: view, axes: axes)
        }
    }

    /// Every parameter of `model` as PyTorch holds it, in the engine's parameter order.
    static func torchLayout(of model: VAE) -> [TorchTensor] {
        let config = model.config
        let side = config.bottleneckSize, channels = config.encoderChannels.last!
        let flat = channels * side * side
        let kernelAxes = [3, 2, 0, 1]
        var tensors: [TorchTensor] = []
        for layer in model.encoder {
            tensors += [TorchTensor(layer.kernel, axes: kernelAxes), TorchTensor(layer.bias)]
        }
        for head in [model.muHead, model.logvarHead] {
            tensors += [TorchTensor(head.weight, view: [side, side, channels, head.outputs], axes: kernelAxes,
                                    shape: [head.outputs, flat]),
                        TorchTensor(head.bias)]
        }
        for layer in model.decoderDense.dropLast() {
            tensors += [TorchTensor(layer.weight, axes: [1, 0]), TorchTensor(layer.bias)]
        }
        let last = model.decoderDense.last!
        tensors += [TorchTensor(last.weight, view: [last.inputs, side, side, channels], axes: [3, 1, 2, 0],
                                shape: [flat, last.inputs]),
                    TorchTensor(last.bias, view: [side, side, channels], axes: [2, 0, 1], shape: [flat])]
        for layer in model.decoder {
            tensors += [TorchTensor(layer.kernel, axes: kernelAxes), TorchTensor(layer.bias)]
        }
        precondition(tensors.map(\.parameter.name) == model.parameters.parameters.map(\.name),
                     "every parameter is exported once, in the engine's order")
        return tensors
    }

    /// The parameters of `model` as PyTorch tensors.
    public static func torchTensors(of model: VAE) -> [NamedTensor] {
        torchLayout(of: model).map { tensor in
            let values = tensor.parameter.value
            return NamedTensor(name: tensor.name, shape: tensor.shape, values: tensor.engineIndices.map { values[$0] })
        }
    }

    /// Sets the parameters of `model` from PyTorch tensors, which must be exactly the model's:
    /// every name present with its shape, and no other (as `load_state_dict(strict=True)`).
    static func load(_ tensors: [NamedTensor], into model: VAE, path: String) throws {
        let layout = torchLayout(of: model)
        let given = Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for expected in layout {
            guard let tensor = given[expected.name] else {
                throw TrainingError("\(path): missing tensor '\(expected.name)' (shape \(expected.shape)) of the model "
                                    + "(\(model.config.summary))")
            }
            guard tensor.shape == expected.shape else {
                throw TrainingError("\(path): tensor '\(expected.name)' has shape \(tensor.shape), expected \(expected.shape) "
                                    + "for the model (\(model.config.summary))")
            }
        }
        let expectedNames = Set(layout.map(\.name))
        if let unexpected = tensors.map(\.name).first(where: { !expectedNames.contains($0) }) {
            throw TrainingError("\(path): unexpected tensor '\(unexpected)': not a parameter of the model (\(model.config.summary))")
        }
        for expected in layout {
            let values = expected.parameter.value
            for (value, index) in zip(given[expected.name]!.values, expected.engineIndices) { values[index] = value }
        }
    }

    // MARK: Files

    public enum Format: String, CaseIterable, Sendable {
        case safetensors, npz
    }

    /// Writes the weights of `model` in `format` beside `path` and renames the file into place;
    /// returns its size in bytes.
    @discardableResult
    public static func write(_ model: VAE, format: Format, to path: String) throws -> Int {
        let file = try format == .npz ? npz(of: model) : safetensors(of: model)
        try writeAtomically(file, to: path)
        return file.count
    }

    /// The safetensors file of `model`: its PyTorch tensors, and its configuration in the metadata.
    public static func safetensors(of model: VAE) throws -> Data {
        Safetensors.encode(torchTensors(of: model), metadata: [configKey: try configJSON(model.config), "format": "pt"])
    }

    /// The .npz file of `model`: NAME.npy for each PyTorch tensor, and config.json.
    public static func npz(of model: VAE) throws -> Data {
        NumPyArray.npz(torchTensors(of: model), extraMembers: [("config.json", Data(try configJSON(model.config).utf8))])
    }

    private static func configJSON(_ config: ModelConfig) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(config), as: UTF8.self)
    }

    /// A model for up to `maxBatch` images with the weights of `path`: a run directory (its
    /// checkpoint), a checkpoint file, or a safetensors file with the configuration in its metadata.
    public static func loadModel(_ path: String, maxBatch: Int) throws -> VAE {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TrainingError("\(path): no such file or run directory")
        }
        // A run's newest intact checkpoint, as --resume would take.
        let file = isDirectory.boolValue ? try CheckpointPolicy.newestIntactCheckpoint(in: path).path : path
        guard let bytes = FileManager.default.contents(atPath: file) else {
            throw TrainingError("\(file): cannot read: \(String(cString: strerror(errno)))")
        }
        if bytes.starts(with: Checkpoint.magic) {
            let model = try VAE(config: Checkpoint.readInfo(from: file).config, maxBatch: maxBatch)
            _ = try Checkpoint.read(from: file, into: model, optimizer: Adam(parameterCount: model.parameters.count))
            return model
        }
        let (tensors, metadata) = try Safetensors.decode(bytes, path: file)
        guard let json = metadata[configKey] else {
            throw TrainingError("\(file): no model configuration (__metadata__ '\(configKey)'); save the file with "
                                + "metadata={'config': json.dumps(config)} (README, Export and import)")
        }
        let config: ModelConfig
        do {
            config = try JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8))
        } catch {
            throw TrainingError("\(file): __metadata__ '\(configKey)' is not a model configuration: \(json)")
        }
        let model: VAE
        do {
            model = try VAE(config: config, maxBatch: maxBatch)
        } catch {
            throw TrainingError("\(file): the model configuration in its metadata is invalid: \(error)")
        }
        try load(tensors, into: model, path: file)
        return model
    }

    // MARK: Import

    /// What `vae import` writes to the run's config.json.
    private struct ImportedRun: Codable {
        var model: ModelConfig
        var importedFrom: String
        var parameters: Int
        /// The values `vae train --resume` checks against its own flags.
        var seed: UInt64
        var batch: Int
        var leaf: Int
    }

    /// Makes `runDirectory` a run that `vae train --resume` continues from the weights of `path`
    /// with a fresh optimiser: a checkpoint at step 0 with zero Adam moments, config.json, and an
    /// empty metrics.jsonl (so that `vae train` without --resume refuses to start over it). The
    /// checkpoint records `seed`, `batch` and `leaf`, as a run started with those flags would.
    /// Nothing is written unless the weights load.
    public static func importRun(from path: String, to runDirectory: String, seed: UInt64, batch: Int, leaf: Int) throws {
        guard batch > 0 else { throw TrainingError("--batch must be positive, got \(batch)") }
        try StepRunner.validateLeaf(leaf)
        let model = try loadModel(path, maxBatch: 1)
        var options = TrainingOptions(data: "", runDirectory: runDirectory)
        options.seed = seed
        options.batch = batch
        let checkpoint = runDirectory + "/" + CheckpointPolicy.fileName(step: 0)
        let metrics = runDirectory + "/metrics.jsonl", config = runDirectory + "/config.json"
        let files = FileManager.default
        guard !files.fileExists(atPath: config) && !files.fileExists(atPath: metrics) else {
            throw TrainingError("\(runDirectory) already holds a run; import into a new --out")
        }
        do {
            try files.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
        } catch {
            throw TrainingError("\(runDirectory): cannot create the run directory: \(error.localizedDescription)")
        }
        let info = CheckpointInfo(config: model.config, step: 0, seed: seed, batch: batch, leaf: leaf,
                                  learningRate: options.learningRate, parameters: Checkpoint.describe(model.parameters))
        try Checkpoint.write(info, model: model, optimizer: Adam(parameterCount: model.parameters.count), to: checkpoint)
        let run = ImportedRun(model: model.config, importedFrom: path, parameters: model.parameters.count,
                              seed: seed, batch: batch, leaf: leaf)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(run), to: config)
        try writeAtomically(Data(), to: metrics)
    }
}

/// For each value of `array.reshape(shape).transpose(axes)` in row-major order, its index in the
/// row-major `array` (an odometer over the transposed shape, walking the original's strides).
func transposedIndices(shape: [Int], axes: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    for axis in stride(from: shape.count - 2, through: 0, by: -1) { strides[axis] = strides[axis + 1] * shape[axis + 1] }
    let sizes = axes.map { shape[$0] }, steps = axes.map { strides[$0] }
    let count = shape.reduce(1, *)
    var indices = [Int](repeating: 0, count: count)
    var position = [Int](repeating: 0, count: shape.count)
    var index = 0
    for i in 0..<count {
        indices[i] = index
        var axis = shape.count - 1
        while axis >= 0 {
            position[axis] += 1
            index += steps[axis]
            if position[axis] < sizes[axis] { break }
            index -= steps[axis] * sizes[axis]
            position[axis] = 0
            axis -= 1
        }
    }
    return indices
}
