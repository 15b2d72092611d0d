import HerdBounds
import ArgumentParser
import HerdJSON
import HerdRuntime
import HerdRouting
import HerdSecurity
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
            DESCRIPTION
              herd-control is the router's control plane. It finds the fleet's nodes
              (mDNS, heartbeats from herd-node), scores every request's candidates (the
              node and model that will finish it soonest), queues when every node is
              busy, learns each node's concurrency and speed, runs health checks, keeps
              traces, client keys and benchmark results in SQLite, and serves the
              dashboard and JSON API on --port (11436). It starts --proxies herd-proxy
              children that serve clients on --proxy-port (11435) and ask it for routes
              over a Unix socket. `herd serve` (or `herd`) runs it. It binds 127.0.0.1
              unless told otherwise: --host 0.0.0.0 serves other machines.

            COMMANDS
              herd-control status
                  the fleet, its queue and health, from a running herd-control
              herd-control keys …
                  client keys: create, list, show, update, revoke
              herd-control benchmark
                  each node:model measured through the router; routing starts from it
              (each has --help)

            ENVIRONMENT
              Every flag has an HERD_* twin (--proxy-port is HERD_PROXY_PORT,
              --fleet-key HERD_FLEET_KEY). HERD_PROVIDER_<NAME>_KEY: a cloud provider's
              API key (read by the proxies).

            FILES
              <data-dir>/herd.db
                  traces, client keys (hashed), key usage, benchmarks
              <data-dir>/fleet.key
                  the fleet key, when not given by flag
              <data-dir>/holds
                  nodes drained or paused by the operator
              <data-dir>/control.sock
                  the proxies' socket (--control-socket)
              <data-dir> is --data-dir, else HERD_DATA_DIR (/var/lib/herd as a service),
              else $XDG_DATA_HOME/herd, else ~/.local/share/herd.

            EXAMPLES
              herd-control
                  a router for this machine's clients
              herd-control --host 0.0.0.0 --fleet-key "$(cat /etc/herd/fleet.key)"
              herd-control --num-ctx-policy fit --queue-timeout 60
              systemctl enable --now herd-control
                  as a service (the package's unit)

            SEE ALSO
              herd(1), herd-node(1), herd-proxy(1); README.md; the API:
              Sources/herd-control/HTTP/ControlAPI.md
            """,
        version: HerdVersion.current)

    /// `herd-control status …` is its own command (its --host/--port name the
    /// API to ask, not the ones to serve); everything else runs the control plane.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "status" {
            StatusCommand.main(Array(arguments.dropFirst()))
        } else if arguments.first == "keys" {
            KeysCommand.main(Array(arguments.dropFirst()))
        } else if arguments.first == "benchmark" {
            BenchmarkCommand.main(Array(arguments.dropFirst()))
        } else {
            Self.main(arguments)
        }
    }

    @Option(help: "Address to bind the API/heartbeats and the proxies (HERD_HOST).")
    var host: String?

    @Option(help: "Port of the dashboard, JSON API and heartbeats (HERD_PORT; 11436).")
    var port: Int?

    @Option(help: "Port the herd-proxy children serve clients on (HERD_PROXY_PORT; 11435).")
    var proxyPort: Int?

    @Option(help: "How many herd-proxy children to run, 0–64; 0 when systemd runs them (HERD_PROXIES; 1).")
    var proxies: Int?

    @Option(help: "Data directory (HERD_DATA_DIR).")
    var dataDir: String?

    @Option(name: .customLong("control-socket"), help: "Control socket (HERD_CONTROL_SOCKET); default <data-dir>/control.sock.")
    var controlSocket: String?

    @Option(name: .customLong("fleet-key"), help: "Fleet key (≥ 16 characters) that nodes must sign heartbeats with (HERD_FLEET_KEY; or <data-dir>/fleet.key).")
    var fleetKey: String?

    @Flag(help: "Do not publish the router over mDNS (HERD_NO_MDNS=1).")
    var noMdns = false

    @Option(help: "Fleet id announced over mDNS; nodes started with the same --fleet-id pick this router (HERD_FLEET_ID).")
    var fleetId: String?

    @Option(name: .customLong("max-concurrency"),
            help: "Requests in flight per node and model before queuing, 1–1000000 (HERD_MAX_CONCURRENCY); default: learned per node and model.")
    var maxConcurrency: Int?

    @Option(name: .customLong("num-ctx-policy"),
            help: "A client's num_ctx that the loaded model's context already covers: strip (no reload), keep, or warn (keep and count); fit: strip, and size each model's context by use (p99 × 1.5 on cold loads), undone when time to first byte gets worse (HERD_NUM_CTX_POLICY).")
    var numCtxPolicy: String?

    @Option(name: .customLong("max-client-in-flight"),
            help: "Requests one client (X-Herd-Client, API key, else address) may have queued or in flight; more get 429 (HERD_MAX_CLIENT_IN_FLIGHT); default: no cap.")
    var maxClientInFlight: Int?

    @Option(name: .customLong("route-tickets"),
            help: "Routes decided ahead a proxy may hold per model it serves, 0–4096 (spent without a round trip to control; each holds a slot; back within 250 ms unspent); 0: every request asks (HERD_ROUTE_TICKETS; 64).")
    var routeTickets: Int?

    @Flag(inversion: .prefixedNo,
          help: "Load a model ahead of demand on a node with room when its queue elsewhere is longer than that load would take (HERD_PREWARM=0 to switch off).")
    var prewarm: Bool?

    @Option(help: "Time a request may wait for a free node before a 503: seconds, or 500ms, 2s, 5m, 1h (HERD_QUEUE_TIMEOUT; 30).")
    var queueTimeout: Seconds?

    @Option(help: "Other nodes tried after a failure before a 502, 0–16 (HERD_MAX_RETRIES; 2).")
    var maxRetries: Int?

    @Option(help: "Time without a heartbeat before a node is degraded (at least 3 of the node's own intervals) (HERD_DEGRADED_AFTER; 6).")
    var degradedAfter: Seconds?

    @Option(help: "Time without a heartbeat before a node is offline (at least 7.5 of its intervals) (HERD_OFFLINE_AFTER; 15).")
    var offlineAfter: Seconds?

    @Option(help: "Most nodes in the fleet; a new node past it replaces the longest-offline one or is refused (HERD_MAX_NODES; 256).")
    var maxNodes: Int?

    @Option(help: "Days of request traces kept in <data-dir>/herd.db, 0–3650; 0 keeps them all (HERD_TRACE_RETENTION_DAYS; 30).")
    var traceRetentionDays: Double?

    @Option(help: "A node whose camera or microphone is in use: avoid (used only when 4× better), pause (never), ignore (HERD_MEETING_POLICY).")
    var meetingPolicy: String?

    @Option(help: "Expected output of a thinking model, × the prior, until measured, 1–100 (HERD_THINKING_MULTIPLIER; 4).")
    var thinkingMultiplier: Double?

    @Option(name: .customLong("allowed-hosts"),
            help: "Comma-separated host names the dashboard and API answer to besides IP addresses, localhost and this machine's name; * for any (HERD_ALLOWED_HOSTS). Guards against DNS rebinding.")
    var allowedHosts: String?

    @Flag(name: .customLong("require-key"),
          help: "Refuse requests without a valid client key (401); keys are made with `herd-control keys create` (HERD_REQUIRE_KEY=1).")
    var requireKey = false

    @Option(parsing: .singleValue,
            help: "A cloud provider (OpenAI-compatible) a key made with --cloud may overflow to: NAME=https://host/v1 (repeatable). Its key: HERD_PROVIDER_<NAME>_KEY or --provider-key-file.")
    var provider: [String] = []

    @Option(name: .customLong("provider-model"), parsing: .singleValue,
            help: "NAME:LOCAL=REMOTE: a request for LOCAL may go to provider NAME as REMOTE (repeatable); only mapped models overflow.")
    var providerModel: [String] = []

    @Option(name: .customLong("provider-key-file"), parsing: .singleValue, help: "NAME=PATH: the provider's API key, read by the proxies from this file.")
    var providerKeyFile: [String] = []

    @Option(name: .customLong("provider-ca"), help: "A CA file to trust for the providers instead of the system's store (HERD_PROVIDER_CA).")
    var providerCa: String?

    @Option(parsing: .singleValue, help: "An extra argument for every herd-proxy child (repeatable), e.g. --proxy-arg=--first-byte-timeout=60.")
    var proxyArg: [String] = []

    mutating func validate() throws {
        do { _ = try options() } catch { throw ValidationError(error.description) }
    }

    /// The settings from flags, their `HERD_*` twins and defaults, each
    /// within its range (`SettingsReader`: a bad value stops the start).
    func options(_ settings: SettingsReader = SettingsReader()) throws(SettingError) -> ControlOptions {
        var options = ControlOptions()
        options.host = settings.string(host, env: "HERD_HOST", default: "127.0.0.1")
        options.port = try settings.int(port, "port", env: "HERD_PORT", default: 11436, in: 0...65535)
        options.proxyPort = try settings.int(proxyPort, "proxy-port", env: "HERD_PROXY_PORT", default: 11435, in: 0...65535)
        options.proxies = try settings.int(proxies, "proxies", env: "HERD_PROXIES", default: 1, in: 0...64)
        options.dataDirectory = dataDir ?? DataDirectory.resolve()
        options.controlSocket = controlSocket ?? Environment.string("HERD_CONTROL_SOCKET")
        options.fleetKey = fleetKey ?? Environment.string("HERD_FLEET_KEY")
        if let key = options.fleetKey, FleetKey(key) == nil { throw SettingError("--fleet-key (HERD_FLEET_KEY) must be at least 16 characters") }
        options.mdns = !(try settings.bool(noMdns ? true : nil, env: "HERD_NO_MDNS", default: false))
        options.fleetID = settings.string(fleetId, env: "HERD_FLEET_ID", default: "herd")
        guard !options.fleetID.isEmpty, options.fleetID.utf8.count <= 63 else { throw SettingError("--fleet-id: 1–63 bytes") }
        options.scheduler.maxConcurrencyPerModel = try settings.optionalInt(maxConcurrency, "max-concurrency", env: "HERD_MAX_CONCURRENCY", in: 1...1_000_000)
        options.scheduler.maxInFlightPerClient = try settings.optionalInt(maxClientInFlight, "max-client-in-flight", env: "HERD_MAX_CLIENT_IN_FLIGHT",
                                                                         in: 1...1_000_000)
        options.scheduler.prewarm = try settings.bool(prewarm, env: "HERD_PREWARM", default: true)
        options.scheduler.maxTicketsPerModel = try settings.int(routeTickets, "route-tickets", env: "HERD_ROUTE_TICKETS", default: 64, in: 0...4_096)
        let policy = try settings.choice(numCtxPolicy, "num-ctx-policy", env: "HERD_NUM_CTX_POLICY", default: "strip",
                                         in: Scheduler.NumCtxPolicy.allCases.map(\.rawValue))
        options.scheduler.numCtxPolicy = Scheduler.NumCtxPolicy(rawValue: policy) ?? .strip
        let day = 86_400.0
        options.scheduler.queueTimeoutMilliseconds = try settings.seconds(queueTimeout, "queue-timeout", env: "HERD_QUEUE_TIMEOUT",
                                                                          default: 30, in: 0.001...day).milliseconds
        options.scheduler.maxRetries = try settings.int(maxRetries, "max-retries", env: "HERD_MAX_RETRIES", default: 2, in: 0...16)
        let meeting = try settings.choice(meetingPolicy, "meeting-policy", env: "HERD_MEETING_POLICY", default: "avoid",
                                          in: Scorer.MeetingPolicy.allCases.map(\.rawValue))
        options.scheduler.scoring.meetingPolicy = Scorer.MeetingPolicy(rawValue: meeting) ?? .avoid
        options.scheduler.scoring.thinkingMultiplier = try settings.number(thinkingMultiplier, "thinking-multiplier", env: "HERD_THINKING_MULTIPLIER",
                                                                  default: 4, in: 1...100)
        let retention = try settings.number(traceRetentionDays, "trace-retention-days", env: "HERD_TRACE_RETENTION_DAYS", default: 30, in: 0...3_650)
        options.traceRetentionMilliseconds = UInt64(saturating: retention * 86_400_000)
        let degraded = try settings.seconds(degradedAfter, "degraded-after", env: "HERD_DEGRADED_AFTER", default: 6, in: 0.1...day)
        let offline = try settings.seconds(offlineAfter, "offline-after", env: "HERD_OFFLINE_AFTER", default: 15, in: 0.1...day)
        guard offline.value > degraded.value else { throw SettingError("--offline-after (\(offline)) must be longer than --degraded-after (\(degraded))") }
        options.registry.degradedAfterMilliseconds = degraded.milliseconds
        options.registry.offlineAfterMilliseconds = offline.milliseconds
        options.registry.maxNodes = try settings.int(maxNodes, "max-nodes", env: "HERD_MAX_NODES", default: 256, in: 1...100_000)
        options.proxyArguments = proxyArg
        options.requireKey = try settings.bool(requireKey ? true : nil, env: "HERD_REQUIRE_KEY", default: false)
        do {
            var providers = try provider.map { spec throws(CloudProviderError) in try CloudProvider.parse(spec) }
            guard Set(providers.map(\.name)).count == providers.count else { throw CloudProviderError("--provider: each name once") }
            for spec in providerModel {
                let (name, local, remote) = try CloudProvider.parseModel(spec)
                guard let i = providers.firstIndex(where: { $0.name == name }) else { throw CloudProviderError("--provider-model \(spec): no --provider \(name)") }
                providers[i].models[local] = remote
            }
            for spec in providerKeyFile {
                let (name, _) = try CloudProvider.parsePair(spec, flag: "provider-key-file")
                guard providers.contains(where: { $0.name == name }) else { throw CloudProviderError("--provider-key-file: no --provider \(name)") }
            }
            options.providers = providers
        } catch {
            throw SettingError("\(error)")
        }
        // The proxies send the requests: they get the providers (never a key: they read it themselves).
        for spec in provider { options.proxyArguments.append("--provider=" + spec) }
        for spec in providerKeyFile { options.proxyArguments.append("--provider-key-file=" + spec) }
        let ca = settings.string(providerCa, env: "HERD_PROVIDER_CA", default: "")
        if !ca.isEmpty { options.proxyArguments.append("--provider-ca=" + ca) }
        options.allowedHosts = settings.string(allowedHosts, env: "HERD_ALLOWED_HOSTS", default: "")
            .split(separator: ",").map { String($0.trimmingSpaces) }.filter { !$0.isEmpty }
        return options
    }

    func run() throws {
        try ControlApp(options: try options()).run()
    }
}

extension Seconds: ExpressibleByArgument {}
