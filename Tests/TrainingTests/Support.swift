import Foundation
import Testing

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

/// Runs a program to completion; its output goes through files, so no pipe can fill up and stall it.
func runCommand(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:]) throws
    -> CommandResult
{
    let scratch = try ScratchDirectory()
    FileManager.default.createFile(atPath: scratch.file("out"), contents: nil)
    FileManager.default.createFile(atPath: scratch.file("err"), contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
    process.standardOutput = FileHandle(forWritingAtPath: scratch.file("out"))
    process.standardError = FileHandle(forWritingAtPath: scratch.file("err"))
    process.standardInput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus,
                         output: try String(contentsOfFile: scratch.file("out"), encoding: .utf8),
                         error: try String(contentsOfFile: scratch.file("err"), encoding: .utf8))
}

/// `vae` under mpirun on this machine, as root if need be.
func runMPI(ranks: Int, _ arguments: [String], mpirunOptions: [String] = []) throws -> CommandResult {
    try runCommand("/usr/bin/env", ["mpirun", "-np", "\(ranks)", "--oversubscribe", "--bind-to", "none"]
                   + mpirunOptions + [vaeBinary] + arguments,
                   environment: ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                                 "OPENBLAS_NUM_THREADS": "1"])
}

/// The parameters stored in a checkpoint file (the first of its three float arrays).
func checkpointParameters(_ path: String) throws -> [Float] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let (jsonBytes, count) = data.withUnsafeBytes {
        (Int($0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)), Int($0.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
    }
    let start = 64 + jsonBytes
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
