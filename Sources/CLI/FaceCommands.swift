import ArgumentParser
import Foundation
import VAECluster
import VAEData
import VAEEngine
import VAETraining

// The face commands: grids of reconstructions, samples, latent traversals, attribute edits and
// morphs, and the attribute directions they use. Images are named by their position in the
// dataset file (0 to count − 1), as in 'vae encode --indices'.

/// Grids are this many images wide unless --columns says otherwise.
private let defaultColumns = 8
/// `--dims auto` ranks the latent dimensions by their KL over at most this many images.
private let automaticDimensionImages = 1000

/// The MODEL argument and --data option of the commands that read images.
struct ModelAndData: ParsableArguments {
    @Argument(help: modelHelp)
    var model: String

    @Option(help: ArgumentHelp("Dataset file from 'vae prepare' or 'vae synth'.", valueName: "FILE.vaeds"))
    var data: String

    /// The dataset and the model for up to `modelBatch` images, which must take the dataset's images.
    func load() throws -> (Dataset, VAE) {
        let dataset = try Dataset(path: data, verifyChecksum: false)
        let vae = try loadModel(model, for: dataset, maxBatch: modelBatch)
        try requireRGB(vae)
        return (dataset, vae)
    }
}

/// The grids are RGB images.
private func requireRGB(_ model: VAE) throws {
    guard model.config.imageChannels == 3 else {
        throw ValidationError("the grids are RGB images; the model's have \(model.config.imageChannels) channel(s)")
    }
}

/// The image at position `id` of `dataset`, named by `flag` in the error if there is none.
private func imageIndex(_ id: Int, flag: String, in dataset: Dataset) throws -> Int32 {
    guard id >= 0 && id < dataset.count else {
        throw ValidationError("\(flag) \(id): \(dataset.path) has images 0 to \(dataset.count - 1)")
    }
    return Int32(id)
}

/// The images of `partition` (train, valid, test, or all) of `dataset`, of which there must be some.
func partitionImages(_ partition: String, of dataset: Dataset) throws -> [Int32] {
    let images = dataset.indices(in: Partition(name: partition))
    guard !images.isEmpty else { throw ValidationError("\(dataset.path) has no images in partition \(partition)") }
    return images
}

/// The directions read from --directions (`read`), or else computed over the training partition
/// by every rank together, as 'vae attributes' does.
func attributeDirections(_ read: AttributeDirections?, model: VAE, dataset: Dataset,
                         communicator: Communicator) throws -> AttributeDirections {
    try read ?? collectively(communicator) {
        try AttributeDirections.compute(model: model, dataset: dataset, indices: try partitionImages("train", of: dataset),
                                        partition: "train", communicator: communicator)
    }
}

/// Refuses a --partition other than train, valid, test or all.
func validatePartition(_ partition: String) throws {
    guard partition == "all" || Partition(name: partition) != nil else {
        throw ValidationError("--partition \(partition): expected train, valid, test or all")
    }
}

/// Comma-separated numbers, such as "-2,-1,0,1,2".
private func parseNumbers(_ text: String, flag: String) throws -> [Float] {
    try text.split(separator: ",", omittingEmptySubsequences: false).map {
        guard let value = Float($0.trimmingCharacters(in: .whitespaces)), value.isFinite else {
            throw ValidationError("\(flag) \(text): '\($0)' is not a number")
        }
        return value
    }
}

/// Decodes `latents` and draws them, `columns` to a row, with `rowLabels` beside the rows.
private func drawDecoded(_ latents: [Float], model: VAE, columns: Int, rowLabels: [String] = [], to path: String) throws {
    let images = LatentSpace.decode(latents, model: model)
    try images.withUnsafeBufferPointer {
        try writeImageGrid(path: path, pixels: $0.baseAddress!, count: latents.count / model.config.latent,
                           imageSize: model.config.imageSize, columns: columns, rowLabels: rowLabels)
    }
}

