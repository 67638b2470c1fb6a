/// A square crop in the coordinates of a 178x218 CelebA image; images of another size get the box
/// scaled proportionally.
public struct CropBox: Codable, Sendable, Equatable, CustomStringConvertible {
    public var x: Int
    public var y: Int
    public var size: Int

    public static let referenceWidth = 178
    public static let referenceHeight = 218
    /// The centred 148x148 square: x 15...162, y 35...182.
    public static let celebA = CropBox(x: 15, y: 35, size: 148)

    public init(x: Int, y: Int, size: Int) {
        self.x = x
        self.y = y
        self.size = size
    }

    /// Parses "X,Y,SIZE" and checks that the box lies inside a 178x218 image.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 3, let x = parts[0], let y = parts[1], let size = parts[2] else {
            throw DataError.invalidSetting("--crop \(text): expected X,Y,SIZE, three integers such as 15,35,148")
        }
        guard x >= 0, y >= 0, size > 0, x + size <= CropBox.referenceWidth, y + size <= CropBox.referenceHeight else {
            throw DataError.invalidSetting("--crop \(text): the box must lie inside the 178x218 CelebA image "
                + "(x + size <= 178, y + size <= 218)")
        }
        self.init(x: x, y: y, size: size)
    }

    public var description: String { "\(x),\(y),\(size)" }

    /// The box in a width x height image, in continuous pixel coordinates: the centre scales with
    /// the image, the side with the smaller of the two scales, so the box stays square and inside.
    public func region(width: Int, height: Int) -> (x: Double, y: Double, side: Double) {
        let scaleX = Double(width) / Double(CropBox.referenceWidth)
        let scaleY = Double(height) / Double(CropBox.referenceHeight)
        let side = Double(size) * min(scaleX, scaleY)
        let centreX = (Double(x) + Double(size) / 2) * scaleX
        let centreY = (Double(y) + Double(size) / 2) * scaleY
        return (centreX - side / 2, centreY - side / 2, side)
    }
}

/// Exact area averaging along one axis: output pixel j covers the source interval
/// [start + j * step, start + (j + 1) * step) with step = length / outputs, and each source pixel
/// k it touches weighs (length of [k, k + 1) inside that interval) / step. Pixel indices are kept
/// inside 0..<sourceLength, where rounding could otherwise step one past the edge.
struct AxisWeights {
    let first: [Int]
    let count: [Int]
    /// `taps` weights per output pixel; entries past count[j] are zero.
    let weights: [Float]
    let taps: Int

    init(start: Double, length: Double, outputs: Int, sourceLength: Int) {
        let step = length / Double(outputs)
        var first = [Int](), count = [Int]()
        for j in 0..<outputs {
            let low = start + Double(j) * step, high = low + step
            let lowPixel = max(Int(low.rounded(.down)), 0)
            first.append(lowPixel)
            count.append(max(min(Int(high.rounded(.up)), sourceLength) - lowPixel, 1))
        }
        taps = count.max() ?? 1
        var weights = [Float](repeating: 0, count: outputs * taps)
        for j in 0..<outputs {
            let low = start + Double(j) * step, high = low + step
            for t in 0..<count[j] {
                let pixel = Double(first[j] + t)
                weights[j * taps + t] = Float(max(min(high, pixel + 1) - max(low, pixel), 0) / step)
            }
        }
        self.first = first
        self.count = count
        self.weights = weights
    }
}

/// Crops an RGB image to a CropBox and resizes the crop to outputSize x outputSize by exact area
/// averaging, in two separable passes (rows, then columns). One per thread: the weights and the
/// scratch row are reused for every image of the same size.
public final class CropResizer {
    public let crop: CropBox
    public let outputSize: Int
    private var sourceSize = (width: 0, height: 0)
    private var rows = AxisWeights(start: 0, length: 1, outputs: 1, sourceLength: 1)
    private var columns = AxisWeights(start: 0, length: 1, outputs: 1, sourceLength: 1)
    /// One output row after the vertical pass: width x 3 values, of which the crop's columns are used.
    private var blendedRow = UnsafeMutablePointer<Float>.allocate(capacity: 0)

    public init(crop: CropBox, outputSize: Int) {
        self.crop = crop
        self.outputSize = outputSize
    }

    deinit { blendedRow.deallocate() }

    private func prepare(width: Int, height: Int) {
        let region = crop.region(width: width, height: height)
        rows = AxisWeights(start: region.y, length: region.side, outputs: outputSize, sourceLength: height)
        columns = AxisWeights(start: region.x, length: region.side, outputs: outputSize, sourceLength: width)
        blendedRow.deallocate()
        blendedRow = UnsafeMutablePointer<Float>.allocate(capacity: width * 3)
        sourceSize = (width, height)
    }

    /// `rgb` holds width x height x 3 bytes; `output` receives outputSize x outputSize x 3 bytes.
    public func resize(rgb: UnsafePointer<UInt8>, width: Int, height: Int, into output: UnsafeMutablePointer<UInt8>) {
        if sourceSize != (width, height) { prepare(width: width, height: height) }
        let n = outputSize, rows = rows, columns = columns, blended = blendedRow
        let cropValues = (columns.first[0] * 3)..<((columns.first[n - 1] + columns.count[n - 1]) * 3)
        for j in 0..<n {
            // Vertical pass: blend the source rows under output row j.
            for v in cropValues { blended[v] = 0 }
            for t in 0..<rows.count[j] {
                let weight = rows.weights[j * rows.taps + t]
                let source = rgb + (rows.first[j] + t) * width * 3
                for v in cropValues { blended[v] += weight * Float(source[v]) }
            }
            // Horizontal pass: blend the columns under each output pixel, then round.
            for i in 0..<n {
                var sum = SIMD3<Float>(repeating: 0)
                for t in 0..<columns.count[i] {
                    let v = (columns.first[i] + t) * 3
                    sum += columns.weights[i * columns.taps + t] * SIMD3(blended[v], blended[v + 1], blended[v + 2])
                }
                let out = output + (j * n + i) * 3
                for c in 0..<3 { out[c] = UInt8(min(sum[c] + 0.5, 255)) }
            }
        }
    }
}
