import VAEEngine

/// Simple cartoon faces with known binary attributes: the dataset for demos and tests where CelebA
/// is absent, and ground truth for checking attribute editing.
///
/// Face `index` is a pure function of (seed, index): its attributes are drawn independently with
/// probability 1/2 each, its jitter (position, size, colours) from further Philox values. Shapes are
/// drawn with signed distances and one pixel of anti-aliasing, so images are smooth at any size.
public struct SyntheticFaces: Sendable {
    /// The modelled attributes, under their CelebA names and in CelebA order. Synthetic files list
    /// only these: the other CelebA attributes have no ground truth here.
    public static let attributeNames = ["Blond_Hair", "Eyeglasses", "Male", "Pale_Skin", "Smiling"]

    public let seed: UInt64
    public let imageSize: Int
    private let random: Philox

    public init(seed: UInt64 = 1, imageSize: Int = 64) {
        precondition(imageSize >= 8, "synthetic faces need at least 8x8 pixels")
        self.seed = seed
        self.imageSize = imageSize
        random = Philox(seed: seed, stream: .synthetic)
    }

    public var pixelBytes: Int { imageSize * imageSize * 3 }

    /// The attribute values of face `index` (+1 or -1, in the order of `attributeNames`).
    public func attributes(index: Int) -> [Int8] {
        (0..<SyntheticFaces.attributeNames.count).map { a in
            random.uniform(tag: UInt64(index), row: 1, index: UInt32(a)) < 0.5 ? 1 : -1
        }
    }

    /// An exact 80/10/10 split: faces 8 and 9 of every ten are valid and test.
    public func partition(index: Int) -> Partition {
        switch index % 10 {
        case 8: return .valid
        case 9: return .test
        default: return .train
        }
    }

    /// Renders face `index` with its own attributes into `pixels` (imageSize x imageSize x 3, HWC, RGB).
    @discardableResult
    public func render(index: Int, into pixels: UnsafeMutablePointer<UInt8>) -> [Int8] {
        let values = attributes(index: index)
        render(index: index, attributes: values, into: pixels)
        return values
    }

    /// Renders face `index` (its jitter) with the given attributes instead of its own, so that a test
    /// or an editing check can compare the same face with and without, say, Smiling.
    public func render(index: Int, attributes: [Int8], into pixels: UnsafeMutablePointer<UInt8>) {
        precondition(attributes.count == SyntheticFaces.attributeNames.count, "expected 5 attribute values")
        let face = Face(jitter: { random.uniform(tag: UInt64(index), row: 0, index: $0) }, attributes: attributes)
        let pixelWidth = 1 / Float(imageSize)
        for y in 0..<imageSize {
            for x in 0..<imageSize {
                let point = SIMD2<Float>((Float(x) + 0.5) * pixelWidth, (Float(y) + 0.5) * pixelWidth)
                let colour = face.colour(at: point, pixelWidth: pixelWidth)
                let out = pixels + (y * imageSize + x) * 3
                for c in 0..<3 { out[c] = unitToByte(colour[c]) }
            }
        }
    }

    /// Writes faces 0..<count as a dataset file.
    public func writeDataset(count: Int, to path: String) throws {
        let writer = try DatasetWriter(path: path, imageSize: imageSize, channels: 3,
                                       attributeNames: SyntheticFaces.attributeNames,
                                       provenance: Provenance(source: "synthetic faces, seed \(seed)"))
        let pixels = UnsafeMutablePointer<UInt8>.allocate(capacity: pixelBytes)
        defer { pixels.deallocate() }
        for index in 0..<count {
            let values = render(index: index, into: pixels)
            try writer.append(pixels: pixels, attributes: values, partition: partition(index: index), imageNumber: index)
        }
        try writer.finish()
    }
}

/// One face's geometry and colours, in image coordinates scaled to [0, 1] (y down).
private struct Face {
    let background: (top: SIMD3<Float>, bottom: SIMD3<Float>)
    let centre: SIMD2<Float>
    let radii: SIMD2<Float>
    let skin: SIMD3<Float>
    let hair: SIMD3<Float>
    let clothes: SIMD3<Float>
    let iris: SIMD3<Float>
    let lips: SIMD3<Float>
    let hairline: Float
    let eyeOffset: Float
    let eyeHeight: Float
    let male: Bool, eyeglasses: Bool, smiling: Bool
    let beardStrength: Float

    init(jitter: (UInt32) -> Float, attributes: [Int8]) {
        let blond = attributes[0] > 0, pale = attributes[3] > 0
        eyeglasses = attributes[1] > 0
        male = attributes[2] > 0
        smiling = attributes[4] > 0

        func colour(_ first: UInt32) -> SIMD3<Float> { SIMD3(jitter(first), jitter(first + 1), jitter(first + 2)) }
        background = (0.25 + 0.6 * colour(0), 0.15 + 0.5 * colour(3))
        let scale = 0.9 + 0.2 * jitter(6)
        centre = SIMD2(0.5 + 0.08 * (jitter(7) - 0.5), 0.52 + 0.06 * (jitter(8) - 0.5))
        radii = scale * SIMD2(0.22, 0.29)
        let tone = jitter(9)
        skin = pale ? mix(SIMD3(0.99, 0.92, 0.88), SIMD3(0.94, 0.85, 0.80), tone)
                    : mix(SIMD3(0.90, 0.70, 0.55), SIMD3(0.50, 0.32, 0.20), tone)
        let shade = jitter(10)
        hair = blond ? mix(SIMD3(0.97, 0.87, 0.52), SIMD3(0.85, 0.68, 0.33), shade)
                     : mix(SIMD3(0.08, 0.06, 0.05), SIMD3(0.38, 0.22, 0.10), shade)
        clothes = 0.1 + 0.8 * colour(11)
        iris = mix(SIMD3(0.15, 0.30, 0.55), SIMD3(0.30, 0.18, 0.08), jitter(14))
        lips = mix(SIMD3(0.70, 0.25, 0.25), SIMD3(0.50, 0.15, 0.15), jitter(15))
        hairline = centre.y - radii.y * (0.55 + 0.15 * jitter(16))
        eyeOffset = radii.x * (0.38 + 0.08 * jitter(17))
        eyeHeight = centre.y - radii.y * (0.10 + 0.06 * jitter(18))
        beardStrength = 0.25 + 0.25 * jitter(19)
    }

