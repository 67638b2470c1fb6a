import Foundation
import VAEData

/// RUN_DIR/loss.png: the training and validation curves of the loss, the reconstruction term and
/// the KL term, side by side (their scales differ by orders of magnitude), drawn from
/// metrics.jsonl, which holds the whole run's history across resumes.
enum LossPlot {
    static let panelWidth = 400, panelHeight = 300
    static let width = 3 * panelWidth, height = panelHeight

    private static let scale = 2
    private static let lineHeight = BitmapFont.glyphHeight * scale
    /// Room for the title and, below it, the legend above a panel's plot area, and for the axis labels around it.
    private static let top = 50, bottom = 26, left = 104, right = 16
    private static let background = RGB(255, 255, 255), ink = RGB(40, 40, 40), grid = RGB(225, 225, 225)
    private static let trainColor = RGB(31, 119, 180), validColor = RGB(255, 127, 14)

    private struct Point {
        var step: Double
        var values: [Double]  // loss, recon, kl
    }

    private static let metrics = [("loss", "loss"), ("recon", "reconstruction"), ("kl", "KL")]

    /// Redraws `path` from the metrics file `metricsPath`.
    static func draw(metricsPath: String, to path: String) throws {
        let (train, valid) = try readHistory(metricsPath)
        var image = RGBImage(width: width, height: height, background: background)
        for (index, metric) in metrics.enumerated() {
            drawPanel(title: metric.1, train: train.map { ($0.step, $0.values[index]) },
                      valid: valid.map { ($0.step, $0.values[index]) }, left: index * panelWidth, into: &image)
        }
        try image.writePNG(path: path)
    }

    /// Training lines (no "eval") and validation evaluations, in file order.
    private static func readHistory(_ path: String) throws -> (train: [Point], valid: [Point]) {
        var train: [Point] = [], valid: [Point] = []
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let step = record["step"] as? Int else { continue }
            let values = metrics.compactMap { record[$0.0] as? Double }
            guard values.count == metrics.count else { continue }  // events carry no losses
            if record["eval"] as? Bool == true {
                if record["partition"] as? String == "valid" { valid.append(Point(step: Double(step), values: values)) }
            } else {
                train.append(Point(step: Double(step), values: values))
            }
        }
        return (train, valid)
    }

    private static func drawPanel(title: String, train: [(Double, Double)], valid: [(Double, Double)], left panelLeft: Int,
                                  into image: inout RGBImage) {
        let plotLeft = panelLeft + left, plotRight = panelLeft + panelWidth - right
        let plotTop = top, plotBottom = panelHeight - bottom
        let all = train + valid
        let maxStep = max(all.map(\.0).max() ?? 1, 1)
        var low = all.map(\.1).min() ?? 0, high = all.map(\.1).max() ?? 1
        if high - low < 1e-9 * max(abs(high), 1) { low -= 1; high += 1 }
        let margin = 0.05 * (high - low)
        low -= margin
        high += margin
        let toPixel = { (step: Double, value: Double) -> (x: Int, y: Int) in
            (plotLeft + Int((step / maxStep * Double(plotRight - plotLeft)).rounded()),
             plotBottom - Int(((value - low) / (high - low) * Double(plotBottom - plotTop)).rounded()))
        }

        // Horizontal grid lines with their values, then the axes.
        for fraction in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let value = low + fraction * (high - low)
            let y = toPixel(0, value).y
            image.drawLine(from: (plotLeft, y), to: (plotRight, y), grid)
            let label = formatValue(value)
            BitmapFont.drawText(label, x: plotLeft - 6 - BitmapFont.width(of: label, scale: scale), y: y - lineHeight / 2,
                                scale: scale, color: ink, into: &image)
        }
        image.drawLine(from: (plotLeft, plotTop), to: (plotLeft, plotBottom), ink)
        image.drawLine(from: (plotLeft, plotBottom), to: (plotRight, plotBottom), ink)
        BitmapFont.drawText("0", x: plotLeft, y: plotBottom + 6, scale: scale, color: ink, into: &image)
        let stepLabel = "step \(Int(maxStep))"
        BitmapFont.drawText(stepLabel, x: plotRight - BitmapFont.width(of: stepLabel, scale: scale), y: plotBottom + 6,
                            scale: scale, color: ink, into: &image)

        // The title, and the legend on the right below it.
        BitmapFont.drawText(title, x: plotLeft, y: 6, scale: scale, color: ink, into: &image)
        var legendX = plotRight
        for (name, color) in [("valid", validColor), ("train", trainColor)] {
            legendX -= BitmapFont.width(of: name, scale: scale)
            BitmapFont.drawText(name, x: legendX, y: 26, scale: scale, color: color, into: &image)
            legendX -= 16
            image.fillRectangle(x: legendX, y: 26, width: 10, height: lineHeight, color)
            legendX -= 16
        }

        // Validation comes once an epoch: dots show where each of its points is.
        for (points, color, dotted) in [(train, trainColor, false), (valid, validColor, true)] {
            let pixels = points.map(toPixel)
            for (start, end) in zip(pixels, pixels.dropFirst()) { image.drawLine(from: start, to: end, thickness: 2, color) }
            if dotted {
                for point in pixels { image.fillRectangle(x: point.x - 3, y: point.y - 3, width: 7, height: 7, color) }
            }
        }
    }

    /// Three significant digits at most (eight characters at most), without an exponent for this
    /// model's ranges.
    private static func formatValue(_ value: Double) -> String {
        abs(value) >= 1000 ? String(format: "%.0f", value) : String(format: "%.3g", value)
    }
}
