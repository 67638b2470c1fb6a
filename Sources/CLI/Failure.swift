#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import VAECluster
import VAETraining

/// How `vae` fails: one line on standard error and exit status 1, however many ranks run it.
/// Under MPI every rank reaches these functions; each error is printed once, by one rank.
enum Failure {
    /// Joins the MPI job (or stands alone), or ends the process if the MPI library is unusable.
    static func joinJob() -> Communicator {
        do {
            return try Communicator()
        } catch let error as ClusterError {
            if error.rank == 0 { printLine("error: \(error)") }
            Glibc.exit(1)
        } catch {
            printLine("error: \(error)")
            Glibc.exit(1)
        }
    }

    /// Ends the process after `error`: an error the ranks agreed on is printed as agreed, one that
    /// every rank raised alike by rank 0, and one only this rank knows of by this rank, which then
    /// ends the whole job lest the others wait for it forever.
    static func exitReporting(_ error: Error, communicator: Communicator) -> Never {
        switch error {
        case let failure as AgreedFailure:
            if let line = failure.line { printLine(line) }
        case let error as TrainingError where error.isCollective:
            if communicator.isRoot { printLine("error: \(error)") }
        default:
            printLine((communicator.size > 1 ? "rank \(communicator.rank): " : "") + "error: \(error)")
            if communicator.size > 1 { communicator.abort(code: 1) }
        }
        communicator.finish()
        Glibc.exit(1)
    }

    /// A command line that did not parse, or asked for help. Under MPI the ranks agree on it as on
    /// any other bad argument (another rank may have parsed its own arguments and be waiting in the
    /// first collective call of its command), so a typo on every rank prints one line.
    static func exitAfterParsing(_ error: Error, command: ParsableCommand.Type) -> Never {
        let code = command.exitCode(for: error)
        if code == .success {
            if (launcherRank ?? 0) == 0 { print(command.fullMessage(for: error)) }
            Glibc.exit(code.rawValue)
        }
        let message = command.message(for: error).split(separator: "\n").joined(separator: " ")
        let subcommand = CommandLine.arguments.dropFirst().first { !$0.hasPrefix("-") } ?? ""
        let line = message + " (see 'vae help\(subcommand.isEmpty ? "" : " " + subcommand)')"
        guard Communicator.launchedByMPI else {
            printLine("error: " + line)
            Glibc.exit(code.rawValue)
        }
        let communicator = joinJob()
        do {
            try collectively(communicator) { throw ParseError(description: line) }
        } catch {
            if let failure = error as? AgreedFailure, let line = failure.line { printLine(line) }
        }
        communicator.finish()
        Glibc.exit(code.rawValue)
    }

    private struct ParseError: Error, CustomStringConvertible {
        let description: String
    }

    /// This process's rank as its launcher announced it, before MPI starts.
    private static var launcherRank: Int? {
        let environment = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"].lazy.compactMap { environment[$0].flatMap { Int($0) } }.first
    }

    static func printLine(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
