// swift-tools-version:6.0
import PackageDescription

/// herd: one endpoint for a fleet of Ollama / OpenAI-compatible servers.
/// Layout and process roles: ../shared/ARCHITECTURE.md (mirrored in README.md).
/// The runtime is loop-confined (one thread owns each object), so the dynamic
/// exclusivity checks cost time on the hot path without catching anything that
/// the confinement rule does not already rule out. Debug builds keep them.
let hotPathSettings: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "herd",
    products: [
        .executable(name: "herd-proxy", targets: ["herd-proxy"]),
        .executable(name: "herd-control", targets: ["herd-control"]),
        .executable(name: "herd-node", targets: ["herd-node"]),
        .library(name: "HerdShared", targets: ["HerdShared"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // C libraries from Debian, each a modulemap plus a one-line shim.h.
        .systemLibrary(name: "CUV", pkgConfig: "libuv", providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(name: "CHttpParser", providers: [.apt(["libhttp-parser-dev"])]),
        .systemLibrary(name: "CNghttp2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "CAvahi", pkgConfig: "avahi-client", providers: [.apt(["libavahi-client-dev"])]),
        .systemLibrary(name: "CSQLite3", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        .target(
            name: "HerdShared",
            dependencies: ["CUV", "CHttpParser", "CNghttp2", "CAvahi", "CSQLite3"],
            exclude: ["Wire/ControlProtocol.md"],
            swiftSettings: hotPathSettings
        ),
        .executableTarget(
            name: "herd-proxy",
            dependencies: ["HerdShared", "CUV", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: hotPathSettings
        ),
        .executableTarget(
            name: "herd-control",
            dependencies: ["HerdShared", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "herd-node",
            dependencies: ["HerdShared", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        // Test support: the scriptable fake Ollama/OpenAI backend (library + a binary for
        // whole-process tests and benchmarks). Lives under Tests/, never in Sources/.
        .target(name: "HerdFakeBackend", dependencies: ["HerdShared"], path: "Tests/HerdFakeBackend"),
        .executableTarget(
            name: "herd-fake-backend",
            dependencies: ["HerdFakeBackend", "HerdShared"],
            path: "Tests/FakeBackendMain"
        ),

        .target(name: "HerdTestSupport", dependencies: ["HerdShared"], path: "Tests/HerdTestSupport"),

        // The open-loop load generator of the benchmarks (Benchmarks/README.md).
        .executableTarget(name: "herd-loadgen", dependencies: ["HerdShared"], path: "Benchmarks/LoadGen"),

        .testTarget(name: "HerdSharedTests", dependencies: ["HerdShared", "HerdFakeBackend", "HerdTestSupport", "CUV", "CSQLite3"]),
        .testTarget(name: "HerdProxyTests", dependencies: ["herd-proxy", "HerdShared", "HerdTestSupport"]),
        .testTarget(name: "HerdControlTests", dependencies: ["herd-control", "HerdShared", "HerdTestSupport"]),
        .testTarget(name: "HerdNodeTests", dependencies: ["herd-node", "HerdShared", "HerdTestSupport"], exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
