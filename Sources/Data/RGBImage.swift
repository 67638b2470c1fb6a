/// An RGB picture in memory (8 bits per channel, rows top to bottom), for drawing charts and labels
/// before writing them with `writePNG`.
public struct RGBImage {
    public let width: Int, height: Int
    public var rgb: [UInt8]

    public init(width: Int, height: Int, background: RGB) {
        self.width = width
        self.height = height
        rgb = [UInt8]((0..<(width * height)).lazy.flatMap { _ in [background.red, background.green, background.blue] })
    }

    /// Sets one pixel; points outside the picture are ignored, so shapes may run over its edges.
    public mutating func set(x: Int, y: Int, _ color: RGB) {
        guard x >= 0 && x < width && y >= 0 && y < height else { return }
        let i = (y * width + x) * 3
        rgb[i] = color.red
        rgb[i + 1] = color.green
        rgb[i + 2] = color.blue
    }

    public mutating func fillRectangle(x: Int, y: Int, width: Int, height: Int, _ color: RGB) {
        for row in y..<(y + height) {
            for column in x..<(x + width) { set(x: column, y: row, color) }
        }
    }

    /// A straight line `thickness` pixels wide (Bresenham's, with a square pen).
    public mutating func drawLine(from start: (x: Int, y: Int), to end: (x: Int, y: Int), thickness: Int = 1,
                                  _ color: RGB) {
        let dx = abs(end.x - start.x), dy = -abs(end.y - start.y)
        let stepX = start.x < end.x ? 1 : -1, stepY = start.y < end.y ? 1 : -1
        var (x, y) = start
        var error = dx + dy
        while true {
            fillRectangle(x: x - thickness / 2, y: y - thickness / 2, width: thickness, height: thickness, color)
            if x == end.x && y == end.y { return }
            let doubled = 2 * error  // both tests look at the error before either step
            if doubled >= dy { error += dy; x += stepX }
            if doubled <= dx { error += dx; y += stepY }
        }
    }

    public func writePNG(path: String) throws {
        try VAEData.writePNG(path: path, width: width, height: height, rgb: rgb)
    }
}

public struct RGB: Sendable {
    public var red: UInt8, green: UInt8, blue: UInt8

    public init(_ red: UInt8, _ green: UInt8, _ blue: UInt8) {
        self.red = red
        self.green = green
        self.blue = blue
    }
}
