import Testing
@testable import VAEData

private func rendered(_ faces: SyntheticFaces, index: Int, attributes: [Int8]? = nil) -> [UInt8] {
    var pixels = [UInt8](repeating: 0, count: faces.pixelBytes)
    faces.render(index: index, attributes: attributes ?? faces.attributes(index: index), into: &pixels)
    return pixels
}

/// Mean absolute difference of two images inside a box given as fractions of the image size.
private func meanDifference(_ a: [UInt8], _ b: [UInt8], size: Int, rows: ClosedRange<Double>,
                            columns: ClosedRange<Double> = 0...1) -> Double {
    func pixelRange(_ fractions: ClosedRange<Double>) -> Range<Int> {
        Int(fractions.lowerBound * Double(size))..<min(Int(fractions.upperBound * Double(size)), size)
    }
    var total = 0, values = 0
    for y in pixelRange(rows) {
        for x in pixelRange(columns) {
            for c in 0..<3 { total += abs(Int(a[(y * size + x) * 3 + c]) - Int(b[(y * size + x) * 3 + c])) }
            values += 3
        }
    }
    return Double(total) / Double(values)
}

@Test func syntheticFacesAreDeterministic() {
    let faces = SyntheticFaces(seed: 3, imageSize: 32)
    #expect(rendered(faces, index: 11) == rendered(SyntheticFaces(seed: 3, imageSize: 32), index: 11))
    #expect(faces.attributes(index: 11) == SyntheticFaces(seed: 3, imageSize: 32).attributes(index: 11))
    #expect(rendered(faces, index: 11) != rendered(faces, index: 12))
    #expect(rendered(faces, index: 11) != rendered(SyntheticFaces(seed: 4, imageSize: 32), index: 11))
}

@Test func syntheticAttributesAreBalancedIndependentAndSplit() {
    let faces = SyntheticFaces(seed: 1)
    let count = 4000
    var positives = [Int](repeating: 0, count: 5)
    var smilingMale = 0
    var partitions = [Partition: Int]()
    for index in 0..<count {
        let values = faces.attributes(index: index)
        for a in 0..<5 where values[a] > 0 { positives[a] += 1 }
        if values[2] > 0 && values[4] > 0 { smilingMale += 1 }
        partitions[faces.partition(index: index), default: 0] += 1
    }
    for a in 0..<5 { #expect(abs(Double(positives[a]) / Double(count) - 0.5) < 0.04, "\(SyntheticFaces.attributeNames[a])") }
    #expect(abs(Double(smilingMale) / Double(count) - 0.25) < 0.03)
    #expect(partitions == [.train: 3200, .valid: 400, .test: 400])
}

@Test func syntheticAttributesDriveThePixelsWhereTheyShould() {
    let size = 64
    let faces = SyntheticFaces(seed: 5, imageSize: size)
    let smiling = SyntheticFaces.attributeNames.firstIndex(of: "Smiling")!
    let eyeglasses = SyntheticFaces.attributeNames.firstIndex(of: "Eyeglasses")!
    let blond = SyntheticFaces.attributeNames.firstIndex(of: "Blond_Hair")!
    for index in 0..<8 {
        var without = faces.attributes(index: index)
        without[smiling] = -1
        without[eyeglasses] = -1
        without[blond] = -1
        var withSmile = without
        withSmile[smiling] = 1
        var withGlasses = without
        withGlasses[eyeglasses] = 1
        var withBlond = without
        withBlond[blond] = 1
        let plain = rendered(faces, index: index, attributes: without)

        // The mouth is in the lower half of the face; the upper half must not change at all.
        let smile = rendered(faces, index: index, attributes: withSmile)
        #expect(meanDifference(plain, smile, size: size, rows: 0...0.55) == 0)
        #expect(meanDifference(plain, smile, size: size, rows: 0.6...0.8, columns: 0.35...0.65) > 2)
        // Glasses sit around the eyes, above the mouth.
        let glasses = rendered(faces, index: index, attributes: withGlasses)
        #expect(meanDifference(plain, glasses, size: size, rows: 0.35...0.6, columns: 0.2...0.8) > 5)
        #expect(meanDifference(plain, glasses, size: size, rows: 0.75...1) == 0)
        // Blond hair is brighter than dark hair.
        let blondFace = rendered(faces, index: index, attributes: withBlond)
        #expect(blondFace.reduce(0) { $0 + Int($1) } > plain.reduce(0) { $0 + Int($1) })
    }
}

@Test func syntheticFacesAreSmoothAtEverySize() {
    for size in [16, 32, 64] {
        let faces = SyntheticFaces(seed: 9, imageSize: size)
        let pixels = rendered(faces, index: 2)
        // Neighbouring pixels differ little on average (noise would give about 85 grey levels)...
        var step = 0
        for y in 0..<size {
            for x in 1..<size {
                for c in 0..<3 { step += abs(Int(pixels[(y * size + x) * 3 + c]) - Int(pixels[(y * size + x - 1) * 3 + c])) }
            }
        }
        let meanStep = Double(step) / Double(size * (size - 1) * 3)
        #expect(meanStep < 12, "size \(size): mean horizontal step \(meanStep)")
        // ...but the image has structure, not a flat colour.
        #expect(Set(pixels).count > 40, "size \(size)")
    }
}
