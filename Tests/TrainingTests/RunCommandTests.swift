import Foundation
import Testing

/// runCommand's time limit, which is what turns a deadlocked MPI run into a failing test.
@Suite(.serialized, .timeLimit(.minutes(2))) struct RunCommandTests {
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
        #expect(leftovers.isEmpty, "still running: \(leftovers.map { $0.words.joined(separator: " ") })")
    }
}
