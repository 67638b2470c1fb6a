import VAECluster
import VAEData

public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    /// Every rank raises this same error (a NaN, diverged parameters, datasets that differ):
    /// rank 0 reports it, the others stay quiet.
    public let isCollective: Bool

    public init(_ description: String, collective: Bool = false) {
        self.description = description
        isCollective = collective
    }
}

/// Runs `body` on every rank, then agrees on the outcome in one collective call. If any rank
/// failed, every rank throws an `AgreedFailure`, so that no rank waits forever in a collective the
/// failed ones will never join, and the job prints each distinct error once: the lowest rank with
/// a given error prints it, naming the ranks that had it unless all did or only rank 0 did; ranks
/// that did not fail print nothing. A bad flag given to every rank therefore prints one line, as in a single process.
public func collectively<T>(_ communicator: Communicator, _ body: () throws -> T) throws -> T {
    let result = Result { try body() }
    let message: String?
    if case .failure(let error) = result { message = "\(error)" } else { message = nil }
    // A nonzero fingerprint of the message, 0 for success.
    let fingerprint = message.map { text in Array(text.utf8).withUnsafeBytes { xxHash64($0) } | 1 } ?? 0
    let fingerprints = communicator.allgather(fingerprint, what: "the ranks' agreement on errors")
    let failed = fingerprints.indices.filter { fingerprints[$0] != 0 }
    guard !failed.isEmpty else { return try result.get() }
    guard let message else { throw AgreedFailure(line: nil) }
    let sameError = failed.filter { fingerprints[$0] == fingerprint }
    guard sameError.first == communicator.rank else { throw AgreedFailure(line: nil) }
    // Rank 0 speaks for the job (and alone does the run directory's work), so its errors and
    // everyone's go unprefixed.
    let who = sameError.count == communicator.size || sameError == [0] ? "" : describeRanks(sameError) + ": "
    throw AgreedFailure(line: who + "error: " + message)
}

/// A failure every rank has learned of in `collectively`: the job can stop cleanly, without
/// aborting, each rank printing its `line` if it has one.
public struct AgreedFailure: Error, CustomStringConvertible {
    public let line: String?
    public var description: String { line ?? "another rank failed" }
}
