import Testing
import VAEData

/// The pixels an image holds in `ink`, as rows of "#" and ".".
private func picture(_ image: RGBImage, ink: RGB) -> [String] {
    (0..<image.height).map { y in
        String((0..<image.width).map { x in
            let i = (y * image.width + x) * 3
            return image.rgb[i] == ink.red && image.rgb[i + 1] == ink.green && image.rgb[i + 2] == ink.blue ? "#" : "."
        })
    }
}

private let white = RGB(255, 255, 255), black = RGB(0, 0, 0)

/// Glyphs land where the font's table says, a column apart, lower case drawn as capitals; scale 2
/// doubles every pixel.
@Test func bitmapFontDrawsItsGlyphs() {
    var image = RGBImage(width: 17, height: 7, background: white)
    BitmapFont.drawText("1.k", x: 0, y: 0, color: black, into: &image)
    #expect(BitmapFont.width(of: "1.k") == 17)
    #expect(picture(image, ink: black) == [
        "..#.........#...#",
        ".##.........#..#.",
        "..#.........#.#..",
        "..#.........##...",
        "..#.........#.#..",
        "..#....##...#..#.",
        ".###...##...#...#",
    ])
    var doubled = RGBImage(width: 10, height: 14, background: white)
    BitmapFont.drawText("-", x: 0, y: 0, scale: 2, color: black, into: &doubled)
    #expect(picture(doubled, ink: black) == Array(repeating: "..........", count: 6) + ["##########", "##########"]
            + Array(repeating: "..........", count: 6))
}

/// A line covers both end points and one pixel per column along its longer side; pixels outside
/// the image are dropped.
@Test func lineRunsBetweenItsEnds() {
    var image = RGBImage(width: 5, height: 3, background: white)
    image.drawLine(from: (0, 0), to: (4, 2), black)
    image.drawLine(from: (-3, 2), to: (1, 2), black)
    #expect(picture(image, ink: black) == [
        "#....",
        ".##..",
        "##.##",
    ])
}
