import CPNG

/// libpng's "simplified API" reports errors in the png_image instead of longjmp-ing, which Swift
/// cannot survive; these functions use only that API.

/// Writes width x height RGB bytes (HWC) as an 8-bit PNG.
public func writePNG(path: String, width: Int, height: Int, rgb: UnsafePointer<UInt8>) throws {
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    image.width = UInt32(width)
    image.height = UInt32(height)
    image.format = UInt32(PNG_FORMAT_RGB)
    guard png_image_write_to_file(&image, path, 0, rgb, Int32(width * 3), nil) != 0 else {
        throw DataError.unwritable(path: path, reason: pngMessage(image))
    }
}

/// Reads a PNG as 8-bit RGB bytes (HWC), converting from whatever format it has.
public func readPNG(path: String) throws -> (width: Int, height: Int, rgb: [UInt8]) {
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    guard png_image_begin_read_from_file(&image, path) != 0 else {
        throw DataError.unreadable(path: path, reason: pngMessage(image))
    }
    image.format = UInt32(PNG_FORMAT_RGB)
    var rgb = [UInt8](repeating: 0, count: Int(image.width) * Int(image.height) * 3)
    guard png_image_finish_read(&image, nil, &rgb, Int32(image.width) * 3, nil) != 0 else {
        throw DataError.unreadable(path: path, reason: pngMessage(image))
    }
    return (Int(image.width), Int(image.height), rgb)
}

private func pngMessage(_ image: png_image) -> String {
    withUnsafeBytes(of: image.message) { bytes in
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// Lays RGB images (imageSize x imageSize x 3 bytes each) out row by row, `columns` to a row,
/// separated by a dark border, and writes the grid as a PNG. With `rowLabels`, row r has
/// rowLabels[r] written beside it in a margin on the left (5x7 capitals, see BitmapFont).
public func writeImageGrid(path: String, images: [UnsafePointer<UInt8>], imageSize: Int, columns: Int,
                           rowLabels: [String] = []) throws {
    precondition(!images.isEmpty && columns > 0, "a grid needs images and at least one column")
    let border = 2
    let rows = (images.count + columns - 1) / columns
    let labelWidth = rowLabels.isEmpty ? 0 : (rowLabels.map(\.count).max()! * BitmapFont.advance + 2 * border)
    let width = labelWidth + columns * (imageSize + border) + border
    let height = rows * (imageSize + border) + border
    var canvas = [UInt8](repeating: 24, count: width * height * 3)
    for (n, image) in images.enumerated() {
        let left = labelWidth + border + (n % columns) * (imageSize + border)
        let top = border + (n / columns) * (imageSize + border)
        for y in 0..<imageSize {
            let row = ((top + y) * width + left) * 3
            canvas.withUnsafeMutableBufferPointer { out in
                (out.baseAddress! + row).update(from: image + y * imageSize * 3, count: imageSize * 3)
            }
        }
    }
    for (row, label) in rowLabels.prefix(rows).enumerated() {
        // Light grey, centred on the row's height (clipped where the images are smaller than a glyph).
        let top = border + row * (imageSize + border) + max(0, (imageSize - BitmapFont.glyphHeight) / 2)
        for (x, y) in BitmapFont.pixels(of: label) where top + y < height {
            let pixel = ((top + y) * width + border + x) * 3
            canvas[pixel] = 220
            canvas[pixel + 1] = 220
            canvas[pixel + 2] = 220
        }
    }
    try writePNG(path: path, width: width, height: height, rgb: canvas)
}

/// The same for Float32 images in [0, 1] (count x imageSize x imageSize x 3, NHWC), as the model
/// produces them: values are clamped and rounded, NaN shows as black.
public func writeImageGrid(path: String, pixels: UnsafePointer<Float>, count: Int, imageSize: Int,
                           columns: Int, rowLabels: [String] = []) throws {
    let values = imageSize * imageSize * 3
    let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: count * values)
    defer { bytes.deallocate() }
    for j in 0..<(count * values) { bytes[j] = unitToByte(pixels[j]) }
    try writeImageGrid(path: path, images: (0..<count).map { UnsafePointer(bytes + $0 * values) },
                       imageSize: imageSize, columns: columns, rowLabels: rowLabels)
}

/// [0, 1] to 0...255, rounded; out-of-range values clamp, NaN becomes 0.
@inline(__always)
func unitToByte(_ value: Float) -> UInt8 {
    value.isNaN ? 0 : UInt8(min(max(value, 0), 1) * 255 + 0.5)
}
