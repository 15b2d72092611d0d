import ArgumentParser
import HerdJSON
import HerdRuntime
import HerdRouting
import HerdWire

/// `herd-control`: the control plane (fleet registry, routing decisions,
/// queues, SQLite traces; dashboard and JSON API on `:11436`). Starts its
/// herd-proxy children, so this one command runs a router.
@main
struct HerdControlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herd-control",
        abstract: "herd's control plane: fleet registry, routing decisions, dashboard.",
        discussion: """
            Each flag also reads an HERD_* environment variable (--proxy-port ↔ HERD_PROXY_PORT).
            Binds 127.0.0.1 by default: use --host 0.0.0.0 to serve other machines.
            `herd-control status` prints the fleet of a running herd-control.
            """,
        version: HerdVersion.current)

    /// `herd-control status …` is its own command (its --host/--port name the
    /// API to ask, not the ones to serve); everything else runs the control plane.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "status" {
            StatusCommand.main(Array(arguments.dropFirst()))
        } else {
            Self.main(arguments)
        }
    }

    @Option(help: "Address to bind the API/heartbeats and the proxies (HERD_HOST).")
    var host: String = Environment.string("HERD_HOST") ?? "127.0.0.1"

    @Option(help: "Port of the dashboard, JSON API and heartbeats (HERD_PORT).")
    var port: Int = Environment.int("HERD_PORT") ?? 11436

    @Option(help: "Port the herd-proxy children serve clients on (HERD_PROXY_PORT).")
    var proxyPort: Int = Environment.int("HERD_PROXY_PORT") ?? 11435

    @Option(help: "How many herd-proxy children to run; 0 when systemd runs them (HERD_PROXIES).")
    var proxies: Int = Environment.int("HERD_PROXIES") ?? 1

    @Option(help: "Data directory (HERD_DATA_DIR).")
    var dataDir: String = DataDirectory.resolve()

    @Option(name: .customLong("control-socket"), help: "Control socket (HERD_CONTROL_SOCKET); default <data-dir>/control.sock.")
    var controlSocketFlag: String?
    /// The flag, else its environment twin (an optional option takes no default value).
    var controlSocket: String? { controlSocketFlag ?? Environment.string("HERD_CONTROL_SOCKET") }

    @Option(name: .customLong("fleet-key"), help: "Fleet key (≥ 16 characters) that nodes must sign heartbeats with (HERD_FLEET_KEY; or <data-dir>/fleet.key).")
    var fleetKeyFlag: String?
    /// The flag, else its environment twin (an optional option takes no default value).
    var fleetKey: String? { fleetKeyFlag ?? Environment.string("HERD_FLEET_KEY") }

    @Flag(help: "Do not publish the router over mDNS (HERD_NO_MDNS=1).")
    var noMdns = Environment.bool("HERD_NO_MDNS")

    @Option(help: "Fleet id announced over mDNS; nodes started with the same --fleet-id pick this router (HERD_FLEET_ID).")
    var fleetId: String = Environment.string("HERD_FLEET_ID") ?? "herd"

    @Option(name: .customLong("max-concurrency"),
            help: "Requests in flight per node and model before queuing (HERD_MAX_CONCURRENCY); default: learned per node and model.")
    var maxConcurrencyFlag: Int?
    /// The flag, else its environment twin; none: learned per node and model.
    var maxConcurrency: Int? { maxConcurrencyFlag ?? Environment.int("HERD_MAX_CONCURRENCY") }

    @Option(name: .customLong("num-ctx-policy"),
            help: "A client's num_ctx that the loaded model's context already covers: strip (no reload), keep, or warn (keep and count) (HERD_NUM_CTX_POLICY).")
    var numCtxPolicy: String = Environment.string("HERD_NUM_CTX_POLICY") ?? "strip"

    @Option(name: .customLong("max-client-in-flight"),
            help: "Requests one client (X-Herd-Client, API key, else address) may have queued or in flight; more get 429 (HERD_MAX_CLIENT_IN_FLIGHT); default: no cap.")
    var maxClientInFlightFlag: Int?
    var maxClientInFlight: Int? { maxClientInFlightFlag ?? Environment.int("HERD_MAX_CLIENT_IN_FLIGHT") }

    @Option(name: .customLong("route-tickets"),
            help: "Routes decided ahead a proxy may hold per model it serves (spent without a round trip to control; each holds a slot; back within 250 ms unspent); 0: every request asks (HERD_ROUTE_TICKETS).")
    var routeTickets: Int = Environment.int("HERD_ROUTE_TICKETS") ?? 64

    @Flag(inversion: .prefixedNo,
          help: "Load a model ahead of demand on a node with room when its queue elsewhere is longer than that load would take (HERD_PREWARM=0 to switch off).")
    var prewarm = Environment.string("HERD_PREWARM").map { $0 != "0" && $0 != "false" } ?? true

    @Option(help: "Seconds a request may wait for a free node before a 503 (HERD_QUEUE_TIMEOUT).")
    var queueTimeout: Double = Environment.string("HERD_QUEUE_TIMEOUT").flatMap(Double.init) ?? 30

    @Option(help: "Other nodes tried after a failure before a 502 (HERD_MAX_RETRIES).")
    var maxRetries: Int = Environment.int("HERD_MAX_RETRIES") ?? 2

    @Option(help: "Seconds without a heartbeat before a node is degraded (HERD_DEGRADED_AFTER).")
    var degradedAfter: Double = Environment.string("HERD_DEGRADED_AFTER").flatMap(Double.init) ?? 6

    @Option(help: "Seconds without a heartbeat before a node is offline (HERD_OFFLINE_AFTER).")
    var offlineAfter: Double = Environment.string("HERD_OFFLINE_AFTER").flatMap(Double.init) ?? 15

    @Option(help: "Most nodes in the fleet; a new node past it replaces the longest-offline one or is refused (HERD_MAX_NODES).")
    var maxNodes: Int = Environment.int("HERD_MAX_NODES") ?? 256

    @Option(help: "Days of request traces kept in <data-dir>/herd.db; 0 keeps them all (HERD_TRACE_RETENTION_DAYS).")
    var traceRetentionDays: Double = Environment.string("HERD_TRACE_RETENTION_DAYS").flatMap(Double.init) ?? 30

    @Option(help: "A node whose camera or microphone is in use: avoid (used only when 4× better), pause (never), ignore (HERD_MEETING_POLICY).")
    var meetingPolicy: String = Environment.string("HERD_MEETING_POLICY") ?? "avoid"

    @Option(help: "Expected output of a thinking model, × the prior, until measured (HERD_THINKING_MULTIPLIER).")
    var thinkingMultiplier: Double = Environment.string("HERD_THINKING_MULTIPLIER").flatMap(Double.init) ?? 4

    @Option(parsing: .singleValue, help: "An extra argument for every herd-proxy child (repeatable), e.g. --proxy-arg=--first-byte-timeout=60.")
    var proxyArg: [String] = []

    func validate() throws {
        guard (0...65535).contains(port), (0...65535).contains(proxyPort) else { throw ValidationError("ports must be 0–65535") }
        guard (0...64).contains(proxies) else { throw ValidationError("--proxies must be 0–64") }
        if let fleetKey, FleetKey(fleetKey) == nil { throw ValidationError("--fleet-key must be at least 16 characters") }
        if let maxConcurrency, maxConcurrency < 1 { throw ValidationError("--max-concurrency must be at least 1") }
        if routeTickets < 0 || routeTickets > 4096 { throw ValidationError("--route-tickets must be from 0 to 4096") }
        if let maxClientInFlight, maxClientInFlight < 1 { throw ValidationError("--max-client-in-flight must be at least 1") }
        guard Scheduler.NumCtxPolicy(rawValue: numCtxPolicy) != nil else {
            throw ValidationError("--num-ctx-policy must be one of: \(Scheduler.NumCtxPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard (1...100_000).contains(maxNodes) else { throw ValidationError("--max-nodes must be 1–100000") }
        guard traceRetentionDays >= 0 else { throw ValidationError("--trace-retention-days must be 0 or more") }
        guard Scorer.MeetingPolicy(rawValue: meetingPolicy) != nil else {
            throw ValidationError("--meeting-policy must be one of: \(Scorer.MeetingPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard thinkingMultiplier >= 1, thinkingMultiplier <= 100 else { throw ValidationError("--thinking-multiplier must be 1–100") }
        guard queueTimeout > 0, degradedAfter > 0, offlineAfter > degradedAfter else {
            throw ValidationError("timeouts must be positive and --offline-after longer than --degraded-after")
        }
    }

    func run() throws {
        var options = ControlOptions()
        options.host = host
        options.port = port
        options.proxyPort = proxyPort
        options.proxies = proxies
        options.dataDirectory = dataDir
        options.controlSocket = controlSocket
        options.fleetKey = fleetKey
        options.mdns = !noMdns
        options.fleetID = fleetId
        options.scheduler.maxConcurrencyPerModel = maxConcurrency
        options.scheduler.maxInFlightPerClient = maxClientInFlight
        options.scheduler.prewarm = prewarm
        options.scheduler.maxTicketsPerModel = routeTickets
        options.scheduler.numCtxPolicy = Scheduler.NumCtxPolicy(rawValue: numCtxPolicy) ?? .strip
        options.scheduler.queueTimeoutMilliseconds = UInt64(queueTimeout * 1000)
        options.scheduler.maxRetries = maxRetries
        options.scheduler.scoring.meetingPolicy = Scorer.MeetingPolicy(rawValue: meetingPolicy) ?? .avoid
        options.scheduler.scoring.thinkingMultiplier = thinkingMultiplier
        options.traceRetentionMilliseconds = UInt64(traceRetentionDays * 86_400_000)
        options.registry.degradedAfterMilliseconds = UInt64(degradedAfter * 1000)
        options.registry.offlineAfterMilliseconds = UInt64(offlineAfter * 1000)
        options.registry.maxNodes = maxNodes
        options.proxyArguments = proxyArg
        try ControlApp(options: options).run()
    }
}
