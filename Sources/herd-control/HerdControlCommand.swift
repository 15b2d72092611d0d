import ArgumentParser
import HerdShared

/// `herd-control`: the control plane (discovery, fleet registry, scoring,
/// queues, SQLite, dashboard on `:11436`).
@main
struct HerdControlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herd-control",
        abstract: "herd's control plane: fleet registry, routing decisions, dashboard.",
        discussion: "Each flag also reads an HERD_* environment variable (e.g. HERD_PORT).",
        version: HerdVersion.current)

    @Option(help: "Address to bind the dashboard/API and the proxies (HERD_HOST).")
    var host: String = Environment.string("HERD_HOST") ?? "127.0.0.1"

    @Option(help: "Port of the dashboard, JSON API and heartbeats (HERD_PORT).")
    var port: Int = Environment.int("HERD_PORT") ?? 11436

    @Option(help: "Port the herd-proxy children serve clients on (HERD_PROXY_PORT).")
    var proxyPort: Int = Environment.int("HERD_PROXY_PORT") ?? 11435

    @Option(help: "How many herd-proxy children to run; 0 when systemd runs them (HERD_PROXIES).")
    var proxies: Int = Environment.int("HERD_PROXIES") ?? 1

    @Option(help: "Data directory (HERD_DATA_DIR).")
    var dataDir: String?

    @Option(help: "Fleet key that nodes must sign heartbeats with (HERD_FLEET_KEY).")
    var fleetKey: String?

    @Flag(help: "Do not publish the router over mDNS (HERD_NO_MDNS=1).")
    var noMdns = false

    func run() throws {
        let directory = dataDir ?? DataDirectory.resolve()
        throw ValidationError("herd-control is not implemented yet (would serve \(host):\(port), data in \(directory))")
    }
}
