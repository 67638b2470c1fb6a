import Testing
@testable import VAEData

@Test func pngRoundTrips() throws {
    let directory = try TemporaryDirectory()
    let path = directory.file("image.png")
    let width = 5, height = 3
    let rgb = (0..<(width * height * 3)).map { UInt8($0 * 5) }
    try writePNG(path: path, width: width, height: height, rgb: rgb)
    let read = try readPNG(path: path)
    #expect(read.width == width && read.height == height)
    #expect(read.rgb == rgb)

    let error = expectDataError { try writePNG(path: directory.file("absent/image.png"), width: 1, height: 1, rgb: rgb) }
    #expect(error?.description.hasPrefix(directory.file("absent/image.png") + ": cannot write") == true)
}

@Test func gridPlacesImagesRowByRowWithABorder() throws {
    let directory = try TemporaryDirectory()
    let path = directory.file("grid.png")
    let size = 4, border = 2
    // Five flat images, grey levels 10, 20, ..., 50, in a grid of three columns.
    let values = size * size * 3
    let pixels = (1...5).flatMap { [UInt8](repeating: UInt8($0 * 10), count: values) }
    try pixels.withUnsafeBufferPointer { all in
        try writeImageGrid(path: path, images: (0..<5).map { all.baseAddress! + $0 * values }, imageSize: size, columns: 3)
    }
    let grid = try readPNG(path: path)
    #expect(grid.width == 3 * (size + border) + border)
    #expect(grid.height == 2 * (size + border) + border)
    func grey(_ x: Int, _ y: Int) -> UInt8 { grid.rgb[(y * grid.width + x) * 3] }
    for n in 0..<5 {
        let left = border + (n % 3) * (size + border), top = border + (n / 3) * (size + border)
        #expect(grey(left, top) == UInt8((n + 1) * 10))
        #expect(grey(left + size - 1, top + size - 1) == UInt8((n + 1) * 10))
    }
    #expect(grey(0, 0) == 24, "border")
    #expect(grey(grid.width - 3, grid.height - 3) == 24, "the empty sixth cell")
}

@Test func floatGridClampsAndRounds() throws {
    let directory = try TemporaryDirectory()
    let path = directory.file("floats.png")
    let values: [Float] = [0, 1, 0.5, -3, 7, .nan, 0.2, 0.8, 1 / 255]
    try writeImageGrid(path: path, pixels: values, count: 3, imageSize: 1, columns: 3)
    let grid = try readPNG(path: path)
    let inside = [2, 5, 8].flatMap { x in (0..<3).map { grid.rgb[(2 * grid.width + x) * 3 + $0] } }
    #expect(inside == [0, 255, 128, 0, 255, 0, 51, 204, 1])
}
