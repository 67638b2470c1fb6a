import Foundation
import VAEData
import VAEEngine

/// What moving faces along attribute directions does, as an AttributeJudge sees it (README,
/// "Does the edit do what it says?").
///
/// For attribute a, the faces edited are the held-out images labelled without it whose
/// reconstruction (decoded from mu) the judge also calls without it; each is decoded from
/// mu + strength · direction(a). The flip rate is the share the judge then calls with a; the keep
/// rate the share of the other judged attributes' verdicts that are those on the reconstruction.
/// Their baselines: the same faces moved as far along a random direction (the direction's norm;
/// a direction of its own for each face, N(0, I) scaled), and, for keeping, "chance": how often
/// the verdicts on a face's reconstruction are those on the next held-out face's, as if the edit
/// had swapped the face for another.
public enum EditJudgement {
    public struct Row: Codable, Equatable {
        public var attribute: String
        /// The judge on the held-out images: its share of right verdicts, and the mean of its
        /// shares on the images with and without the attribute (nil without either).
        public var accuracy: Double, balancedAccuracy: Double?
        /// Its share of right verdicts on the held-out images' reconstructions.
        public var reconstructionAccuracy: Double
        /// The faces edited.
        public var faces: Int
        /// nil without faces to edit (and keep rates without other attributes to keep).
        public var flip: Double?, randomFlip: Double?
        public var keep: Double?, randomKeep: Double?, chanceKeep: Double?
    }

    /// The rows and what they were measured with, as `vae judge --out` writes them.
    public struct Report: Codable, Equatable {
        public var strength: Float
        public var partition: String
        public var heldOutImages: Int, judgeTrainingImages: Int
        public var seed: UInt64
        public var rows: [Row]

        public init(strength: Float, partition: String, heldOutImages: Int, judgeTrainingImages: Int, seed: UInt64,
                    rows: [Row]) {
            (self.strength, self.partition, self.heldOutImages) = (strength, partition, heldOutImages)
            (self.judgeTrainingImages, self.seed, self.rows) = (judgeTrainingImages, seed, rows)
        }

        /// Writes the report as JSON to `path` (beside it, then renamed into place).
        public func write(to path: String) throws {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try writeAtomically(try encoder.encode(self), to: path)
        }
    }

    /// A row per attribute of `judge`, whose direction is the same row of `directions`, over the
    /// held-out `images` of `dataset`; `seed` draws the random directions.
    public static func measure(model: VAE, dataset: Dataset, images heldOut: [Int32], judge: AttributeJudge,
                               directions: [[Float]], strength: Float, seed: UInt64) -> [Row] {
        let latent = model.config.latent, attributes = judge.names.count, count = heldOut.count
        let columns = judge.names.map { dataset.attributeIndex($0)! }
        let labels: [Bool] = heldOut.flatMap { image in columns.map { dataset.attributes(Int(image))[$0] > 0 } }  // [count, attributes]
        let inputs = FloatBuffer(count: count * model.config.imageValues)
        dataset.loadFloats(heldOut, into: inputs.pointer)
        let onImages = judge.judge(inputs.pointer, count: count)
        let means = LatentSpace.encode(heldOut, dataset: dataset, model: model).means
        let verdicts = { (latents: [Float]) in LatentSpace.decode(latents, model: model).withUnsafeBufferPointer {
            judge.judge($0.baseAddress!, count: latents.count / latent)
        } }
        let onReconstructions = verdicts(means)
        let random = Philox(seed: seed, stream: .judging)

        return judge.names.indices.map { a in
            let faces = (0..<count).filter { !labels[$0 * attributes + a] && !onReconstructions[$0 * attributes + a] }
            let direction = directions[a]
            let norm = direction.map { $0 * $0 }.reduce(0, +).squareRoot()
            var edited: [Float] = [], randomlyMoved: [Float] = []
            var noise = [Float](repeating: 0, count: latent)
            for i in faces {
                let mu = means[(i * latent)..<((i + 1) * latent)]
                edited += zip(mu, direction).map { $0 + strength * $1 }
                random.fillNormal(&noise, count: latent, tag: UInt64(columns[a]), row: UInt32(i))
                let scale = strength * norm / noise.map { $0 * $0 }.reduce(0, +).squareRoot()
                randomlyMoved += zip(mu, noise).map { $0 + scale * $1 }
            }
            let onEdited = verdicts(edited), onRandom = verdicts(randomlyMoved)
            let others = judge.names.indices.filter { $0 != a }
            /// The share of the other attributes' verdicts on face k of `faces` in `after` that are
            /// those on its reconstruction.
            func kept(_ after: (_ k: Int, _ b: Int) -> Bool) -> Double? {
                share(faces.indices.flatMap { k in others.map { b in after(k, b) == onReconstructions[faces[k] * attributes + b] } })
            }
            return Row(attribute: judge.names[a],
                       accuracy: share((0..<count).map { onImages[$0 * attributes + a] == labels[$0 * attributes + a] })!,
                       balancedAccuracy: balancedAccuracy(verdicts: (0..<count).map { onImages[$0 * attributes + a] },
                                                          labels: (0..<count).map { labels[$0 * attributes + a] }),
                       reconstructionAccuracy: share((0..<count).map {
                           onReconstructions[$0 * attributes + a] == labels[$0 * attributes + a]
                       })!,
                       faces: faces.count,
                       flip: share(faces.indices.map { onEdited[$0 * attributes + a] }),
                       randomFlip: share(faces.indices.map { onRandom[$0 * attributes + a] }),
                       keep: kept { onEdited[$0 * attributes + $1] },
                       randomKeep: kept { onRandom[$0 * attributes + $1] },
                       chanceKeep: kept { onReconstructions[((faces[$0] + 1) % count) * attributes + $1] })
        }
    }

    /// The share of `outcomes` that are true; nil for none.
    static func share(_ outcomes: [Bool]) -> Double? {
        outcomes.isEmpty ? nil : Double(outcomes.filter { $0 }.count) / Double(outcomes.count)
    }

    /// The mean of the shares of right verdicts among the images with and without the attribute.
    static func balancedAccuracy(verdicts: [Bool], labels: [Bool]) -> Double? {
        let with = zip(verdicts, labels).filter { $0.1 }.map { $0.0 }
        let without = zip(verdicts, labels).filter { !$0.1 }.map { !$0.0 }
        guard let hits = share(with), let rejections = share(without) else { return nil }
        return (hits + rejections) / 2
    }
}
