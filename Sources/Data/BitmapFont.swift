/// A 3x5-pixel font of capitals, digits and a little punctuation, for labels on charts: enough
/// to read numbers and short names without a font library. Lower case is drawn as capitals;
/// characters it lacks are drawn as blanks.
public enum BitmapFont {
    public static let glyphWidth = 3, glyphHeight = 5
    /// Pixels from one character to the next, at scale 1.
    public static let advance = glyphWidth + 1

    /// Each glyph is five octal digits, one per row from the top; a digit's bits are the row's
    /// pixels, left (4) to right (1).
    private static let glyphs: [Character: Int] = [
        "0": 0o75557, "1": 0o26227, "2": 0o71747, "3": 0o71317, "4": 0o55711,
        "5": 0o74717, "6": 0o74757, "7": 0o71111, "8": 0o75757, "9": 0o75717,
        "A": 0o25755, "B": 0o65656, "C": 0o34443, "D": 0o65556, "E": 0o74647, "F": 0o74644,
        "G": 0o34553, "H": 0o55755, "I": 0o72227, "J": 0o11152, "K": 0o55655, "L": 0o44447,
        "M": 0o57755, "N": 0o65555, "O": 0o25552, "P": 0o65644, "Q": 0o25563, "R": 0o65655,
        "S": 0o34216, "T": 0o72222, "U": 0o55557, "V": 0o55552, "W": 0o55775, "X": 0o55255,
        "Y": 0o55222, "Z": 0o71247,
        ".": 0o00002, ",": 0o00024, "-": 0o00700, "+": 0o02720, ":": 0o02020, "/": 0o11244,
        "(": 0o12221, ")": 0o42224, "=": 0o07070, "%": 0o41241,
    ]

    /// Pixels that `text` spans across at `scale`.
    public static func width(of text: String, scale: Int = 1) -> Int {
        max(text.count * advance - 1, 0) * scale
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel `scale` pixels square.
    public static func drawText(_ text: String, x: Int, y: Int, scale: Int = 1, color: RGB, into image: inout RGBImage) {
        for (position, character) in text.uppercased().enumerated() {
            let glyph = glyphs[character] ?? 0
            let left = x + position * advance * scale
            for row in 0..<glyphHeight {
                let bits = glyph >> (3 * (glyphHeight - 1 - row)) & 0o7
                for column in 0..<glyphWidth where bits & (4 >> column) != 0 {
                    image.fillRectangle(x: left + column * scale, y: y + row * scale, width: scale, height: scale, color)
                }
            }
        }
    }
}