/// Runs `body` on every rank of the job (or alone), ending it with one line on any error.
func runOnEveryRank(_ body: (Communicator) throws -> Void) {
    let communicator = Failure.joinJob()
    do {
        try body(communicator)
    } catch {
        Failure.exitReporting(error, communicator: communicator)
    }
    communicator.finish()
}

struct Reconstruct: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw images above their reconstructions, and print the mean loss over a partition.",
        discussion: """
            Draws the first --count images of --partition, a row of them above the row of their \
            reconstructions (decoded from mu), and prints the mean per-image loss over the whole \
            partition, as training's validation computes it: reconstruction = 0.5·Σ(x − x̂)² and \
            KL = 0.5·Σ(exp(logvar) + mu² − logvar − 1), with x̂ decoded from z = mu + σ·eps, the \
            noise drawn as training draws it for evaluation from --seed in batches of --batch. \
            With a run's --seed and --batch and --partition valid it prints the numbers of the \
            run's last validation line (metrics.jsonl) for the same weights.

            Example:
              vae reconstruct runs/faces --data faces.vaeds --partition test --count 16 --out recon.png
            """)

    @OptionGroup var inputs: ModelAndData

    @Option(help: ArgumentHelp("train, valid, test or all.", valueName: "partition"))
    var partition = "test"

    @Option(help: ArgumentHelp("How many images to draw.", valueName: "N"))
    var count = 8

    @Option(help: ArgumentHelp("Images per row.", valueName: "n"))
    var columns = defaultColumns

    @Option(help: "The seed of the evaluation noise (the run's --seed).")
    var seed: UInt64 = 1

    @Option(help: "The batch size the noise is keyed by (the run's --batch).")
    var batch = 64

    @Option(name: .customLong("out"), help: ArgumentHelp("The PNG file to write.", valueName: "FILE.png"))
    var outputPath: String

    func validate() throws {
        try validatePartition(partition)
        guard count > 0 && columns > 0 && batch > 0 else { throw ValidationError("--count, --columns and --batch must be positive") }
    }

    func run() throws {
        runOnEveryRank { communicator in
            let (dataset, vae, images) = try collectively(communicator) { () throws -> (Dataset, VAE, [Int32]) in
                let (dataset, vae) = try inputs.load()
                return (dataset, vae, try partitionImages(partition, of: dataset))
            }
            let loss = evaluationLoss(model: vae, dataset: dataset, indices: images, batch: batch, seed: seed,
                                      communicator: communicator,
                                      images: FloatBuffer(count: vae.maxBatch * vae.config.imageValues))
            guard communicator.isRoot else { return }
            try drawReconstructions(Array(images.prefix(count)), dataset: dataset, model: vae)
            let means = loss.means(beta: vae.config.beta)
            print("partition \(partition), \(loss.images) images, mean per image: "
                  + String(format: "loss %.4f = reconstruction %.4f + beta %g × KL %.4f",
                           means.loss, means.reconstruction, vae.config.beta, means.kl)
                  + " (noise of --seed \(seed), --batch \(batch))")
            print("drew \(min(count, images.count)) images and their reconstructions to \(outputPath)")
        }
    }

    /// Rows of `columns` images, each above a row of their reconstructions from mu; the last pair
    /// of rows is padded with the background's grey.
    private func drawReconstructions(_ shown: [Int32], dataset: Dataset, model: VAE) throws {
        let values = model.config.imageValues
        let inputs = FloatBuffer(count: shown.count * values)
        dataset.loadFloats(shown, into: inputs.pointer)
        let reconstructions = LatentSpace.decode(LatentSpace.encode(shown, dataset: dataset, model: model).means, model: model)
        let background = [Float](repeating: 24 / 255, count: values)
        var grid: [Float] = []
        for first in stride(from: 0, to: shown.count, by: columns) {
            let row = first..<min(first + columns, shown.count)
            let padding = Array([[Float]](repeating: background, count: columns - row.count).joined())
            grid += UnsafeBufferPointer(start: inputs.pointer + first * values, count: row.count * values) + padding
            grid += reconstructions[(first * values)..<(row.upperBound * values)] + padding
        }
        try grid.withUnsafeBufferPointer {
            try writeImageGrid(path: outputPath, pixels: $0.baseAddress!, count: grid.count / values,
                               imageSize: model.config.imageSize, columns: columns)
        }
    }
}

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw faces decoded from random latents.",
        discussion: """
            Decodes z ~ N(0, T²I) for T = --temperature; z of image i is row i of the sampling \
            stream of --seed, as in the samples-*.png grids that training writes (with the run's \
            --seed and T = 1 the first images are the same).

            Example:
              vae sample runs/faces --count 32 --temperature 0.8 --seed 7 --out samples.png
            """)

    @Argument(help: modelHelp)
    var model: String

    @Option(help: ArgumentHelp("How many faces.", valueName: "N"))
    var count = 16

    @Option(help: ArgumentHelp("The standard deviation of the latents.", valueName: "T"))
    var temperature: Float = 1

    @Option(help: "The seed of the latents.")
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Images per row.", valueName: "n"))
    var columns = defaultColumns

    @Option(name: .customLong("out"), help: ArgumentHelp("The PNG file to write.", valueName: "FILE.png"))
    var outputPath: String

    func validate() throws {
        guard count > 0 && columns > 0 else { throw ValidationError("--count and --columns must be positive") }
        guard temperature >= 0 && temperature.isFinite else { throw ValidationError("--temperature \(temperature): expected 0 or more") }
    }

    func run() throws {
        let vae = try WeightsFile.loadModel(model, maxBatch: modelBatch)
        try requireRGB(vae)
        let latents = LatentSpace.samples(count: count, latent: vae.config.latent, temperature: temperature, seed: seed)
        try drawDecoded(latents, model: vae, columns: columns, to: outputPath)
        print("drew \(count) faces (temperature \(temperature), seed \(seed)) to \(outputPath)")
    }
}

