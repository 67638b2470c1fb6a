import Foundation
import Testing
import VAEEngine
import VAETraining

/// The NumPy reference reader of exported files, in this checkout.
let numpyReference = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Reference/vae_numpy.py").path

/// CI sets CI=true: there the tests that need python3 and NumPy must run (and fail without them).
let runningInCI = ProcessInfo.processInfo.environment["CI"] == "true"

/// A python3 that imports NumPy: the one first on PATH, or Debian's, for which launch/setup.sh
/// installs python3-numpy (a PATH may lead to another Python, without NumPy).
let pythonWithNumPy = ["python3", "/usr/bin/python3"].first { python in
    (try? runCommand("/usr/bin/env", [python, "-c", "import numpy"], timeLimit: 60).status == 0) ?? false
}

/// Skips a test, saying why, when python3 or NumPy is missing, except under CI.
let needsPythonWithNumPy = Testing.ConditionTrait.enabled(
    if: pythonWithNumPy != nil || runningInCI, "python3 with NumPy not found: install python3-numpy to run this test")

/// `vae export`, `import`, `encode` and `decode` through the real binary.
@Suite(.timeLimit(.minutes(5))) struct ExportTests {
    let scratch: ScratchDirectory

    init() throws { scratch = try ScratchDirectory() }

    @discardableResult
    func vae(_ arguments: [String]) throws -> CommandResult {
        let result = try runCommand(vaeBinary, arguments)
        try #require(result.status == 0, "vae \(arguments.joined(separator: " ")) failed: \(result.error)")
        return result
    }


    func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }

    /// export → import → export gives the same bytes; the imported checkpoint holds the same
    /// parameters bit for bit, a fresh optimiser at step 0 and the --seed/--batch given; `vae train
    /// --resume` trains from it, refuses other --batch values, and `vae train` without --resume
    /// refuses to start over it.
    @Test func exportImportRoundTripsAndResumes() throws {
        let data = scratch.file("faces.vaeds"), run = scratch.file("run")
        try vae(["synth", "--count", "300", "--out", data])
        try vae(["train", "--data", data, "--out", run, "--max-steps", "2", "--batch", "16", "--epochs", "1"])
        let exported = scratch.file("model.safetensors"), again = scratch.file("again.safetensors")
        let imported = scratch.file("imported")
        try vae(["export", run, "--out", exported])
        try vae(["import", exported, "--out", imported, "--batch", "16", "--seed", "3"])
        try vae(["export", imported, "--out", again])
        #expect(try Data(contentsOf: URL(fileURLWithPath: exported)) == Data(contentsOf: URL(fileURLWithPath: again)))

        let newest = { (run: String) in try CheckpointPolicy.newestIntactCheckpoint(in: run).path }
        let original = try newest(run), checkpoint = try newest(imported)
        #expect(bits(try checkpointArray(.parameters, in: checkpoint)) == bits(try checkpointArray(.parameters, in: original)))
        #expect(try checkpointArray(.firstMoment, in: checkpoint).allSatisfy { $0 == 0 })
        let info = try Checkpoint.readInfo(from: checkpoint)
        #expect(info.step == 0 && info.seed == 3 && info.batch == 16)

        let train = ["train", "--resume", "--data", data, "--out", imported, "--max-steps", "2", "--epochs", "1", "--seed", "3"]
        let otherBatch = try runCommand(vaeBinary, train + ["--batch", "32"])
        #expect(otherBatch.status != 0 && otherBatch.error.contains("--batch (16, now 32)"),
                "stderr: \(otherBatch.error)")
        let fresh = try runCommand(vaeBinary, ["train", "--data", data, "--out", imported, "--batch", "16"])
        #expect(fresh.status != 0 && fresh.error.contains("already holds a run"), "stderr: \(fresh.error)")
        try vae(train + ["--batch", "16"])
        let trained = try newest(imported)
        #expect(try Checkpoint.readInfo(from: trained).step == 2)
        #expect(try checkpointArray(.parameters, in: trained) != checkpointArray(.parameters, in: original))
    }

    /// The NumPy reader (Tests/Reference/vae_numpy.py) parses an exported file itself, runs the
    /// model in float64 and matches `vae encode` and `vae decode` within 1e-4; the .npz holds the
    /// same tensors. The model has Glorot weights and biases of ±0.1 (a trained one's are near zero
    /// after a few steps, so that a misplaced bias would hide), and goes through `vae import` and
    /// `vae export`, which give its file back byte for byte. The seed preset, and a model with
    /// other channels, latent size and decoder widths (so dec_fc3) on 16x16 images.
    @Test(needsPythonWithNumPy, arguments: [
        ModelConfig(),
        ModelConfig(imageSize: 16, encoderChannels: [5, 7], latent: 6, decoderWidths: [20, 12]),
    ])
    func numpyReferenceMatchesTheEngine(config: ModelConfig) throws {
        let python = try #require(pythonWithNumPy, "python3 with NumPy not found: CI=true requires it (apt-get install python3-numpy)")
        let model = try VAE(config: config, maxBatch: 1)
        model.parameters.initialize(seed: 5)
        for parameter in model.parameters.parameters where parameter.name.hasSuffix("/bias") {
            for i in 0..<parameter.count { parameter.value[i] = 0.1 * sin(Float(parameter.offset + i)) }
        }
        let made = scratch.file("made.safetensors"), exported = scratch.file("exported.safetensors")
        let npz = scratch.file("exported.npz"), data = scratch.file("faces.vaeds")
        try WeightsFile.safetensors(of: model).write(to: URL(fileURLWithPath: made))
        try vae(["import", made, "--out", scratch.file("run")])
        try vae(["export", scratch.file("run"), "--out", exported])
        try vae(["export", scratch.file("run"), "--out", npz, "--format", "npz"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: made)) == Data(contentsOf: URL(fileURLWithPath: exported)))
        try vae(["synth", "--count", "20", "--size", "\(config.imageSize)", "--out", data])
        let result = try runCommand("/usr/bin/env", [python, numpyReference, vaeBinary, exported, data, scratch.path, npz],
                                    timeLimit: 120)
        #expect(result.status == 0, "vae_numpy.py: \(result.error)\n\(result.output)")
        #expect(result.output.contains("decoded images") && result.output.contains("npz: "), "\(result.output)")
    }

    /// A small model's safetensors file, decoded, to make bad files from.
    func smallModelFile() throws -> (tensors: [NamedTensor], metadata: [String: String], bytes: Data) {
        let model = try VAE(config: ModelConfig(imageSize: 16, encoderChannels: [4, 6], latent: 3, decoderWidths: [8]),
                            maxBatch: 1)
        model.parameters.initialize(seed: 1)
        let bytes = try WeightsFile.safetensors(of: model)
        let (tensors, metadata) = try Safetensors.decode(bytes, path: "test")
        return (tensors, metadata, bytes)
    }

    /// Each bad file gives one line naming the problem (and the tensor), a non-zero exit, and no
    /// output: `vae import` creates no run directory, `vae export` no file.
    @Test func badWeightFilesAreRefusedWithOneLine() throws {
        let (tensors, metadata, valid) = try smallModelFile()
        func replacing(_ name: String, with tensor: NamedTensor?) -> Data {
            let changed = tensors.compactMap { $0.name == name ? tensor : $0 }
            return Safetensors.encode(changed, metadata: metadata)
        }
        let muWeight = tensors.first { $0.name == "enc_mu.weight" }!
        var lengthSixteen = Data([16, 0, 0, 0, 0, 0, 0, 0])
        lengthSixteen.append(Data("{not json at all".utf8))
        let dtypeField = Data("\"enc_conv2.weight\":{\"dtype\":\"F32\"".utf8)
        let cases: [(String, Data, String)] = [
            ("text", Data("hello, world\n".utf8), "not a safetensors file"),
            ("empty", Data(), "not a safetensors file"),
            ("length-only", Data([8, 0, 0, 0, 0, 0, 0, 0]), "truncated: the header needs 8 bytes"),
            ("not-json", lengthSixteen, "not a safetensors file"),
            ("truncated", valid.dropLast(100), "truncated: tensor 'dec_deconv2.weight'"),
            ("truncated-header", valid.prefix(60), "truncated: the header needs"),
            ("missing", replacing("dec_fc2.weight", with: nil), "missing tensor 'dec_fc2.weight' (shape [96, 8])"),
            ("shape", replacing("enc_mu.weight", with: NamedTensor(name: "enc_mu.weight", shape: [6, 48], values: muWeight.values)),
             "tensor 'enc_mu.weight' has shape [6, 48], expected [3, 96]"),
            ("dtype", valid.replacing(dtypeField, with: Data("\"enc_conv2.weight\":{\"dtype\":\"F16\"".utf8)),
             "tensor 'enc_conv2.weight' has dtype F16"),
            ("extra", Safetensors.encode(tensors + [NamedTensor(name: "extra.weight", shape: [1], values: [0])], metadata: metadata),
             "unexpected tensor 'extra.weight'"),
            ("no-config", Safetensors.encode(tensors, metadata: [:]), "no model configuration"),
        ]
        #expect(valid.firstRange(of: dtypeField) != nil)
        for (name, bytes, expected) in cases {
            let file = scratch.file("\(name).safetensors")
            try bytes.write(to: URL(fileURLWithPath: file))
            let runDirectory = scratch.file("imported-\(name)"), exported = scratch.file("exported-\(name).npz")
            for (command, output) in [(["import", file, "--out", runDirectory], runDirectory),
                                      (["export", file, "--out", exported, "--format", "npz"], exported)] {
                let result = try runCommand(vaeBinary, command)
                let lines = result.error.split(separator: "\n")
                #expect(result.status != 0, "\(name): vae \(command[0]) succeeded")
                #expect(lines.count == 1 && lines[0].hasPrefix("error: \(file): ") && lines[0].contains(expected),
                        "\(name): vae \(command[0]) said: \(result.error)")
                #expect(!FileManager.default.fileExists(atPath: output), "\(name): vae \(command[0]) wrote \(output)")
            }
        }
    }

    /// `vae decode` refuses latents of another dtype or size with one line, and writes nothing;
    /// the float32 array the bad ones were made from decodes.
    @Test func badLatentsAreRefusedWithOneLine() throws {
        let model = scratch.file("small.safetensors")
        try smallModelFile().bytes.write(to: URL(fileURLWithPath: model))
        let float32 = NumPyArray.encode([Float](repeating: 0.5, count: 6), shape: [2, 3])
        let cases: [(String, Data, String)] = [
            ("float64", float32.replacing(Data("'<f4'".utf8), with: Data("'<f8'".utf8)), "dtype '<f8', expected float32"),
            ("latent-size", NumPyArray.encode([Float](repeating: 0.5, count: 6), shape: [3, 2]), "shape [3, 2], expected (N, 3)"),
            ("truncated", float32.dropLast(4), "truncated"),
            ("not-npy", Data("z".utf8), "not a NumPy .npy file"),
        ]
        let missing = try runCommand(vaeBinary, ["decode", model, "--latents", scratch.file("none.npy"),
                                                 "--out", scratch.file("x.npy")])
        #expect(missing.status != 0 && missing.error.contains("none.npy: cannot read"), "\(missing.error)")
        for (name, bytes, expected) in cases {
            let latents = scratch.file("\(name).npy"), images = scratch.file("images-\(name).npy")
            try bytes.write(to: URL(fileURLWithPath: latents))
            let result = try runCommand(vaeBinary, ["decode", model, "--latents", latents, "--out", images])
            let lines = result.error.split(separator: "\n")
            #expect(result.status != 0 && lines.count == 1 && lines[0].contains(expected), "\(name): \(result.error)")
            #expect(!FileManager.default.fileExists(atPath: images), "\(name): wrote \(images)")
        }
        let valid = scratch.file("valid.npy")
        try float32.write(to: URL(fileURLWithPath: valid))
        let decoded = try vae(["decode", model, "--latents", valid, "--out", scratch.file("images.npy")])
        #expect(decoded.output.contains("shape (2, 16, 16, 3)"), "\(decoded.output)")
    }
}
