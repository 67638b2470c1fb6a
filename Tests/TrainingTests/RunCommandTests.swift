import Foundation
import Testing

/// runCommand's time limit, which is what turns a deadlocked MPI run into a failing test.
@Suite(.serialized, .timeLimit(.minutes(2))) struct RunCommandTests {
    /// The command lines of running processes that mention `marker` (a zombie has none).
    func processes(mentioning marker: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry in
            guard let bytes = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let line = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\0", with: " ")
            return line.contains(marker) ? line : nil
        }
    }

    /// A command that would sleep for minutes is stopped at its limit, with the processes it
    /// started: a shell's background child in its process group, and mpirun's ranks, which live
    /// in process groups of their own.
    @Test(arguments: ["shell", "mpirun"])
    func commandPastItsLimitIsKilledWithItsChildren(launcher: String) throws {
        // A sleep length no other process on the machine has, so leftovers can be found by it.
        let marker = String(format: "%.6f", 600 + Double.random(in: 0..<100))
        let (executable, arguments) = launcher == "shell"
            ? ("/bin/sh", ["-c", "sleep \(marker) & sleep \(marker); wait"])
            : ("/usr/bin/env", ["mpirun", "-np", "2", "--oversubscribe", "sleep", marker])
        let timeout = #expect(throws: CommandTimedOut.self) {
            try runCommand(executable, arguments, environment: mpirunEnvironment, timeLimit: 3)
        }
        #expect(timeout?.description.contains("test commandPastItsLimitIsKilledWithItsChildren") == true)
        #expect(timeout?.description.contains(marker) == true)
        // Processes that got SIGTERM may take a moment to go.
        var leftovers = processes(mentioning: marker)
        for _ in 0..<50 where !leftovers.isEmpty {
            usleep(100_000)
            leftovers = processes(mentioning: marker)
        }
        #expect(leftovers.isEmpty, "still running: \(leftovers)")
    }
}
