import Foundation
import VAECluster
import VAEData
import VAEEngine

/// For each attribute of a dataset, the latent direction mean(mu | +1) − mean(mu | −1) over a set
/// of images, and how many images had each value.
///
/// On disk (README, "Faces"): PATH is a float32 .npy array of shape (attributes, L), one direction
/// a row, and PATH.json names its rows:
///   {"latent": L, "images": N, "partition": "train",
///    "attributes": [{"name": "Smiling", "positives": 412, "negatives": 588, "norm": 1.73}, ...]}
public struct AttributeDirections: Codable, Equatable {
    public struct Attribute: Codable, Equatable {
        public var name: String
        public var positives: Int
        public var negatives: Int
        /// The direction's Euclidean length, for a reader of the JSON alone.
        public var norm: Double
    }

    public var latent: Int
    public var images: Int
    public var partition: String
    public var attributes: [Attribute]
    /// [attributes.count][latent]; stored in the .npy file, not the JSON.
    public var directions: [[Float]] = []

    private enum CodingKeys: String, CodingKey { case latent, images, partition, attributes }

    /// The directions of every attribute of `dataset` over the images at `indices` (from
    /// `partition`). Each rank of `communicator` encodes its share of the images; one allreduce
    /// sums mu per attribute value in Double, so any number of ranks gives the same directions up
    /// to rounding. An attribute that no image has with one of its values has no direction: error.
    public static func compute(model: VAE, dataset: Dataset, indices: [Int32], partition: String,
                               communicator: Communicator) throws -> AttributeDirections {
        let latent = model.config.latent, names = dataset.attributeNames
        guard !names.isEmpty else { throw TrainingError("\(dataset.path) has no attributes") }
        let share = EpochPlan.pieceRange(batchSize: indices.count, rank: communicator.rank, ranks: communicator.size)
        let mine = Array(indices[share])
        let means = LatentSpace.encode(mine, dataset: dataset, model: model).means
        // Per attribute: Σ mu over its +1 images [L], Σ mu over its −1 images [L], then the two counts.
        let stride = 2 * latent + 2
        var sums = [Double](repeating: 0, count: names.count * stride)
        for (i, index) in mine.enumerated() {
            let values = dataset.attributes(Int(index))
            for a in names.indices {
                let base = a * stride + (values[a] > 0 ? 0 : latent)
                for j in 0..<latent { sums[base + j] += Double(means[i * latent + j]) }
                sums[a * stride + 2 * latent + (values[a] > 0 ? 0 : 1)] += 1
            }
        }
        communicator.allreduceSum(&sums, count: sums.count)

        var result = AttributeDirections(latent: latent, images: indices.count, partition: partition, attributes: [])
        for (a, name) in names.enumerated() {
            let base = a * stride
            let positives = Int(sums[base + 2 * latent]), negatives = Int(sums[base + 2 * latent + 1])
            guard positives > 0 && negatives > 0 else {
                throw TrainingError("attribute \(name): \(positives) images with +1 and \(negatives) with -1 among the "
                                    + "\(indices.count) of partition \(partition); a direction needs both")
            }
            let direction = (0..<latent).map {
                Float(sums[base + $0] / Double(positives) - sums[base + latent + $0] / Double(negatives))
            }
            let norm = direction.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
            result.attributes.append(Attribute(name: name, positives: positives, negatives: negatives, norm: norm))
            result.directions.append(direction)
        }
        return result
    }

    /// The direction of attribute `name`, or an error that lists the attributes there are.
    public func direction(of name: String) throws -> [Float] {
        guard let a = attributes.firstIndex(where: { $0.name == name }) else {
            throw TrainingError("unknown attribute '\(name)'; the attributes are "
                                + attributes.map(\.name).joined(separator: ", "))
        }
        return directions[a]
    }

    /// Writes the .npy file at `path` and its JSON sidecar at path + ".json".
    public func write(to path: String) throws {
        try NumPyArray.write(directions.flatMap { $0 }, shape: [attributes.count, latent], to: path)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(self), to: path + ".json")
    }

    /// Reads what `write(to:)` wrote, for a model of latent size `latent`.
    public static func read(from path: String, latent: Int) throws -> AttributeDirections {
        guard let json = FileManager.default.contents(atPath: path + ".json") else {
            throw TrainingError("\(path).json: cannot read the attribute names beside \(path) (write both with 'vae attributes')")
        }
        var result: AttributeDirections
        do {
            result = try JSONDecoder().decode(AttributeDirections.self, from: json)
        } catch {
            throw TrainingError("\(path).json: not the attribute list of 'vae attributes': \(error)")
        }
        let (shape, values) = try NumPyArray.read(path: path)
        guard shape == [result.attributes.count, latent] && result.latent == latent else {
            throw TrainingError("\(path): shape \(shape), expected (\(result.attributes.count), \(latent)) for "
                                + "\(result.attributes.count) attributes and the model's latent size")
        }
        result.directions = (0..<shape[0]).map { Array(values[($0 * latent)..<(($0 + 1) * latent)]) }
        return result
    }
}
