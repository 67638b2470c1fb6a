import Foundation
import Testing
@testable import VAETraining

/// A fresh directory under the system temporary directory, removed when the test is done with it.
final class ScratchDirectory: Sendable {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "vae-training-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
}

/// The `vae` binary built beside the test bundle (swift test builds every product).
let vaeBinary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("vae").path

struct CommandResult {
    var status: Int32
    var output: String
    var error: String
}

/// A command that ran past its time limit. Thrown, so that a hang fails the test that started it
/// (naming it and the command) instead of stalling the whole run.
struct CommandTimedOut: Error, CustomStringConvertible {
    var test: String
    var command: String
    var timeLimit: Double
    var output: String
    var error: String

    var description: String {
        "test \(test): `\(command)` ran past its time limit of \(timeLimit) s and was stopped (SIGTERM, then SIGKILL, "
            + "to its process group)\nlast output:\n\(output.suffix(2_000))\nlast errors:\n\(error.suffix(2_000))"
    }
}

/// Long enough for any command of the test suite on a busy machine; short enough that a deadlocked
/// run fails while someone still waits for the result.
let defaultCommandTimeLimit = 300.0

/// What mpirun needs to start ranks as root (in containers), with one OpenBLAS thread per rank.
let mpirunEnvironment = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                         "OPENBLAS_NUM_THREADS": "1"]

/// Runs a program to completion; its output goes through files, so no pipe can fill up and stall it.
/// Past `timeLimit` seconds it is killed and `CommandTimedOut` is thrown.
func runCommand(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:],
                timeLimit: Double = defaultCommandTimeLimit) throws -> CommandResult {
    try StartedCommand(executable, arguments, environment: extra).finish(timeLimit: timeLimit)
}

/// A program running in the background, for tests that act on it while it runs (send it a signal).
/// Foundation starts it in a process group of its own, so a kill of the group reaches whatever it
/// started in that group too; mpirun puts its ranks in groups of their own, and ends them itself
/// when it gets SIGTERM.
final class StartedCommand {
    let process = Process()
    private let scratch: ScratchDirectory
    private let exited = DispatchSemaphore(value: 0)
    private let command: String

    init(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:]) throws {
        scratch = try ScratchDirectory()
        command = ([executable] + arguments).joined(separator: " ")
        FileManager.default.createFile(atPath: scratch.file("out"), contents: nil)
        FileManager.default.createFile(atPath: scratch.file("err"), contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
        process.standardOutput = FileHandle(forWritingAtPath: scratch.file("out"))
        process.standardError = FileHandle(forWritingAtPath: scratch.file("err"))
        process.standardInput = FileHandle.nullDevice
        let exited = exited
        process.terminationHandler = { _ in exited.signal() }
        try runWithSignalsUnblocked(process)
    }

    func output() throws -> String { try String(contentsOfFile: scratch.file("out"), encoding: .utf8) }
    func error() throws -> String { try String(contentsOfFile: scratch.file("err"), encoding: .utf8) }

    /// Waits for the program to exit. Past `timeLimit` seconds it is killed and `CommandTimedOut`
    /// is thrown, naming the test and the command.
    func finish(timeLimit: Double = defaultCommandTimeLimit) throws -> CommandResult {
        if exited.wait(timeout: .now() + timeLimit) == .timedOut {
            // SIGTERM first, so that mpirun can take its ranks down with it. Foundation reports the
            // exit only once every process holding its status socket is gone, so the last wait is
            // bounded too: a survivor must not hang the test either.
            kill(-process.processIdentifier, SIGTERM)
            if exited.wait(timeout: .now() + 10) == .timedOut {
                kill(-process.processIdentifier, SIGKILL)
                _ = exited.wait(timeout: .now() + 10)
            }
            throw CommandTimedOut(test: Test.current?.name ?? "(none)", command: command, timeLimit: timeLimit,
                                  output: try output(), error: try error())
        }
        return CommandResult(status: process.terminationStatus, output: try output(), error: try error())
    }
}

