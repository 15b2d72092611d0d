import ArgumentParser
import Glibc
import HerdHTTP
import HerdRuntime
import HerdWire

/// `herd-node`: the agent on each machine that serves models. Reports the
/// machine's and its backends' state to herd-control.
@main
struct HerdNodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herd-node",
        abstract: "herd's node agent: reports this machine and its model servers to the router.",
        discussion: "Each flag also reads an HERD_* environment variable (e.g. HERD_CONTROL).",
        version: HerdVersion.current)

    @Option(name: .customLong("control"), help: "herd-control's URL, e.g. http://192.168.1.10:11436 (HERD_CONTROL); default: found over mDNS.")
    var controlFlag: String?
    /// The flag, else its environment twin (an optional option takes no default value).
    var control: String? { controlFlag ?? Environment.string("HERD_CONTROL") }

    @Option(name: .customLong("fleet-id"), help: "With mDNS: use the router of this fleet (HERD_FLEET_ID).")
    var fleetIdFlag: String?
    /// The flag, else its environment twin (an optional option takes no default value).
    var fleetId: String? { fleetIdFlag ?? Environment.string("HERD_FLEET_ID") }

    @Option(help: "The local Ollama (HERD_OLLAMA); 'none' for no Ollama.")
    var ollama: String = Environment.string("HERD_OLLAMA") ?? "http://127.0.0.1:11434"

    @Option(help: "An extra backend as KIND=URL, e.g. openai=http://127.0.0.1:8080 (repeatable; HERD_BACKENDS, comma-separated).")
    var backend: [String] = Environment.string("HERD_BACKENDS")?.split(separator: ",").map(String.init) ?? []

    @Option(help: "This node's id (HERD_NODE_ID); default: the host name.")
    var nodeId: String = Environment.string("HERD_NODE_ID") ?? NodeIdentity.hostname()

    @Option(name: .customLong("fleet-key"), help: "Fleet key to sign heartbeats with (HERD_FLEET_KEY).")
    var fleetKeyFlag: String?
    /// The flag, else its environment twin (an optional option takes no default value).
    var fleetKey: String? { fleetKeyFlag ?? Environment.string("HERD_FLEET_KEY") }

    @Flag(help: "Do not report camera/microphone use (meeting detection) (HERD_NO_MEETING_DETECTION=1).")
    var noMeetingDetection = Environment.bool("HERD_NO_MEETING_DETECTION")

    @Flag(inversion: .prefixedNo,
          help: "Learn the owner's week: per hour of the week, how much CPU and memory the owner uses themselves; the router routes around it (HERD_LEARN_CAPACITY=0 to switch off).")
    var learnCapacity = Environment.string("HERD_LEARN_CAPACITY").map { $0 != "0" && $0 != "false" } ?? true

    @Option(name: .customLong("data-dir"),
            help: "Where the learned week is kept (capacity.db) (HERD_DATA_DIR); default: $HOME/.local/share/herd-node, as root /var/lib/herd-node.")
    var dataDirFlag: String?
    var dataDir: String {
        if let dir = dataDirFlag ?? Environment.string("HERD_DATA_DIR") { return dir }
        if getuid() != 0, let home = Environment.string("HOME"), !home.isEmpty { return home + "/.local/share/herd-node" }
        return "/var/lib/herd-node"
    }

    @Option(help: "Seconds between heartbeats (HERD_INTERVAL).")
    var interval: Double = Environment.string("HERD_INTERVAL").flatMap(Double.init) ?? 2

    @Option(help: "Seconds a telemetry command (nvidia-smi) may run before it is killed and skipped (HERD_COMMAND_TIMEOUT).")
    var commandTimeout: Double = Environment.string("HERD_COMMAND_TIMEOUT").flatMap(Double.init) ?? 5

    func validate() throws {
        guard commandTimeout > 0, commandTimeout <= 600 else { throw ValidationError("--command-timeout must be more than 0 and at most 600 s") }
        guard Heartbeat.isValidNodeID(nodeId) else {
            throw ValidationError("--node-id must be 1–128 letters, digits, '.', '_', '-' or ':' (got '\(nodeId)')")
        }
        if let fleetKey, FleetKey(fleetKey) == nil { throw ValidationError("--fleet-key must be at least 16 characters") }
        guard interval >= 0.1 else { throw ValidationError("--interval must be at least 0.1 s") }
        _ = try targets()
        if let control {
            do { _ = try HTTPURL(control, defaultPort: 11436) } catch { throw ValidationError("--control: \(error)") }
        }
    }

    func targets() throws -> [BackendTarget] {
        var targets: [BackendTarget] = []
        if ollama != "none" {
            do { targets.append(BackendTarget(kind: .ollama, url: try HTTPURL(ollama, defaultPort: 11434))) } catch { throw ValidationError("--ollama: \(error)") }
        }
        for entry in backend {
            guard let eq = entry.firstIndex(of: "="), let kind = BackendKind(rawValue: String(entry[..<eq])) else {
                throw ValidationError("--backend must be KIND=URL with KIND ollama or openai (got '\(entry)')")
            }
            do { targets.append(BackendTarget(kind: kind, url: try HTTPURL(String(entry[entry.index(after: eq)...])))) } catch {
                throw ValidationError("--backend: \(error)")
            }
        }
        guard !targets.isEmpty else { throw ValidationError("no backend to report: give --ollama or --backend") }
        return targets
    }

    func run() throws {
        let controlURL = try control.map { try HTTPURL($0, defaultPort: 11436) }
        let loop = try EventLoop()
        var options = NodeOptions(control: controlURL, fleetID: fleetId, backends: try targets(), nodeID: nodeId,
                                  intervalMilliseconds: UInt64(interval * 1000), fleetKey: fleetKey.flatMap(FleetKey.init))
        options.telemetry.meetingDetection = !noMeetingDetection
        options.telemetry.commandTimeoutMilliseconds = Int32(max(1, commandTimeout * 1000))
        options.learnCapacity = learnCapacity
        if learnCapacity {
            // mkdir -p: each missing parent, 0700 for what herd creates.
            var path = dataDir.hasPrefix("/") ? "" : "."
            for part in dataDir.split(separator: "/") {
                path += "/" + part
                _ = mkdir(path, 0o700)
            }
            options.capacityDatabase = dataDir + "/capacity.db"
        }
        try NodeAgent(loop: loop, options: options).run()
    }
}

/// The machine's name, the default node id.
enum NodeIdentity {
    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let cleaned = String(name.map { Heartbeat.isValidNodeID(String($0)) ? $0 : "-" })
        return cleaned.isEmpty ? "node" : cleaned
    }
}
