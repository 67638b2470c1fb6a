// swift-tools-version:6.0
import PackageDescription

// Release builds of the engine skip preconditions, bounds and overflow checks: its hot loops run
// over unsafe buffers whose sizes are validated once, when the model is built. Every other target
// keeps its checks (plain -O): they are not where the time goes, and a wrong size or an Int32
// conversion that does not fit must trap there rather than corrupt memory. launch/test.sh also
// runs the suite in a debug build, where the engine's checks run too.
let uncheckedInRelease: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

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

        // Hand-written kernels in C: a bfloat16 GEMM on AVX512_BF16 and a float32 GEMM on AVX-512
        // (their functions compiled for those instructions alone, and called only after a CPUID check).
        .target(name: "Kernels", path: "Sources/Kernels", cSettings: [.unsafeFlags(["-O3", "-ffp-contract=off"])]),

        // The numerical engine: tensors, layers, the VAE, its loss, Adam, random numbers.
        .target(name: "VAEEngine", dependencies: ["CBLAS", "Kernels"], path: "Sources/Engine", swiftSettings: uncheckedInRelease),
        // Data: CelebA preparation, the dataset file, synthetic faces, sharded batches, images.
        .target(name: "VAEData", dependencies: ["VAEEngine", "CTurboJPEG", "CPNG"], path: "Sources/Data"),
        // Cluster communication: MPI, or a single local process when not launched by mpirun.
        .target(name: "VAECluster", dependencies: ["CMPI"], path: "Sources/Cluster"),
        // Training: the data-parallel loop, checkpoints, metrics, progress.
        .target(name: "VAETraining", dependencies: ["VAEEngine", "VAEData", "VAECluster"], path: "Sources/Training"),
        // The command line.
        .executableTarget(name: "vae",
                          dependencies: ["VAEEngine", "VAEData", "VAECluster", "VAETraining",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/CLI"),

        .testTarget(name: "EngineTests", dependencies: ["VAEEngine", "Kernels"], path: "Tests/EngineTests"),
        .testTarget(name: "DataTests", dependencies: ["VAEData", "VAEEngine"], path: "Tests/DataTests"),
        .testTarget(name: "TrainingTests", dependencies: ["VAETraining", "VAEEngine", "VAEData", "VAECluster"],
                    path: "Tests/TrainingTests"),
    ]
)