/// Starts `process` with no signal blocked. Swift Testing runs tests on libdispatch threads, which
/// block SIGTERM and most other signals, and a started program inherits its thread's mask: mpirun
/// would never see the SIGTERM that tells it to end its ranks.
private func runWithSignalsUnblocked(_ process: Process) throws {
    var none = sigset_t(), previous = sigset_t()
    sigemptyset(&none)
    pthread_sigmask(SIG_SETMASK, &none, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    try process.run()
}

/// Running processes whose command line mentions `marker` (a zombie has none), in order of id.
func processes(mentioning marker: String) -> [(id: Int32, words: [String])] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).sorted().compactMap { id in
        guard let bytes = FileManager.default.contents(atPath: "/proc/\(id)/cmdline") else { return nil }
        let words = bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return words.contains { $0.contains(marker) } ? (id, words) : nil
    }
}

/// `vae` under mpirun on this machine, as root if need be.
func runMPI(ranks: Int, _ arguments: [String], mpirunOptions: [String] = []) throws -> CommandResult {
    try startMPI(ranks: ranks, arguments, mpirunOptions: mpirunOptions).finish()
}

/// `vae` under mpirun, started: mpirun's process is `process`, and its ranks are its children.
func startMPI(ranks: Int, _ arguments: [String], mpirunOptions: [String] = []) throws -> StartedCommand {
    try StartedCommand("/usr/bin/env", ["mpirun", "-np", "\(ranks)", "--oversubscribe", "--bind-to", "none"]
                       + mpirunOptions + [vaeBinary] + arguments, environment: mpirunEnvironment)
}

/// The float arrays at the start of a checkpoint file's data, in file order (the third is Adam's
/// second moment; see Sources/Training/Checkpoint.swift).
enum CheckpointArray: Int {
    case parameters, firstMoment
}

/// One of the float arrays stored in a checkpoint file.
func checkpointArray(_ array: CheckpointArray, in path: String) throws -> [Float] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let (jsonBytes, count) = data.withUnsafeBytes {
        (Int($0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)), Int($0.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
    }
    let start = 64 + jsonBytes + array.rawValue * count * 4
    return data.withUnsafeBytes { raw in
        (0..<count).map { raw.loadUnaligned(fromByteOffset: start + 4 * $0, as: Float.self) }
    }
}

/// max |a − b| / max |a|.
func maximumRelativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    let scale = Double(a.map(abs).max() ?? 1)
    return Double(zip(a, b).map { abs($0 - $1) }.max() ?? 0) / scale
}

/// ‖a − b‖ / ‖a‖ (Euclidean norms).
func normRelativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    let difference = zip(a, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +)
    return (difference / a.map { Double($0) * Double($0) }.reduce(0, +)).squareRoot()
}

/// A suite whose runs write into its scratch directory (MPITests, MultiHostTests): what the tests
/// read from a run directory while the run goes on or after it ended.
protocol RunDirectoryTests {
    var scratch: ScratchDirectory { get }
}

extension RunDirectoryTests {
    /// Waits (at most two minutes) until `run`'s metrics.jsonl logs step `step` or later.
    func waitForStep(_ step: Int, of run: String) throws {
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            let text = (try? String(contentsOfFile: scratch.file("\(run)/metrics.jsonl"), encoding: .utf8)) ?? ""
            let steps = text.split(separator: "\n").compactMap {
                (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["step"] as? Int
            }
            if steps.contains(where: { $0 >= step }) { return }
            usleep(20_000)
        }
        Issue.record("\(run) did not log step \(step) within two minutes")
    }

    /// The path of a run's checkpoint of `step`.
    func checkpointFile(_ run: String, step: Int) -> String {
        scratch.file("\(run)/" + CheckpointPolicy.fileName(step: step))
    }

    /// The steps of a run's checkpoints, newest first.
    func checkpointSteps(_ run: String) throws -> [Int] {
        try CheckpointPolicy.numberedCheckpoints(in: scratch.file(run)).map(\.step)
    }

    /// The rank processes of a run started by launch/train.sh or mpirun, in rank order (by pid).
    func rankProcesses(_ run: String) -> [Int32] {
        processes(mentioning: scratch.file(run)).filter { $0.words.first == vaeBinary }.map(\.id)
    }

    /// The checkpoint files of a run and their bytes.
    func checkpointFiles(_ run: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for step in try checkpointSteps(run) {
            files[checkpointFile(run, step: step)] = try Data(contentsOf: URL(fileURLWithPath: checkpointFile(run, step: step)))
        }
        return files
    }
}
