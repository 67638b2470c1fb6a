import Foundation
import VAEData
import VAEEngine

/// An independent judge of face attributes, to measure what a latent edit does without trusting
/// the VAE: per attribute, a logistic regression on the image's pixels, trained on a dataset's
/// images and labels alone (never on anything the VAE made).
///
/// Features: the image averaged over `pool` x `pool` squares (64x64x3 becomes 16x16x3 = 768
/// values), each standardised with the training images' mean and deviation, and a constant 1 for
/// the bias. Per attribute, in Float64, it minimises the class-balanced mean log-loss (the images
/// with +1 weigh one half in all, those with −1 the other half, so that a rare attribute such as
/// Eyeglasses, 2% of CelebA, is not simply judged absent everywhere) plus (l2/2)·|w|², the bias
/// excluded, by gradient descent with Nesterov momentum. A score above 0 means "has it".
public struct AttributeJudge {
    /// Features are at most this many pixels on a side.
    public static let featureSide = 16
    /// The weight of (1/2)·|w|² against the log-loss: with more features than CelebA sample images,
    /// a regression without it separates the training images exactly and generalises worse.
    public static let l2 = 0.01
    /// It trains on at most this many images (the design matrix of 20,000 is 123 MB).
    public static let maxImages = 20_000
    /// Descent steps (each two products of the [images, features + 1] design matrix).
    public static let steps = 500

    public let names: [String]
    public let imageSize: Int, channels: Int
    /// Pixels averaged into one feature, on a side.
    let pool: Int
    /// Per feature: the training images' mean, and 1 / their deviation (0 for a feature constant there).
    let mean: [Double], inverseDeviation: [Double]
    /// [features + 1, names.count], row-major: one column per attribute, its bias in the last row.
    let weights: [Double]
    /// The images it was trained on.
    public private(set) var trainingImages = 0

    var features: Int { (imageSize / pool) * (imageSize / pool) * channels }

    /// Fits a regression per attribute of `names` to the images at `indices` of `dataset` (at most
    /// `maxImages`, the first) and their labels. Every attribute needs images with both values.
    public init(names: [String], dataset: Dataset, indices: [Int32]) throws {
        let chosen = Array(indices.prefix(AttributeJudge.maxImages)), count = chosen.count
        let imageSize = dataset.imageSize, channels = dataset.channels
        let pool = max(1, imageSize / AttributeJudge.featureSide)
        // The pooled pixels [count, features], read a chunk of images at a time.
        let chunk = 256
        let images = FloatBuffer(count: chunk * imageSize * imageSize * channels)
        var raw: [Double] = []
        for first in stride(from: 0, to: count, by: chunk) {
            let part = chosen[first..<min(first + chunk, count)]
            dataset.loadFloats(part, into: images.pointer)
            raw += AttributeJudge.pooled(images.pointer, count: part.count, imageSize: imageSize, channels: channels, pool: pool)
        }
        let features = raw.count / max(count, 1)
        var mean = [Double](repeating: 0, count: features), inverseDeviation = mean
        for f in 0..<features {
            let column = stride(from: f, to: raw.count, by: features).map { raw[$0] }
            mean[f] = column.reduce(0, +) / Double(count)
            let deviation = (column.map { ($0 - mean[f]) * ($0 - mean[f]) }.reduce(0, +) / Double(count)).squareRoot()
            inverseDeviation[f] = deviation > 1e-6 ? 1 / deviation : 0
        }
        let untrained = AttributeJudge(names: names, imageSize: imageSize, channels: channels, pool: pool, mean: mean,
                                       inverseDeviation: inverseDeviation, weights: [])
        let columns = try names.map {
            guard let column = dataset.attributeIndex($0) else { throw TrainingError("\(dataset.path) has no attribute \($0)") }
            return column
        }
        let labels = chosen.flatMap { image in columns.map { dataset.attributes(Int(image))[$0] } }
        let weights = try AttributeJudge.fit(untrained.design(raw: raw, count: count), rows: count, columns: features + 1,
                                             labels: labels, names: names)
        self.init(names: names, imageSize: imageSize, channels: channels, pool: pool, mean: mean,
                  inverseDeviation: inverseDeviation, weights: weights)
        trainingImages = count
    }

    private init(names: [String], imageSize: Int, channels: Int, pool: Int, mean: [Double], inverseDeviation: [Double],
                 weights: [Double]) {
        self.names = names
        self.imageSize = imageSize
        self.channels = channels
        self.pool = pool
        self.mean = mean
        self.inverseDeviation = inverseDeviation
        self.weights = weights
    }

