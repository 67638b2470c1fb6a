import Foundation
import Testing
import VAEData
import VAETraining

/// The synthetic faces' side.
private let faceSide = 32

/// 200 synthetic faceSide x faceSide faces and a run trained on them for 100 steps with beta 0.01
/// (a second in a release build: its reconstructions and edits depend visibly on the input and on
/// z, which a few steps at beta 1 or an untrained model's hardly do). Made once for all the face
/// tests of the process (left in the temporary directory): made for each of the dozen tests and
/// cases, they took over five minutes in a debug build.
private struct FaceRun: Sendable {
    let directory: ScratchDirectory
    let data: String, run: String

    struct Failed: Error, CustomStringConvertible { let description: String }

    init() throws {
        directory = try ScratchDirectory()
        data = directory.file("faces.vaeds")
        run = directory.file("run")
        for arguments in [["synth", "--count", "200", "--size", "\(faceSide)", "--out", data],
                          ["train", "--data", data, "--out", run, "--max-steps", "100", "--batch", "16", "--epochs", "10",
                           "--beta", "0.01"]] {
            let result = try runCommand(vaeBinary, arguments)
            guard result.status == 0 else { throw Failed(description: "vae \(arguments[0]) failed: \(result.error)") }
        }
    }
}

private let sharedFaceRun = Result { try FaceRun() }

