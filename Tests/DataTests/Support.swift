import Foundation
import Testing
@testable import VAEData

/// A fresh directory under the system temporary directory, removed when the test is done with it.
final class TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "vae-data-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
}

/// Where the CelebA sample should be: $CELEBA_DIR, or ../shared/celeba-sample beside the package.
let celebASampleDirectory = ProcessInfo.processInfo.environment["CELEBA_DIR"]
    ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("../shared/celeba-sample").standardizedFileURL.path

/// The CelebA sample directory, or nil when it is absent.
let celebASample: String? = FileManager.default.fileExists(atPath: celebASampleDirectory + "/list_attr_celeba.txt")
    ? celebASampleDirectory : nil

/// CI sets CI=true. There the CelebA tests must run: a missing sample fails them instead of
/// skipping them, so that a broken checkout cannot pass unnoticed.
let runningInCI = ProcessInfo.processInfo.environment["CI"] == "true"

/// Skips a test, saying why, when the CelebA sample is absent, except under CI.
let needsCelebASample = Testing.ConditionTrait.enabled(
    if: celebASample != nil || runningInCI,
    "CelebA sample not found at \(celebASampleDirectory): set CELEBA_DIR to run this test")

/// The CelebA sample directory; under CI, when it is absent, a failure saying where it was looked for.
func requireCelebASample(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    try #require(celebASample, "CelebA sample not found at \(celebASampleDirectory) (set CELEBA_DIR): CI=true requires it",
                 sourceLocation: sourceLocation)
}

/// Writes a small synthetic dataset file and returns its path.
func writeSyntheticDataset(in directory: TemporaryDirectory, count: Int, imageSize: Int = 16,
                           seed: UInt64 = 7) throws -> String {
    let path = directory.file("synthetic-\(count).vaeds")
    try SyntheticFaces(seed: seed, imageSize: imageSize).writeDataset(count: count, to: path)
    return path
}

/// Expects `body` to throw a DataError and returns it (nil, recorded as a failure, if it did not).
func expectDataError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> DataError? {
    do {
        try body()
        Issue.record("expected a DataError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as DataError {
        return error
    } catch {
        Issue.record("expected a DataError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
