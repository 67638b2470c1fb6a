import ArgumentParser
import Foundation
import VAEData
import VAEEngine
import VAETraining

struct Judge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure attribute edits with an independent judge: do they flip the attribute and keep the others?",
        discussion: """
            The judge: for each --attribute, a logistic regression on the image's pixels \
            (averaged to at most \(AttributeJudge.featureSide)x\(AttributeJudge.featureSide)), trained \
            on the images and labels of the training partition, never on anything the VAE made. \
            Its accuracy is printed for the held-out images of --partition ('balanced': the mean \
            of its accuracy on the images with and without the attribute) and for their \
            reconstructions, which are blurrier than what it was trained on.

            The edit: each held-out face labelled without the attribute, and whose reconstruction \
            the judge also calls without it, is decoded from mu + --strength × the attribute's \
            direction (mean(mu | +1) − mean(mu | −1) over the training partition, as 'vae \
            attributes' computes it, or from --directions). Then
              flip rate  the share of those faces the judge now calls with the attribute;
              keep rate  the share of the other --attribute verdicts that stay those on the
                         reconstruction (no other attribute: '-').
            Each against a baseline:
              random     the same faces moved as far (--strength × the direction's
                         norm) along random directions, one per face, from --seed;
              chance     how often the verdicts on a face's reconstruction match those on
                         another's (the next held-out face), as if the edit swapped faces.
            An edit that does what it says flips far more often than the random move, and keeps \
            the other verdicts far more often than chance.

            Examples:
              vae judge runs/faces --data faces.vaeds
              vae judge runs/celeba --data celeba.vaeds --attribute Smiling \\
                        --attribute Eyeglasses --strength 2 --out judge.json
            """)

    @OptionGroup var inputs: ModelAndData

    @Option(help: ArgumentHelp("An attribute to edit and judge (repeat for more; default: all of the file's).",
                               valueName: "name"))
    var attribute: [String] = []

    @Option(help: ArgumentHelp("How far to move: mu + k × direction.", valueName: "k"))
    var strength: Float = 1

    @Option(help: ArgumentHelp("The held-out images to judge and edit: valid, test, or heldout (both).",
                               valueName: "partition"))
    var partition = "heldout"

    @Option(help: ArgumentHelp("Directions from 'vae attributes' (default: computed over the training partition).",
                               valueName: "FILE.npy"))
    var directions: String?

    @Option(help: "The seed of the random directions.")
    var seed: UInt64 = 1

    @Option(name: .customLong("out"), help: ArgumentHelp("Also write the table as JSON.", valueName: "FILE.json"))
    var outputPath: String?

    func validate() throws {
        guard ["valid", "test", "heldout"].contains(partition) else {
            throw ValidationError("--partition \(partition): expected valid, test or heldout")
        }
        guard strength.isFinite else { throw ValidationError("--strength \(strength): expected a number") }
    }

    func run() throws {
        runOnEveryRank { communicator in
            let (dataset, vae, names, heldOut, found) = try collectively(communicator) {
                () throws -> (Dataset, VAE, [String], [Int32], AttributeDirections?) in
                let (dataset, vae) = try inputs.load()
                let heldOut = (partition == "heldout" ? ["valid", "test"] : [partition]).flatMap {
                    dataset.indices(in: Partition(name: $0))
                }
                guard !heldOut.isEmpty else { throw ValidationError("\(dataset.path) has no images in partition \(partition)") }
                let names = attribute.isEmpty ? dataset.attributeNames : attribute
                for name in names where dataset.attributeIndex(name) == nil {
                    throw ValidationError("unknown attribute '\(name)'; the attributes are "
                                          + dataset.attributeNames.joined(separator: ", "))
                }
                return (dataset, vae, names, heldOut, try directions.map { try AttributeDirections.read(from: $0, latent: vae.config.latent) })
            }
            let chosen = try attributeDirections(found, model: vae, dataset: dataset, communicator: communicator)
            guard communicator.isRoot else { return }
            let judge = try AttributeJudge(names: names, dataset: dataset, indices: try partitionImages("train", of: dataset))
            let rows = EditJudgement.measure(model: vae, dataset: dataset, images: heldOut, judge: judge,
                                             directions: try names.map(chosen.direction), strength: strength, seed: seed)
            print("judge: a logistic regression per attribute on pixel averages, trained on \(judge.trainingImages) "
                  + "images of partition train; edits: mu + \(strength) × direction, on images of partition "
                  + "\(partition) (\(heldOut.count)) labelled and judged without the attribute")
            print(table(rows))
            if let outputPath {
                try EditJudgement.Report(strength: strength, partition: partition, heldOutImages: heldOut.count,
                                         judgeTrainingImages: judge.trainingImages, seed: seed, rows: rows).write(to: outputPath)
                print("wrote \(outputPath)")
            }
        }
    }

    /// The rows as a fixed-width table, '-' where a figure has nothing to count.
    private func table(_ rows: [EditJudgement.Row]) -> String {
        let nameWidth = max(9, rows.map(\.attribute.count).max() ?? 0)
        func cell(_ value: Double?, _ width: Int) -> String {
            let text = value.map { String(format: "%.2f", $0) } ?? "-"
            return String(repeating: " ", count: max(0, width - text.count)) + text
        }
        func padded(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }
        var lines = [padded("", nameWidth) + "  judge accuracy on          edited   flip rate         keep rate",
                     padded("attribute", nameWidth) + "  images balanced  recon    faces   edit random    edit random chance"]
        for row in rows {
            lines.append(padded(row.attribute, nameWidth) + "  " + cell(row.accuracy, 6) + cell(row.balancedAccuracy, 9)
                         + cell(row.reconstructionAccuracy, 7) + String(format: "%9d", row.faces)
                         + cell(row.flip, 7) + cell(row.randomFlip, 7) + cell(row.keep, 8) + cell(row.randomKeep, 7)
                         + cell(row.chanceKeep, 7))
        }
        return lines.joined(separator: "\n")
    }
}