/// The face commands (`vae reconstruct`, `sample`, `traverse`, `attributes`, `edit`, `morph`, and
/// `judge`'s bad inputs)
/// through the real binary, on the faces and run of FaceRun.
@Suite(.timeLimit(.minutes(5))) struct FaceTests {
    /// This test's outputs.
    let scratch: ScratchDirectory
    let data: String, run: String
    /// The synthetic faces' side, and a grid cell's (a 2-pixel border between images).
    let side = faceSide, cell = faceSide + 2

    init() throws {
        scratch = try ScratchDirectory()
        let shared = try sharedFaceRun.get()
        data = shared.data
        run = shared.run
    }

    @discardableResult
    func vae(_ arguments: [String]) throws -> CommandResult {
        let result = try runCommand(vaeBinary, arguments)
        try #require(result.status == 0, "vae \(arguments.joined(separator: " ")) failed: \(result.error)")
        return result
    }

    /// The pixel size of a grid of `rows` x `columns` images, with labels of `labelCharacters` beside the rows.
    func gridSize(rows: Int, columns: Int, labelCharacters: Int = 0) -> (width: Int, height: Int) {
        let labels = labelCharacters == 0 ? 0 : labelCharacters * 6 + 4
        return (labels + columns * cell + 2, rows * cell + 2)
    }

    func pngSize(_ path: String) throws -> (width: Int, height: Int) {
        let image = try readPNG(path: path)
        return (image.width, image.height)
    }

    /// The RGB bytes of the image in grid cell (row, column) of a PNG, `left` pixels of labels aside.
    func cellPixels(_ path: String, row: Int, column: Int, left: Int = 0) throws -> [UInt8] {
        let image = try readPNG(path: path)
        let x0 = left + 2 + column * cell, y0 = 2 + row * cell
        var pixels: [UInt8] = []
        for y in y0..<(y0 + side) {
            let start: Int = (y * image.width + x0) * 3
            pixels += image.rgb[start..<(start + side * 3)]
        }
        return pixels
    }

    /// The label margin (`left` pixels wide) beside grid row `row` of a PNG.
    func labelPixels(_ path: String, row: Int, left: Int) throws -> [UInt8] {
        let image = try readPNG(path: path)
        var pixels: [UInt8] = []
        for y in (2 + row * cell)..<(2 + row * cell + side) {
            pixels += image.rgb[(y * image.width * 3)..<((y * image.width + left) * 3)]
        }
        return pixels
    }

    func largestDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
        zip(a, b).map { abs(Int($0) - Int($1)) }.max() ?? 0
    }

    /// Inputs above reconstructions, two pairs of rows for 10 images 8 wide; the printed mean loss
    /// over the valid partition with the run's seed and batch is the run's own validation line.
    @Test func reconstructDrawsPairsAndPrintsTrainingsValidationLoss() throws {
        let out = scratch.file("recon.png")
        let result = try vae(["reconstruct", run, "--data", data, "--partition", "valid", "--batch", "16",
                              "--count", "10", "--out", out])
        #expect(try pngSize(out) == gridSize(rows: 4, columns: 8))

        let metrics = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        let line = try #require(metrics.split(separator: "\n").last { $0.contains("\"partition\":\"valid\"") })
        let validation = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        for (printed, key) in [("loss ", "loss"), ("reconstruction ", "recon"), ("KL ", "kl")] {
            let after = try #require(result.output.range(of: printed), "no '\(printed)' in: \(result.output)")
            let value = try #require(Double(result.output[after.upperBound...].prefix { "0123456789.-".contains($0) }))
            let expected = try #require(validation[key] as? Double)
            #expect(abs(value - expected) < 1e-3, "\(key): printed \(value), training's validation \(expected)")
        }
    }

    /// Samples at the run's seed and temperature 1 are the grid training wrote (16 faces, 8 wide).
    @Test func sampleDrawsTrainingsSamples() throws {
        let out = scratch.file("samples.png"), narrow = scratch.file("narrow.png")
        try vae(["sample", run, "--count", "16", "--seed", "1", "--out", out])
        let trainings = run + "/samples-epoch010.png"
        #expect(try pngSize(out) == pngSize(trainings))
        #expect(largestDifference(try readPNG(path: out).rgb, try readPNG(path: trainings).rgb) <= 1)
        try vae(["sample", run, "--count", "7", "--columns", "3", "--temperature", "0.5", "--seed", "4", "--out", narrow])
        #expect(try pngSize(narrow) == gridSize(rows: 3, columns: 3))
    }

    /// A row per dimension with "z0" and "z17" beside them (the labels' margin is in the width),
    /// whose ends differ; --dims auto gives 8 rows, or --count.
    @Test func traverseDrawsARowPerDimension() throws {
        let out = scratch.file("traverse.png"), auto = scratch.file("auto.png")
        try vae(["traverse", run, "--data", data, "--image", "3", "--dims", "0,17", "--range", "-3,3", "--steps", "7",
                 "--out", out])
        #expect(try pngSize(out) == gridSize(rows: 2, columns: 7, labelCharacters: 3))
        let left = 3 * 6 + 4
        #expect(try cellPixels(out, row: 0, column: 0, left: left) != cellPixels(out, row: 0, column: 6, left: left))
        let result = try vae(["traverse", run, "--data", data, "--image", "3", "--dims", "auto", "--out", auto])
        #expect(result.output.contains("dimensions by KL"))
        let size = try pngSize(auto)
        #expect(size.height == gridSize(rows: 8, columns: 7).height)
        try vae(["traverse", run, "--data", data, "--image", "3", "--dims", "auto", "--count", "3", "--out", auto])
        #expect(try pngSize(auto).height == gridSize(rows: 3, columns: 7).height)
    }

    /// One process and two MPI ranks give the same directions within 1e-5, and the same counts,
    /// which add up to the training partition (160 of 200 synthetic faces).
    @Test func attributesAgreeOnOneAndTwoRanks() throws {
        let alone = scratch.file("alone.npy"), pair = scratch.file("pair.npy")
        let result = try vae(["attributes", run, "--data", data, "--out", alone])
        #expect(result.output.contains("Smiling: norm"))
        let mpi = try runMPI(ranks: 2, ["attributes", run, "--data", data, "--out", pair])
        try #require(mpi.status == 0, "mpirun: \(mpi.error)")

        let (shape, one) = try NumPyArray.read(path: alone)
        let (pairShape, two) = try NumPyArray.read(path: pair)
        #expect(shape == [SyntheticFaces.attributeNames.count, 128] && pairShape == shape)
        #expect(one.contains { $0 != 0 })
        #expect(zip(one, two).allSatisfy { abs($0 - $1) <= 1e-5 })
        let first = try AttributeDirections.read(from: alone, latent: 128)
        let second = try AttributeDirections.read(from: pair, latent: 128)
        #expect(first.attributes.map(\.name) == SyntheticFaces.attributeNames)
        #expect(first.attributes.map(\.positives) == second.attributes.map(\.positives))
        #expect(first.attributes.allSatisfy { $0.positives + $0.negatives == 160 })
    }

    /// A row per attribute with its name beside it; strength 0 is the image's reconstruction from
    /// mu (as `vae reconstruct` draws it, and unlike the next image's), other strengths differ from
    /// it; directions from a file give the same grid as directions computed on the fly. Morph: a
    /// row of --steps faces from the first image's reconstruction to the last's (from the run's
    /// weights exported as safetensors).
    @Test func editMovesAlongDirectionsAndMorphInterpolates() throws {
        let edit = scratch.file("edit.png"), fromFile = scratch.file("from-file.png")
        let recon = scratch.file("recon.png"), directions = scratch.file("directions.npy")
        let editing = ["edit", run, "--data", data, "--image", "3", "--attribute", "Smiling", "--attribute", "Eyeglasses",
                       "--strengths", "-2,0,2"]
        try vae(editing + ["--out", edit])
        let left = "Eyeglasses".count * 6 + 4
        #expect(try pngSize(edit) == gridSize(rows: 2, columns: 3, labelCharacters: "Eyeglasses".count))
        let labels = try (0..<2).map { try labelPixels(edit, row: $0, left: left) }
        #expect(labels[0].contains(220) && labels[0] != labels[1], "each row has its own light grey name")
        try vae(["reconstruct", run, "--data", data, "--partition", "all", "--count", "5", "--out", recon])
        let reconstruction = try cellPixels(recon, row: 1, column: 3)
        #expect(largestDifference(try cellPixels(recon, row: 1, column: 4), reconstruction) > 2)
        for row in 0..<2 {
            #expect(largestDifference(try cellPixels(edit, row: row, column: 1, left: left), reconstruction) <= 1)
            #expect(largestDifference(try cellPixels(edit, row: row, column: 2, left: left), reconstruction) > 2)
        }
        try vae(["attributes", run, "--data", data, "--out", directions])
        try vae(editing + ["--directions", directions, "--out", fromFile])
        #expect(largestDifference(try readPNG(path: edit).rgb, try readPNG(path: fromFile).rgb) <= 1)

        let morph = scratch.file("morph.png"), exported = scratch.file("model.safetensors")
        try vae(["export", run, "--out", exported])
        try vae(["morph", exported, "--data", data, "--from", "3", "--to", "4", "--steps", "6", "--out", morph])
        #expect(try pngSize(morph) == gridSize(rows: 1, columns: 6))
        #expect(largestDifference(try cellPixels(morph, row: 0, column: 0), reconstruction) <= 1)
        #expect(largestDifference(try cellPixels(morph, row: 0, column: 5), try cellPixels(recon, row: 1, column: 4)) <= 1)
    }

    /// Each bad input ends with one line on standard error, non-zero status, and no file written.
    @Test(arguments: [
        (["edit", "RUN", "--data", "DATA", "--image", "200", "--attribute", "Smiling"], "--image 200: "),
        (["traverse", "RUN", "--data", "DATA", "--image", "5000", "--dims", "0"], "--image 5000: "),
        (["morph", "RUN", "--data", "DATA", "--from", "0", "--to", "999"], "--to 999: "),
        (["edit", "RUN", "--data", "DATA", "--image", "3", "--attribute", "Smile"],
         "unknown attribute 'Smile'; the attributes are Blond_Hair, Eyeglasses, Male, Pale_Skin, Smiling"),
        (["traverse", "RUN", "--data", "DATA", "--image", "3", "--dims", "0,128"], "'128' is not a latent dimension from 0 to 127"),
        (["sample", "EMPTY"], "no checkpoint"),
        (["attributes", "EMPTY", "--data", "DATA"], "no checkpoint"),
        (["judge", "RUN", "--data", "DATA", "--attribute", "Smile"],
         "unknown attribute 'Smile'; the attributes are Blond_Hair, Eyeglasses, Male, Pale_Skin, Smiling"),
        (["judge", "RUN", "--data", "DATA", "--partition", "train"], "--partition train: expected valid, test or heldout"),
        (["judge", "EMPTY", "--data", "DATA"], "no checkpoint"),
    ])
    func badInputsGetOneLine(arguments: [String], message: String) throws {
        let empty = scratch.file("empty"), out = scratch.file("out.png")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let substituted = arguments.map { ["RUN": run, "DATA": data, "EMPTY": empty][$0] ?? $0 } + ["--out", out]
        let result = try runCommand(vaeBinary, substituted)
        #expect(result.status != 0)
        #expect(result.error.hasPrefix("error: ") && result.error.contains(message), "stderr: \(result.error)")
        #expect(result.error.split(separator: "\n").count == 1, "stderr: \(result.error)")
        #expect(!FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: out + ".json"))
    }
}
