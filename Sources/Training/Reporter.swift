#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import VAEEngine

/// What rank 0 shows and records: a one-line progress bar on a terminal (plain periodic lines
/// otherwise), RUN_DIR/metrics.jsonl, one JSON object per logged step or evaluation, and the same
/// values as TensorBoard scalars.
final class Reporter {
    private let metrics: FileHandle
    private let tensorBoard: TensorBoardWriter?
    /// A live bar on a terminal, plain lines otherwise. Under mpirun a rank's output is a pseudo
    /// terminal whatever mpirun writes to, so launch/train.sh says which in VAE_PROGRESS.
    private let interactive = ProcessInfo.processInfo.environment["VAE_PROGRESS"].map { $0 == "bar" }
        ?? (isatty(STDOUT_FILENO) == 1)
    private let totalSteps: Int, stepsPerEpoch: Int, epochs: Int, logEvery: Int
    private let start = monotonicSeconds()
    /// Images and time at the last logged step, for the rate over the latest window.
    private var windowStart: (images: Int, seconds: Double)
    private var lastBarTime = 0.0

    /// A resumed run (`firstStep` > 0) first drops the lines logged after its checkpoint: those
    /// steps run again and are logged again.
    init(metricsPath: String, totalSteps: Int, stepsPerEpoch: Int, epochs: Int, logEvery: Int, firstStep: Int,
         globalBatch: Int, tensorBoard: TensorBoardWriter?) throws {
        if !FileManager.default.fileExists(atPath: metricsPath) {
            _ = FileManager.default.createFile(atPath: metricsPath, contents: nil)
        }
        droppedLines = try Reporter.dropLines(after: firstStep, in: metricsPath)
        guard let handle = FileHandle(forWritingAtPath: metricsPath) else {
            throw TrainingError("\(metricsPath): cannot write: \(String(cString: strerror(errno)))")
        }
        handle.seekToEndOfFile()
        metrics = handle
        self.tensorBoard = tensorBoard
        self.totalSteps = totalSteps
        self.stepsPerEpoch = stepsPerEpoch
        self.epochs = epochs
        self.logEvery = logEvery
        windowStart = (firstStep * globalBatch, monotonicSeconds())
        self.firstStep = firstStep
        firstImages = firstStep * globalBatch
    }

    /// Where this process started (later than 0 when resuming), for its rate and ETA.
    private let firstStep: Int, firstImages: Int

    /// Lines `init` dropped from metrics.jsonl.
    let droppedLines: Int

    deinit { try? metrics.close() }

    /// Keeps the lines of `path` whose step is at most `step` (a line cut short by a crash has
    /// none, and goes too); returns how many went.
    static func dropLines(after step: Int, in path: String) throws -> Int {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n")
        let kept = lines.filter { line in
            let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return (record?["step"] as? Int).map { $0 <= step } ?? false
        }
        guard kept.count < lines.count || !(text.isEmpty || text.hasSuffix("\n")) else { return 0 }
        try writeAtomically(Data(kept.map { $0 + "\n" }.joined().utf8), to: path)
        return lines.count - kept.count
    }

    /// Whether step `step` (steps done) gets a metrics line.
    static func isLogged(step: Int, logEvery: Int, totalSteps: Int) -> Bool {
        step % logEvery == 0 || step == totalSteps
    }

    /// The ranks' compute times of the last logged interval, shown while there are several ranks.
    private var compute: ComputeSpread?