struct Traverse: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw a face as single latent coordinates sweep a range, one row per dimension.",
        discussion: """
            Row d sets coordinate d of the image's mu to each of --steps values evenly spaced over \
            --range, holding the others; the dimension's number is written beside its row. \
            --dims auto takes the --count dimensions with the largest KL from the prior, averaged \
            over the first \(automaticDimensionImages) images of --partition (the dimensions the \
            model uses most), largest first.

            Examples:
              vae traverse runs/faces --data faces.vaeds --image 12 --dims 0,5,9 --out t.png
              vae traverse runs/faces --data faces.vaeds --image 12 --dims auto --count 4 --range -2,2 --out t.png
            """)

    @OptionGroup var inputs: ModelAndData

    @Option(help: ArgumentHelp("The image's position in the dataset file.", valueName: "ID"))
    var image: Int

    @Option(help: ArgumentHelp("Latent dimensions (from 0), comma-separated, or auto.", valueName: "d1,d2,...|auto"))
    var dims: String

    @Option(parsing: .unconditional, help: ArgumentHelp("The values each coordinate takes.", valueName: "low,high"))
    var range = "-3,3"

    @Option(help: ArgumentHelp("Values per row.", valueName: "n"))
    var steps = 7

    @Option(help: ArgumentHelp("With --dims auto: how many dimensions.", valueName: "n"))
    var count = 8

    @Option(help: ArgumentHelp("With --dims auto: train, valid, test or all.", valueName: "partition"))
    var partition = "all"

    @Option(name: .customLong("out"), help: ArgumentHelp("The PNG file to write.", valueName: "FILE.png"))
    var outputPath: String

    func validate() throws {
        try validatePartition(partition)
        guard steps >= 2 else { throw ValidationError("--steps \(steps): expected at least 2") }
        guard count > 0 else { throw ValidationError("--count \(count): expected at least 1") }
        guard try parseNumbers(range, flag: "--range").count == 2 else { throw ValidationError("--range \(range): expected low,high") }
    }

    func run() throws {
        let (dataset, vae) = try inputs.load()
        let index = try imageIndex(image, flag: "--image", in: dataset)
        let latent = vae.config.latent
        let dimensions: [Int]
        if dims == "auto" {
            let codes = LatentSpace.encode(Array(try partitionImages(partition, of: dataset).prefix(automaticDimensionImages)),
                                           dataset: dataset, model: vae)
            let kl = LatentSpace.dimensionKL(means: codes.means, logVariances: codes.logVariances, latent: latent)
            dimensions = LatentSpace.mostInformative(kl, count: count)
            print("dimensions by KL: " + dimensions.map { String(format: "%d (%.3f)", $0, kl[$0]) }.joined(separator: ", "))
        } else {
            dimensions = try dims.split(separator: ",", omittingEmptySubsequences: false).map {
                guard let d = Int($0.trimmingCharacters(in: .whitespaces)), d >= 0 && d < latent else {
                    throw ValidationError("--dims: '\($0)' is not a latent dimension from 0 to \(latent - 1), or auto")
                }
                return d
            }
        }
        let bounds = try parseNumbers(range, flag: "--range")
        let mean = LatentSpace.encode([index], dataset: dataset, model: vae).means
        let latents = LatentSpace.traversal(of: mean, dimensions: dimensions,
                                            values: LatentSpace.evenlySpaced((bounds[0], bounds[1]), steps: steps))
        try drawDecoded(latents, model: vae, columns: steps, rowLabels: dimensions.map { "z\($0)" }, to: outputPath)
        print("drew image \(image) across \(range) in \(dimensions.count) dimensions to \(outputPath)")
    }
}

