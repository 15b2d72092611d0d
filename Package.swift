// swift-tools-version:6.1
import PackageDescription

/// herd: one endpoint for a fleet of Ollama / OpenAI-compatible servers.
/// Layout and process roles: ARCHITECTURE.md.
///
/// The target graph is the architecture: the data plane (herd-proxy) is built
/// from HerdRuntime, HerdHTTP, HerdJSON and HerdWire only, so it cannot link
/// SQLite (HerdStorage) or Avahi (HerdDiscovery). Each C library is reached
/// through one system-library module, imported `internal` by the one target
/// that owns it; no C type appears in a public signature.
///
/// The runtime is loop-confined (one thread owns each object), so the dynamic
/// exclusivity checks cost time on the hot path without catching anything that
/// the confinement rule does not already rule out. Debug builds keep them.
let hotPathSettings: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "herd",
    products: [
        .executable(name: "herd-proxy", targets: ["herd-proxy"]),
        .executable(name: "herd-control", targets: ["herd-control"]),
        .executable(name: "herd-node", targets: ["herd-node"]),
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
        // SHA-256, HMAC and constant-time compare for the fleet key.
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // TLS for HTTPS upstreams (cloud providers): libssl over memory BIOs.
        .systemLibrary(name: "CTLS", pkgConfig: "libssl", providers: [.apt(["libssl-dev"])]),
        // Linux calls Swift cannot make directly (variadic prctl/syscall): header only.
        .systemLibrary(name: "CHerdLinux"),

        // Conversions and sums that never trap, for numbers from outside (pure).
        .target(name: "HerdBounds", swiftSettings: hotPathSettings),
        // The libuv loop every process runs on: streams, timers, signals,
        // offload, child processes, the loop clock.
        .target(name: "HerdRuntime", dependencies: ["HerdBounds", "CUV", "CHerdLinux"], swiftSettings: hotPathSettings),
        // herd's one JSON model (no Foundation).
        .target(name: "HerdJSON", dependencies: ["HerdBounds"], swiftSettings: hotPathSettings),
        // HTTP/1.1 server and client (http_parser), h2c (nghttp2).
        .target(name: "HerdHTTP", dependencies: ["HerdBounds", "HerdRuntime", "HerdJSON", "CHttpParser", "CNghttp2", "CTLS"], swiftSettings: hotPathSettings),
        // What the processes say to each other: the control protocol, heartbeats,
        // snapshots, model names, client errors, the fleet key.
        .target(name: "HerdWire", dependencies: ["HerdBounds", "HerdJSON"], exclude: ["Control/ControlProtocol.md"],
                swiftSettings: hotPathSettings),
        // The control socket's driver: frames over a libuv stream, one write per loop iteration.
        .target(name: "HerdLink", dependencies: ["HerdBounds", "HerdRuntime", "HerdJSON", "HerdWire"], swiftSettings: hotPathSettings),
        // The fleet key: SHA-256, HMAC and constant-time compare (OpenSSL's libcrypto).
        .target(name: "HerdSecurity", dependencies: ["HerdBounds", "CCrypto"], swiftSettings: hotPathSettings),
        // SQLite: connections, migrations, the batched writer (herd-control only).
        .target(name: "HerdStorage", dependencies: ["HerdBounds", "HerdRuntime", "CSQLite3", "CHerdLinux"]),
        // mDNS through Avahi on the loop (herd-control and herd-node only).
        .target(name: "HerdDiscovery", dependencies: ["HerdBounds", "HerdRuntime", "CAvahi"]),

        // Routing decisions as values (herd-control's brain, pure: no I/O, no
        // clock of its own): the completion-time model and its learned rates,
        // the scheduler and its queue, concurrency learning. Also linked by the
        // routing-quality simulator (Benchmarks/routing).
        .target(name: "HerdRouting", dependencies: ["HerdBounds", "HerdWire", "HerdJSON"]),

        .executableTarget(
            name: "herd-proxy",
            dependencies: ["HerdBounds", "HerdRuntime", "HerdHTTP", "HerdJSON", "HerdWire", "HerdLink", "HerdSecurity", argumentParser],
            exclude: ["API/RequestLimits.md"],
            swiftSettings: hotPathSettings
        ),
        .executableTarget(
            name: "herd-control",
            dependencies: ["HerdBounds", "HerdRuntime", "HerdHTTP", "HerdJSON", "HerdWire", "HerdLink", "HerdSecurity", "HerdRouting", "HerdStorage",
                           "HerdDiscovery", argumentParser],
            exclude: ["HTTP/ControlAPI.md", "Dashboard"],
            swiftSettings: hotPathSettings,
            plugins: ["EmbedDashboard"]
        ),
        // The dashboard's HTML, CSS and JS (Sources/herd-control/Dashboard) compiled
        // into herd-control by a build plugin: one binary, nothing to install beside it.
        .executableTarget(name: "herd-embed", path: "Sources/herd-embed"),
        .plugin(name: "EmbedDashboard", capability: .buildTool(), dependencies: ["herd-embed"], path: "Sources/EmbedDashboard"),
        // `herd`: the one command a person remembers (serve, node, status, keys), running the binaries beside it.
        .executableTarget(name: "herd", dependencies: ["HerdBounds"]),
        .executableTarget(
            name: "herd-node",
            dependencies: ["HerdBounds", "HerdRuntime", "HerdHTTP", "HerdJSON", "HerdWire", "HerdSecurity", "HerdStorage", "HerdDiscovery", argumentParser]
        ),

        // Test support: the scriptable fake Ollama/OpenAI backend (library + a binary for
        // whole-process tests and benchmarks). Lives under Tests/, never in Sources/.
        .target(name: "HerdFakeBackend", dependencies: ["HerdRuntime", "HerdHTTP", "HerdJSON"], path: "Tests/HerdFakeBackend"),
        .executableTarget(
            name: "herd-fake-backend",
            dependencies: ["HerdFakeBackend", "HerdRuntime", "HerdHTTP", "HerdJSON"],
            path: "Tests/FakeBackendMain"
        ),

        .target(name: "HerdTestSupport", dependencies: ["HerdBounds", "HerdRuntime", "HerdJSON"], path: "Tests/HerdTestSupport"),

        // The open-loop load generator of the benchmarks (Benchmarks/README.md).
        // Routing quality in virtual time: herd's scheduler against baselines (Benchmarks/routing/run.sh).
        .executableTarget(name: "herd-routesim", dependencies: ["HerdRouting", "HerdWire", "HerdRuntime"], path: "Benchmarks/RoutingSim"),
        .executableTarget(name: "herd-loadgen", dependencies: ["HerdRuntime", "HerdHTTP", "HerdJSON", "HerdWire", "HerdLink"], path: "Benchmarks/LoadGen"),

        .testTarget(name: "HerdRuntimeTests", dependencies: ["HerdRuntime", "HerdTestSupport"]),
        .testTarget(name: "HerdJSONTests", dependencies: ["HerdJSON"]),
        .testTarget(name: "HerdHTTPTests", dependencies: ["HerdHTTP", "HerdRuntime", "HerdJSON", "HerdFakeBackend", "HerdTestSupport"]),
        .testTarget(name: "HerdWireTests", dependencies: ["HerdWire", "HerdLink", "HerdSecurity", "HerdBounds", "HerdRuntime", "HerdJSON", "HerdTestSupport"]),
        .testTarget(name: "HerdStorageTests", dependencies: ["HerdStorage", "HerdRuntime"]),
        .testTarget(name: "HerdDiscoveryTests", dependencies: ["HerdDiscovery", "HerdRuntime", "HerdBounds"]),
        .testTarget(name: "HerdProxyTests", dependencies: ["herd-proxy", "HerdRuntime", "HerdHTTP", "HerdJSON", "HerdWire", "HerdSecurity", "HerdBounds", "HerdStorage", "HerdTestSupport"]),
        .testTarget(name: "HerdRoutingTests", dependencies: ["HerdRouting", "HerdWire", "HerdJSON"]),
        .testTarget(name: "HerdControlTests", dependencies: ["herd-control", "HerdBounds", "HerdSecurity", "HerdRuntime", "HerdHTTP", "HerdJSON", "HerdWire", "HerdTestSupport"]),
        .testTarget(name: "HerdNodeTests", dependencies: ["herd-node", "HerdBounds", "HerdSecurity", "HerdRuntime", "HerdJSON", "HerdWire", "HerdStorage", "HerdTestSupport"],
                    exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)

// libFuzzer targets (Fuzz/run.sh builds them with HERD_FUZZ=1 and -sanitize=fuzzer;
// a plain build has no main for them).
if Context.environment["HERD_FUZZ"] == "1" {
    package.targets.append(.executableTarget(name: "herd-fuzz", dependencies: ["HerdBounds", "HerdHTTP", "HerdJSON", "HerdWire", "HerdRouting"], path: "Fuzz/HerdFuzz",
                                             swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    package.products.append(.executable(name: "herd-fuzz", targets: ["herd-fuzz"]))
}