    /// After step `step` (1-based count of completed steps) with the global batch's loss, and at
    /// logged steps the ranks' compute times of the interval (`Stragglers`).
    func stepFinished(step: Int, images: Int, loss: LossSums, beta: Float, compute: ComputeSpread?) {
        let now = monotonicSeconds()
        if let compute, compute.secondsPerStep.count > 1 { self.compute = compute }
        if Reporter.isLogged(step: step, logEvery: logEvery, totalSteps: totalSteps) {
            let rate = Double(images - windowStart.images) / max(now - windowStart.seconds, 1e-9)
            windowStart = (images, now)
            let means = loss.means(beta: beta)
            record(["step": step, "epoch": epoch(of: step), "images": images, "loss": means.loss,
                    "recon": means.reconstruction, "kl": means.kl, "images_per_s": rate, "seconds": now - start]
                .merging(compute?.fields ?? [:]) { $1 })
            tensorBoard?.scalars(["train/loss": means.loss, "train/recon": means.reconstruction, "train/kl": means.kl,
                                  "train/images_per_s": rate], step: step)
            if !interactive { print(line(step: step, rate: rate, loss: loss, beta: beta, now: now)) }
        }
        if interactive && (now - lastBarTime > 0.25 || step == totalSteps) {
            lastBarTime = now
            let rate = Double(images - firstImages) / max(now - start, 1e-9)
            print("\r" + line(step: step, rate: rate, loss: loss, beta: beta, now: now) + "\u{1B}[K", terminator: "")
            fflush(nil)
        }
    }

    /// A held-out evaluation at the end of an epoch.
    func evaluation(step: Int, partition: String, loss: LossSums, beta: Float) {
        let means = loss.means(beta: beta)
        record(["step": step, "epoch": epoch(of: max(step, 1)), "eval": true, "partition": partition,
                "images": loss.images, "loss": means.loss, "recon": means.reconstruction, "kl": means.kl,
                "seconds": monotonicSeconds() - start])
        tensorBoard?.scalars(["\(partition)/loss": means.loss, "\(partition)/recon": means.reconstruction,
                              "\(partition)/kl": means.kl], step: step)
        message(String(format: "%@ (%d images): loss %.2f  recon %.2f  KL %.2f", partition, loss.images,
                       means.loss, means.reconstruction, means.kl))
    }

    /// Something that happened to the run after `step` steps (stopping on a signal, a resume that
    /// changed settings), with what else says what. Its line carries the step, so a later resume
    /// from an earlier checkpoint drops it with the steps it followed.
    func event(_ name: String, step: Int, details: [String: Any] = [:]) {
        record(details.merging(["event": name, "step": step]) { $1 })
    }

    /// A resume that changed what the checkpoint's run used (the learning rate, the epochs), as
    /// [old, new] by name.
    func resumed(step: Int, changed: [String: [Any]]) {
        event("resume", step: step, details: ["changed": changed])
        let described = changed.keys.sorted().map { "\($0) \(changed[$0]![0]) -> \(changed[$0]![1])" }
        message("changed on resume: " + described.joined(separator: ", "))
    }

    /// A line of its own, below the progress bar.
    func message(_ text: String) {
        print((interactive ? "\r\u{1B}[K" : "") + text)
        fflush(nil)
    }

    private func epoch(of step: Int) -> Int { (step - 1) / stepsPerEpoch + 1 }

    private func line(step: Int, rate: Double, loss: LossSums, beta: Float, now: Double) -> String {
        let means = loss.means(beta: beta)
        let width = 20, filled = width * step / max(totalSteps, 1)
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let stepInEpoch = (step - 1) % stepsPerEpoch + 1
        // The steps this epoch will run: fewer than an epoch's when --max-steps ends the run early.
        let epochStart = (epoch(of: step) - 1) * stepsPerEpoch
        let stepsThisEpoch = min(stepsPerEpoch, totalSteps - epochStart)
        let remaining = Double(totalSteps - step) * (now - start) / Double(max(step - firstStep, 1))
        return String(format: "epoch %d/%d [%@] step %d/%d  %.0f img/s  loss %.2f (recon %.2f, KL %.2f)  ETA %@",
                      epoch(of: step), epochs, bar, stepInEpoch, stepsThisEpoch, rate, means.loss,
                      means.reconstruction, means.kl, formatDuration(remaining)) + (compute.map { "  " + $0.brief } ?? "")
    }

    private func record(_ fields: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return }
        metrics.write(data + Data("\n".utf8))
    }
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? "\(s / 3600)h\(String(format: "%02d", s / 60 % 60))m"
        : s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
}