struct Attributes: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find each attribute's direction in latent space: mean(mu | +1) − mean(mu | −1).",
        discussion: """
            Over the images of --partition, for every attribute of the dataset. Writes OUT, a \
            float32 .npy array of shape (attributes, L), one direction a row, and OUT.json with the \
            rows' names, the images with +1 and −1, and the norms (README, "Faces"); prints each \
            direction's norm. Under mpirun each rank encodes its share of the images and one \
            allreduce sums them (in Double), so any number of ranks gives the same directions up \
            to rounding.

            Examples:
              vae attributes runs/faces --data faces.vaeds --out directions.npy
              mpirun -np 4 vae attributes runs/faces --data celeba.vaeds --out directions.npy
            """)

    @OptionGroup var inputs: ModelAndData

    @Option(help: ArgumentHelp("train, valid, test or all.", valueName: "partition"))
    var partition = "train"

    @Option(name: .customLong("out"), help: ArgumentHelp("The .npy file to write (and OUT.json).", valueName: "FILE.npy"))
    var outputPath: String

    func validate() throws { try validatePartition(partition) }

    func run() throws {
        runOnEveryRank { communicator in
            let directions = try collectively(communicator) { () throws -> AttributeDirections in
                let (dataset, vae) = try inputs.load()
                return try AttributeDirections.compute(model: vae, dataset: dataset,
                                                       indices: try partitionImages(partition, of: dataset),
                                                       partition: partition, communicator: communicator)
            }
            guard communicator.isRoot else { return }
            try directions.write(to: outputPath)
            for attribute in directions.attributes {
                print("\(attribute.name): norm \(String(format: "%.4f", attribute.norm)) "
                      + "(\(attribute.positives) images with +1, \(attribute.negatives) with -1)")
            }
            print("wrote \(directions.attributes.count) directions over \(directions.images) images of partition "
                  + "\(partition) to \(outputPath) and \(outputPath).json")
        }
    }
}