    /// The judge's verdicts on `count` images ([count, S, S, C] in [0, 1]): [count, names.count],
    /// true where it says the image has the attribute.
    public func judge(_ images: UnsafePointer<Float>, count: Int) -> [Bool] {
        let raw = AttributeJudge.pooled(images, count: count, imageSize: imageSize, channels: channels, pool: pool)
        let x = design(raw: raw, count: count)
        var scores = [Double](repeating: 0, count: count * names.count)
        doubleGEMM(m: count, n: names.count, k: features + 1, x, lda: features + 1, weights, ldb: names.count,
                   beta: 0, &scores, ldc: names.count)
        return scores.map { $0 > 0 }
    }

    /// The images averaged over pool x pool squares: [count, S / pool, S / pool, C].
    static func pooled(_ images: UnsafePointer<Float>, count: Int, imageSize: Int, channels: Int, pool: Int) -> [Double] {
        let side = imageSize / pool
        var out = [Double](repeating: 0, count: count * side * side * channels)
        for i in 0..<count {
            let image = images + i * imageSize * imageSize * channels
            for y in 0..<(side * pool) {
                for x in 0..<(side * pool) {
                    let cell = ((i * side + y / pool) * side + x / pool) * channels
                    for c in 0..<channels { out[cell + c] += Double(image[(y * imageSize + x) * channels + c]) }
                }
            }
        }
        let area = Double(pool * pool)
        return out.map { $0 / area }
    }

    /// [count, features + 1]: each pooled feature standardised, then a 1 for the bias.
    func design(raw: [Double], count: Int) -> [Double] {
        var x = [Double](repeating: 1, count: count * (features + 1))
        for i in 0..<count {
            for f in 0..<features {
                x[i * (features + 1) + f] = (raw[i * features + f] - mean[f]) * inverseDeviation[f]
            }
        }
        return x
    }

    /// Weights [columns, attributes] minimising each attribute's class-balanced log-loss plus
    /// (l2/2)·|w|² over the design matrix x [rows, columns] (last column the bias's 1s).
    static func fit(_ x: [Double], rows: Int, columns: Int, labels: [Int8], names: [String]) throws -> [Double] {
        let attributes = names.count
        // Per image and attribute: the target (1 or 0) and the image's weight in the loss, 1/2
        // shared among the images with that value (the weights of an attribute sum to 1).
        var target = [Double](repeating: 0, count: rows * attributes), share = target
        for (a, name) in names.enumerated() {
            let positives = (0..<rows).filter { labels[$0 * attributes + a] > 0 }.count
            guard positives > 0 && positives < rows else {
                throw TrainingError("attribute \(name): \(positives) of the \(rows) training images have it; "
                                    + "the judge needs images with and without it")
            }
            for i in 0..<rows {
                let has = labels[i * attributes + a] > 0
                target[i * attributes + a] = has ? 1 : 0
                share[i * attributes + a] = 0.5 / Double(has ? positives : rows - positives)
            }
        }
        // The loss's gradient is Lipschitz with constant at most λmax(Xᵀ·diag(share)·X)/4 + l2
        // (a logistic's slope is at most 1/4); the trace bounds λmax without computing it.
        let squaredNorms = (0..<rows).map { i -> Double in
            (0..<columns).reduce(0) { $0 + x[i * columns + $1] * x[i * columns + $1] }
        }
        let lipschitz = (0..<attributes).map { a -> Double in
            (0..<rows).reduce(0) { $0 + share[$1 * attributes + a] * squaredNorms[$1] } / 4 + l2
        }
        var weights = [Double](repeating: 0, count: columns * attributes), previous = weights
        var ahead = weights, gradient = weights
        var residual = [Double](repeating: 0, count: rows * attributes)
        for step in 0..<steps {
            // Nesterov: the gradient is taken at the weights pushed on along their last move.
            let momentum = Double(step) / Double(step + 3)
            for j in ahead.indices { ahead[j] = weights[j] + momentum * (weights[j] - previous[j]) }
            // residual = share · (sigmoid(X·ahead) − target); gradient = Xᵀ·residual + l2 · ahead.
            doubleGEMM(m: rows, n: attributes, k: columns, x, lda: columns, ahead, ldb: attributes,
                       beta: 0, &residual, ldc: attributes)
            for j in residual.indices { residual[j] = share[j] * (1 / (1 + exp(-residual[j])) - target[j]) }
            doubleGEMM(transposeA: true, m: columns, n: attributes, k: rows, x, lda: columns, residual, ldb: attributes,
                       beta: 0, &gradient, ldc: attributes)
            previous = weights
            for j in weights.indices {
                let isBias = j / attributes == columns - 1
                weights[j] = ahead[j] - (gradient[j] + (isBias ? 0 : l2 * ahead[j])) / lipschitz[j % attributes]
            }
        }
        return weights
    }
}
