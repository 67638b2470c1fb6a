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

/// Skips a test, saying why, when the CelebA sample is absent.
let needsCelebASample = Testing.ConditionTrait.enabled(
    if: celebASample != nil, "CelebA sample not found at \(celebASampleDirectory): set CELEBA_DIR to run this test")

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
