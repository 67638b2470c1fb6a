import VAECluster

public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    /// Every rank raises this same error (a NaN, diverged parameters, another rank's failure):
    /// rank 0 reports it, the others stay quiet.
    public let isCollective: Bool

    public init(_ description: String, collective: Bool = false) {
        self.description = description
        isCollective = collective
    }
}

/// Runs `body` on every rank, then agrees on the outcome in one collective call. If any rank
/// failed, every rank throws (the failed ones their own error, the others a collective error
/// naming them), so that no rank waits forever in a collective the failed ones will never join.
public func collectively<T>(_ communicator: Communicator, _ body: () throws -> T) throws -> T {
    let result = Result { try body() }
    let failures = communicator.allgather(result.isFailure ? 1 : 0)
    if case .failure(let error) = result { throw AgreedFailure(error: error) }
    let failed = failures.indices.filter { failures[$0] != 0 }
    guard failed.isEmpty else {
        throw TrainingError("rank \(failed.map(String.init).joined(separator: ", ")) failed (see its error); stopping",
                            collective: true)
    }
    return try result.get()
}

/// This rank's own error, which every other rank has learned of in `collectively`: the job can
/// stop cleanly, without aborting the others.
public struct AgreedFailure: Error, CustomStringConvertible {
    public let error: Error
    public var description: String { "\(error)" }
}

extension Result {
    var isFailure: Bool { if case .failure = self { true } else { false } }
}
