import ArgumentParser
import Glibc
import HerdHTTP
import HerdJSON
import HerdRuntime

/// `herd-proxy`: the data plane. Serves the Ollama and OpenAI APIs on `:11435`
/// and relays each request to the node herd-control chooses.
@main
struct HerdProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herd-proxy",
        abstract: "herd's data plane: one Ollama/OpenAI endpoint in front of a fleet.",
        discussion: """
            Each flag also reads an HERD_* environment variable (e.g. HERD_PORT).
            Normally started by herd-control; run it alone to scale or restart proxies
            (several share the port through SO_REUSEPORT).
            """,
        version: HerdVersion.current)

    @Option(help: "Address to listen on (HERD_HOST).")
    var host: String = Environment.string("HERD_HOST") ?? "127.0.0.1"

    @Option(help: "Port for client traffic (HERD_PORT).")
    var port: Int = Environment.int("HERD_PORT") ?? 11435

    @Option(help: "herd-control's Unix socket (HERD_CONTROL_SOCKET); default <data-dir>/control.sock.")
    var controlSocket: String = Environment.string("HERD_CONTROL_SOCKET") ?? DataDirectory.resolve() + "/control.sock"

    @Option(help: "This proxy's name in logs and traces (HERD_PROXY_ID).")
    var proxyId: String = Environment.string("HERD_PROXY_ID") ?? "proxy"

    @Option(help: "Seconds to wait for a model server's first byte (model loads included) (HERD_FIRST_BYTE_TIMEOUT).")
    var firstByteTimeout: Double = Environment.string("HERD_FIRST_BYTE_TIMEOUT").flatMap(Double.init) ?? 300

    @Option(help: "Seconds herd-control has to answer a route before this proxy routes from its last snapshot (HERD_ROUTE_TIMEOUT).")
    var routeTimeout: Double = Environment.string("HERD_ROUTE_TIMEOUT").flatMap(Double.init) ?? 1

    @Option(help: "Seconds a model server may go silent once its response began (mid-stream) before the request fails (HERD_UPSTREAM_IDLE_TIMEOUT).")
    var upstreamIdleTimeout: Double = Environment.string("HERD_UPSTREAM_IDLE_TIMEOUT").flatMap(Double.init) ?? 60

    @Option(help: "Seconds a whole request to a model server may take; 0 for no limit (HERD_UPSTREAM_TIMEOUT).")
    var upstreamTimeout: Double = Environment.string("HERD_UPSTREAM_TIMEOUT").flatMap(Double.init) ?? 3600

    @Option(help: "Seconds a client connection may sit idle between requests (HTTP/1.1 keep-alive and h2c) (HERD_CLIENT_IDLE_TIMEOUT).")
    var clientIdleTimeout: Double = Environment.string("HERD_CLIENT_IDLE_TIMEOUT").flatMap(Double.init) ?? 60

    @Option(help: "Seconds to connect to a model server (HERD_CONNECT_TIMEOUT).")
    var connectTimeout: Double = Environment.string("HERD_CONNECT_TIMEOUT").flatMap(Double.init) ?? 3

    @Option(help: "Largest request body in MiB (HERD_MAX_BODY_MB).")
    var maxBodyMb: Int = Environment.int("HERD_MAX_BODY_MB") ?? 64

    @Option(help: "Seconds in-flight requests may take to finish after SIGTERM (HERD_DRAIN_TIMEOUT).")
    var drainTimeout: Double = Environment.string("HERD_DRAIN_TIMEOUT").flatMap(Double.init) ?? 30

    @Option(name: .customLong("allowed-origins"), help: "Comma-separated browser origins allowed by CORS, or * (HERD_ALLOWED_ORIGINS); default: local pages and apps.")
    var allowedOriginsFlag: String?
    /// The flag, else its environment twin (an optional option takes no default value).
    var allowedOrigins: String? { allowedOriginsFlag ?? Environment.string("HERD_ALLOWED_ORIGINS") }

    @Flag(help: "Exit (draining) when the parent process dies; herd-control sets it for its children.")
    var exitWithParent = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0–65535") }
        guard firstByteTimeout > 0, connectTimeout > 0, routeTimeout > 0, upstreamIdleTimeout > 0, upstreamTimeout >= 0, clientIdleTimeout > 0, drainTimeout >= 0 else { throw ValidationError("timeouts must be positive") }
        guard maxBodyMb >= 1 else { throw ValidationError("--max-body-mb must be at least 1") }
    }

    func run() throws {
        var options = ProxyOptions()
        options.host = host
        options.port = port
        options.controlSocket = controlSocket
        options.proxyID = proxyId
        options.client.firstByteTimeoutMilliseconds = UInt64(firstByteTimeout * 1000)
        options.client.connectTimeoutMilliseconds = UInt64(connectTimeout * 1000)
        options.client.readIdleTimeoutMilliseconds = max(1, UInt64(upstreamIdleTimeout * 1000))
        options.client.totalTimeoutMilliseconds = UInt64(upstreamTimeout * 1000)
        options.server.maxBodyBytes = maxBodyMb * 1024 * 1024
        options.server.keepAliveTimeoutMilliseconds = max(1, UInt64(clientIdleTimeout * 1000))
        // An h2c connection's concurrent bodies together: as much as one HTTP/1.1 connection's.
        options.server.maxConnectionBodyBytes = options.server.maxBodyBytes
        options.drainMilliseconds = UInt64(drainTimeout * 1000)
        options.routeTimeoutMilliseconds = max(1, UInt64(routeTimeout * 1000))
        if let allowedOrigins {
            options.allowedOrigins = allowedOrigins.split(separator: ",").map { String($0.trimmingSpaces) }
        }
        // A child of herd-control drains and exits when its parent dies.
        if exitWithParent { ParentProcess.signalOnDeath(SIGTERM) }
        let loop = try EventLoop()
        try ProxyApp(loop: loop, options: options).run()
    }
}
