// swift-tools-version:6.0
import PackageDescription

// Release builds of the numerical code skip bounds and overflow checks: the hot loops run over
// unsafe buffers whose sizes are validated once, when the model and data are set up.
let fast: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "DistributedVAE",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "vae", targets: ["vae"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // C bindings: Debian's OpenBLAS, Open MPI, libjpeg-turbo and libpng, found with pkg-config.
        .systemLibrary(name: "CBLAS", path: "Sources/CBindings/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMPI", path: "Sources/CBindings/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CBindings/CTurboJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CBindings/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),

        // The numerical engine: tensors, layers, the VAE, its loss, Adam, random numbers.
        .target(name: "VAEEngine", dependencies: ["CBLAS"], path: "Sources/Engine", swiftSettings: fast),
        // Data: CelebA preparation, the dataset file, synthetic faces, sharded batches, images.
        .target(name: "VAEData", dependencies: ["VAEEngine", "CTurboJPEG", "CPNG"], path: "Sources/Data",
                swiftSettings: fast),
        // Cluster communication: MPI, or a single local process when not launched by mpirun.
        .target(name: "VAECluster", dependencies: ["CMPI"], path: "Sources/Cluster", swiftSettings: fast),
        // Training: the data-parallel loop, checkpoints, metrics, progress.
        .target(name: "VAETraining", dependencies: ["VAEEngine", "VAEData", "VAECluster"], path: "Sources/Training",
                swiftSettings: fast),
        // The command line.
        .executableTarget(name: "vae",
                          dependencies: ["VAEEngine", "VAEData", "VAECluster", "VAETraining",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/CLI", swiftSettings: fast),

        .testTarget(name: "EngineTests", dependencies: ["VAEEngine"], path: "Tests/EngineTests"),
        .testTarget(name: "DataTests", dependencies: ["VAEData", "VAEEngine"], path: "Tests/DataTests"),
        .testTarget(name: "TrainingTests", dependencies: ["VAETraining", "VAEEngine", "VAEData", "VAECluster"],
                    path: "Tests/TrainingTests"),
    ]
)