    func colour(at p: SIMD2<Float>, pixelWidth: Float) -> SIMD3<Float> {
        func cover(_ signedDistance: Float) -> Float { min(max(0.5 - signedDistance / pixelWidth, 0), 1) }
        var colour = mix(background.top, background.bottom, p.y)

        // Back to front: long hair, shoulders, neck, hair around the head, face.
        let headHair = male ? ellipse(p, centre - SIMD2(0, radii.y * 0.12), radii * SIMD2(1.06, 1.0))
                            : ellipse(p, centre - SIMD2(0, radii.y * 0.08), radii * SIMD2(1.2, 1.12))
        if !male {
            colour = mix(colour, hair, cover(ellipse(p, centre + SIMD2(0, radii.y * 0.45), radii * SIMD2(1.3, 1.1))))
        }
        colour = mix(colour, clothes, cover(ellipse(p, SIMD2(centre.x, 1.1), SIMD2(0.4, 0.24))))
        colour = mix(colour, skin * 0.9, cover(ellipse(p, centre + SIMD2(0, radii.y * 0.9), radii * SIMD2(0.42, 0.5))))
        colour = mix(colour, hair, cover(headHair))
        let faceCover = cover(ellipse(p, centre, radii))
        colour = mix(colour, skin, faceCover)

        // On the face: beard shadow, fringe, eyebrows, eyes, glasses, mouth. All of them lie inside
        // the face, so the four fifths of the image outside it skip their distance computations.
        guard faceCover > 0 else { return colour }
        if male {
            let jaw = smoothstep(centre.y + radii.y * 0.2, centre.y + radii.y * 0.6, p.y)
            colour = mix(colour, mix(skin, hair, 0.5), faceCover * jaw * beardStrength)
        }
        colour = mix(colour, hair, faceCover * cover(p.y - hairline))
        for side: Float in [-1, 1] {
            let eye = SIMD2(centre.x + side * eyeOffset, eyeHeight)
            let brow = eye - SIMD2(0, radii.y * 0.15)
            colour = mix(colour, hair * 0.6, cover(ellipse(p, brow, radii * SIMD2(0.2, 0.035))))
            colour = mix(colour, SIMD3(0.97, 0.97, 0.95), cover(ellipse(p, eye, radii * SIMD2(0.17, 0.08))))
            colour = mix(colour, iris, cover(ellipse(p, eye, SIMD2(repeating: radii.y * 0.065))))
            if eyeglasses {
                let ring = radii.x * 0.3
                let distance = length(p - eye)
                colour = mix(colour, SIMD3(0.35, 0.40, 0.45), 0.3 * cover(distance - ring))
                colour = mix(colour, SIMD3(0.05, 0.05, 0.06), cover(abs(distance - ring) - radii.y * 0.035))
            }
        }
        if eyeglasses {
            let bridge = segment(p, SIMD2(centre.x - eyeOffset + radii.x * 0.3, eyeHeight),
                                 SIMD2(centre.x + eyeOffset - radii.x * 0.3, eyeHeight))
            colour = mix(colour, SIMD3(0.05, 0.05, 0.06), cover(bridge - radii.y * 0.03))
        }
        colour = mix(colour, lips, cover(mouth(p)))
        return colour
    }

    /// Signed distance to the mouth: a thick arc that bends into a U (corners up) when smiling.
    private func mouth(_ p: SIMD2<Float>) -> Float {
        let halfWidth = radii.x * (smiling ? 0.45 : 0.35)
        let bend = smiling ? radii.y * 0.15 : 0
        let middle = centre.y + radii.y * 0.48
        let dx = min(max(p.x - centre.x, -halfWidth), halfWidth)
        let arcY = middle + bend * (1 - (dx / halfWidth) * (dx / halfWidth))
        return length(p - SIMD2(centre.x + dx, arcY)) - radii.y * (smiling ? 0.055 : 0.035)
    }
}

/// Approximate signed distance to an axis-aligned ellipse (exact on the boundary, first order near it).
private func ellipse(_ p: SIMD2<Float>, _ centre: SIMD2<Float>, _ radii: SIMD2<Float>) -> Float {
    let q = (p - centre) / radii
    let k = length(q)
    let gradientLength = length(q / radii)
    return gradientLength > 0 ? (k - 1) * k / gradientLength : -radii.min()
}

/// Distance to the segment from a to b.
private func segment(_ p: SIMD2<Float>, _ a: SIMD2<Float>, _ b: SIMD2<Float>) -> Float {
    let ab = b - a, ap = p - a
    let t = min(max((ap * ab).sum() / (ab * ab).sum(), 0), 1)
    return length(ap - t * ab)
}

private func length(_ v: SIMD2<Float>) -> Float { (v * v).sum().squareRoot() }

private func mix(_ a: SIMD3<Float>, _ b: SIMD3<Float>, _ t: Float) -> SIMD3<Float> { a + (b - a) * t }

private func smoothstep(_ edge0: Float, _ edge1: Float, _ x: Float) -> Float {
    let t = min(max((x - edge0) / (edge1 - edge0), 0), 1)
    return t * t * (3 - 2 * t)
}
