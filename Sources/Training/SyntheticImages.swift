import VAEData
import VAEEngine

extension SyntheticFaces {
    /// Faces 0..<count as Float32 [count, H, W, 3] in [0, 1], for benchmarks and tests that need
    /// training data in memory without a dataset file.
    public func floatImages(count: Int) -> FloatBuffer {
        let images = FloatBuffer(count: count * pixelBytes)
        let pixels = UnsafeMutablePointer<UInt8>.allocate(capacity: pixelBytes)
        defer { pixels.deallocate() }
        for index in 0..<count {
            render(index: index, into: pixels)
            convertPixels(pixels, into: images.pointer + index * pixelBytes, count: pixelBytes)
        }
        return images
    }
}
