import ArgumentParser
import Foundation
import VAEData
import VAEEngine

struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn CelebA as published into one dataset file of 64x64 crops.",
        discussion: """
            Reads DIR/list_attr_celeba.txt, DIR/list_eval_partition.txt and the JPEGs in \
            DIR/img_align_celeba, decodes every listed image at full resolution, crops the centred \
            148x148 square (x 15...162, y 35...182 of a 178x218 image; images of another size get the \
            box scaled proportionally), resizes it to 64x64 by exact area averaging and writes \
            pixels, the 40 attributes, the partition and the image number of every image to FILE. \
            Decoding runs on all cores. The file is written beside FILE and renamed into place when \
            complete, so FILE is never half-written. docs/dataset.md describes the format.

            A missing or undecodable image stops preparation with an error naming it; with \
            --skip-bad such images are skipped, counted and listed instead.

            Example:
              vae prepare --celeba ~/celeba --out celeba64.vaeds
              vae prepare --celeba ~/celeba --out valid.vaeds --partition valid --limit 500
            """)

    @Option(name: .customLong("celeba"), help: ArgumentHelp("The CelebA directory.", valueName: "DIR"))
    var celebaDirectory: String

    @Option(name: .customLong("out"), help: ArgumentHelp("The dataset file to write.", valueName: "FILE"))
    var outputPath: String

    @Option(help: ArgumentHelp("The crop box in 178x218 coordinates.", valueName: "X,Y,SIZE"))
    var crop = CropBox.celebA.description

    @Option(help: ArgumentHelp("Which images to keep: train, valid, test or all.", valueName: "PARTITION"))
    var partition = "all"

    @Option(help: ArgumentHelp("Keep only the first N selected images (in file order).", valueName: "N"))
    var limit: Int?

    @Flag(help: "Skip missing or undecodable images (they are counted and listed) instead of stopping.")
    var skipBad = false

    @Option(help: ArgumentHelp("Decoding threads (default: all cores).", valueName: "N"))
    var threads: Int?

    func validate() throws {
        guard partition == "all" || Partition(name: partition) != nil else {
            throw ValidationError("--partition \(partition): expected train, valid, test or all")
        }
        if let limit, limit <= 0 { throw ValidationError("--limit \(limit): expected a positive number of images") }
        if let threads, threads <= 0 { throw ValidationError("--threads \(threads): expected at least 1") }
    }

    func run() throws {
        let threads = threads ?? ProcessInfo.processInfo.activeProcessorCount
        let options = PreparationOptions(
            celebaDirectory: celebaDirectory, outputPath: outputPath, crop: try CropBox(parsing: crop),
            partition: partition == "all" ? nil : Partition(name: partition), limit: limit,
            skipBad: skipBad, threads: threads)
        var lastReport = monotonicSeconds()
        let report = try prepareCelebA(options) { done, total in
            if monotonicSeconds() - lastReport > 2 || done == total {
                lastReport = monotonicSeconds()
                FileHandle.standardError.write(Data("prepared \(done) of \(total) images\n".utf8))
            }
        }
        for skipped in report.skipped { print("skipped \(skipped.problem)") }
        let perPartition = Partition.allCases.map { "\($0.name) \(report.counts[$0, default: 0])" }
        print("wrote \(report.written) images to \(outputPath) (\(perPartition.joined(separator: ", ")))"
            + (report.skipped.isEmpty ? "" : ", skipped \(report.skipped.count) bad images"))
        print(String(format: "%.1f s, %.0f images/s on %d threads", report.seconds,
                     Double(report.written + report.skipped.count) / report.seconds, threads))
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a dataset file, verify its checksum and optionally draw its first images.",
        discussion: """
            Prints the header (format, size, source, crop), the number of images per partition and, \
            for every attribute, the fraction of images where it is +1. Then hashes the content and \
            compares it with the stored checksum; a mismatch is an error. With --grid it writes the \
            first images as a PNG grid, to see what the model will see.

            Example:
              vae inspect celeba64.vaeds --grid first64.png --grid-count 64
            """)

    @Argument(help: ArgumentHelp("The dataset file.", valueName: "FILE"))
    var path: String

    @Option(help: ArgumentHelp("Write the first images to this PNG file.", valueName: "PNG"))
    var grid: String?

    @Option(help: ArgumentHelp("How many images the grid shows.", valueName: "N"))
    var gridCount = 64

    func validate() throws {
        guard gridCount > 0 else { throw ValidationError("--grid-count \(gridCount): expected at least 1") }
    }

    func run() throws {
        let dataset = try Dataset(path: path, verifyChecksum: false)
        let provenance = dataset.provenance
        print("file        \(path) (\(dataset.fileBytes) bytes)")
        print("images      \(dataset.count) of \(dataset.imageSize)x\(dataset.imageSize)x\(dataset.channels), "
            + "\(dataset.attributeNames.count) attributes")
        print("source      \(provenance.source)")
        if let crop = provenance.crop { print("crop        \(crop) (x,y,size in 178x218 coordinates)") }
        if let resize = provenance.resize { print("resize      \(resize)") }
        if let selection = provenance.selection { print("selection   \(selection)") }
        let counts = Partition.allCases.map { "\($0.name) \(dataset.indices(in: $0).count)" }
        print("partitions  \(counts.joined(separator: ", "))")
        print("attributes  fraction of images with +1:")
        let nameWidth = dataset.attributeNames.map(\.count).max() ?? 0
        for (name, frequency) in zip(dataset.attributeNames, dataset.attributeFrequencies()) {
            print("  " + name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + String(format: "  %.3f", frequency))
        }

        let started = monotonicSeconds()
        try dataset.verifyChecksum()
        print(String(format: "checksum    XXH64 %016llx verified (%.2f s)", dataset.checksum, monotonicSeconds() - started))

        if let grid {
            let shown = min(gridCount, dataset.count)
            guard shown > 0 else { throw ValidationError("--grid: the dataset has no images to draw") }
            let columns = Int(Double(shown).squareRoot().rounded(.up))
            try writeImageGrid(path: grid, images: (0..<shown).map { dataset.pixels($0) },
                               imageSize: dataset.imageSize, columns: columns)
            print("grid        \(shown) images written to \(grid)")
        }
    }
}

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a dataset file of synthetic cartoon faces with known attributes.",
        discussion: """
            Each face has the attributes Blond_Hair, Eyeglasses, Male, Pale_Skin and Smiling (CelebA \
            names), each +1 with probability 1/2, drawn independently, plus random position, size and \
            colours. Faces 8 and 9 of every ten are the valid and test partitions. The same seed \
            always gives the same faces, so demos and tests run without CelebA, and attribute \
            editing can be checked against ground truth. The file has the format of `vae prepare`.

            Example:
              vae synth --count 20000 --out synthetic.vaeds --seed 1
            """)

    @Option(help: ArgumentHelp("Number of faces.", valueName: "N"))
    var count: Int

    @Option(name: .customLong("out"), help: ArgumentHelp("The dataset file to write.", valueName: "FILE"))
    var outputPath: String

    @Option(help: ArgumentHelp("Random seed: the same seed gives the same faces.", valueName: "S"))
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Image side in pixels.", valueName: "PIXELS"))
    var size = 64

    func validate() throws {
        guard count > 0 else { throw ValidationError("--count \(count): expected at least 1 face") }
        guard size >= 8 else { throw ValidationError("--size \(size): expected at least 8 pixels") }
    }

    func run() throws {
        let started = monotonicSeconds()
        try SyntheticFaces(seed: seed, imageSize: size).writeDataset(count: count, to: outputPath)
        let seconds = String(format: "%.1f", monotonicSeconds() - started)
        print("wrote \(count) synthetic \(size)x\(size) faces to \(outputPath) in \(seconds) s")
    }
}