struct Edit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw a face moved along attribute directions, one row per attribute.",
        discussion: """
            Row a decodes mu + s · direction(a) for each strength s of --strengths, mu the image's; \
            the attribute's name is written beside its row. The directions are those of \
            --directions (from 'vae attributes'), or else computed as 'vae attributes' does over \
            the training partition.

            Example:
              vae edit runs/faces --data faces.vaeds --image 3 --attribute Smiling --attribute Eyeglasses \
                       --directions directions.npy --strengths -2,-1,0,1,2 --out edit.png
            """)

    @OptionGroup var inputs: ModelAndData

    @Option(help: ArgumentHelp("The image's position in the dataset file.", valueName: "ID"))
    var image: Int

    @Option(help: ArgumentHelp("An attribute to move along (repeat for more rows).", valueName: "name"))
    var attribute: [String]

    @Option(help: ArgumentHelp("Directions from 'vae attributes'.", valueName: "FILE.npy"))
    var directions: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Multiples of the direction, one per column.", valueName: "s1,s2,..."))
    var strengths = "-2,-1,0,1,2"

    @Option(name: .customLong("out"), help: ArgumentHelp("The PNG file to write.", valueName: "FILE.png"))
    var outputPath: String

    func validate() throws {
        guard !attribute.isEmpty else { throw ValidationError("give at least one --attribute") }
        _ = try parseNumbers(strengths, flag: "--strengths")
    }

    func run() throws {
        runOnEveryRank { communicator in
            let (dataset, vae, index, found) = try collectively(communicator) { () throws -> (Dataset, VAE, Int32, AttributeDirections?) in
                let (dataset, vae) = try inputs.load()
                let index = try imageIndex(image, flag: "--image", in: dataset)
                let found = try directions.map { try AttributeDirections.read(from: $0, latent: vae.config.latent) }
                if let found { _ = try attribute.map(found.direction) }
                return (dataset, vae, index, found)
            }
            let chosen = try attributeDirections(found, model: vae, dataset: dataset, communicator: communicator)
            let rows = try collectively(communicator) { try attribute.map(chosen.direction) }
            guard communicator.isRoot else { return }
            let mean = LatentSpace.encode([index], dataset: dataset, model: vae).means
            let strengthValues = try parseNumbers(strengths, flag: "--strengths")
            try drawDecoded(LatentSpace.edits(of: mean, directions: rows, strengths: strengthValues), model: vae,
                            columns: strengthValues.count, rowLabels: attribute, to: outputPath)
            print("drew image \(image) edited along \(attribute.joined(separator: ", ")) at strengths \(strengths) to \(outputPath)")
        }
    }
}

struct Morph: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw one face turning into another: a line between their mu.",
        discussion: """
            Decodes --steps points evenly spaced from mu of --from to mu of --to, both included.

            Example:
              vae morph runs/faces --data faces.vaeds --from 3 --to 17 --steps 8 --out morph.png
            """)

    @OptionGroup var inputs: ModelAndData

    @Option(help: ArgumentHelp("The first face's position in the dataset file.", valueName: "ID"))
    var from: Int

    @Option(help: ArgumentHelp("The last face's position in the dataset file.", valueName: "ID"))
    var to: Int

    @Option(help: ArgumentHelp("Faces in the row, both ends included.", valueName: "n"))
    var steps = 8

    @Option(name: .customLong("out"), help: ArgumentHelp("The PNG file to write.", valueName: "FILE.png"))
    var outputPath: String

    func validate() throws {
        guard steps >= 2 else { throw ValidationError("--steps \(steps): expected at least 2") }
    }

    func run() throws {
        let (dataset, vae) = try inputs.load()
        let ends = [try imageIndex(from, flag: "--from", in: dataset), try imageIndex(to, flag: "--to", in: dataset)]
        let means = LatentSpace.encode(ends, dataset: dataset, model: vae).means
        let latent = vae.config.latent
        let latents = LatentSpace.interpolation(from: Array(means[..<latent]), to: Array(means[latent...]), steps: steps)
        try drawDecoded(latents, model: vae, columns: steps, to: outputPath)
        print("drew \(steps) faces from image \(from) to image \(to) to \(outputPath)")
    }
}
