import ArgumentParser
import Glibc

@main
struct VAECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae",
        abstract: "Train a convolutional variational autoencoder on CelebA faces, on one core or many MPI ranks.",
        discussion: """
            A typical session:
              vae synth --count 4096 --out faces.vaeds          # or: vae prepare --celeba DIR --out celeba.vaeds
              vae inspect faces.vaeds --grid first.png           # look at what the model will see
              launch/train.sh --ranks 2 -- --data faces.vaeds --out runs/faces --epochs 5
              vae bench                                         # training speed of this machine
              vae export runs/faces --out faces.safetensors      # the weights, for PyTorch

            Run 'vae help <command>' for each command's options.
            """,
        subcommands: [Synth.self, Prepare.self, Inspect.self, Train.self, Bench.self, Export.self, Import.self,
                      Encode.self, Decode.self, Reconstruct.self, Sample.self, Traverse.self, Attributes.self,
                      Edit.self, Morph.self, Judge.self])

    /// Every error ends as one line on standard error (see Failure), not ArgumentParser's usage block.
    static func main() {
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            Failure.exitAfterParsing(error, command: self)
        }
        do {
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))  // `vae` alone: the overview
            } else if !(error is ExitCode) {
                Failure.printLine("error: " + message(for: error))
            }
            Glibc.exit(code.rawValue)
        }
    }
}
