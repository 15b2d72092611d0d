import HerdBounds
import ArgumentParser
import Glibc
import HerdHTTP
import HerdRuntime
import HerdSecurity
import HerdWire

/// `herd-node`: the agent on each machine that serves models. Reports the
/// machine's and its backends' state to herd-control.
@main
struct HerdNodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herd-node",
        abstract: "herd's node agent: reports this machine and its model servers to the router.",
        discussion: """
            DESCRIPTION
              herd-node runs on each machine with a model server (Ollama, llama.cpp's
              server, vLLM, LM Studio, speech, image and rerank servers). It finds the
              router over mDNS (or --control), and every --interval seconds sends a
              heartbeat: the servers it finds or is given, their models on disk and
              loaded, memory, GPUs, temperature and throttling, memory pressure, whether
              the owner is in a call (camera or microphone in use), and the share of the
              machine its owner leaves free at this hour of the week, learned over
              weeks. It never changes the model servers; its probes use the cheapest
              endpoint each server has and keep the last models known when a probe
              fails. `herd node` runs it.

            ENVIRONMENT
              Every flag has an HERD_* twin (--control is HERD_CONTROL, --fleet-key
              HERD_FLEET_KEY).

            FILES
              <data-dir>/capacity.db
                  the owner's week, learned per hour
              <data-dir> is --data-dir, else HERD_DATA_DIR (/var/lib/herd-node as a
              service), else $XDG_DATA_HOME/herd, else ~/.local/share/herd.

            EXAMPLES
              herd-node
                  finds the router over mDNS; Ollama on :11434
              herd-node --control http://192.168.1.10:11436 --fleet-key "$(cat fleet.key)"
              herd-node --backend openai=http://127.0.0.1:8080
                  a llama.cpp or vLLM server too
              systemctl enable --now herd-node
                  as a service (the package's unit)

            SEE ALSO
              herd(1), herd-control(1); README.md
            """,
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

    @Option(help: "A backend as KIND=URL[#model,…] (repeatable; HERD_BACKENDS, separated by spaces). KIND: ollama, openai (any OpenAI-compatible server), or a server of one kind of work: stt (speech-to-text), tts (text-to-speech), image, embed, rerank. Its models come from its /v1/models, or are named after #, e.g. stt=http://127.0.0.1:8000#Systran/faster-whisper-tiny.en.")
    var backend: [String] = Environment.string("HERD_BACKENDS").map(HerdNodeCommand.backendList) ?? []

    /// `HERD_BACKENDS`: entries separated by spaces; an entry without `#models` may also be split by commas (as before).
    static func backendList(_ text: String) -> [String] {
        text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).flatMap { word in
            word.contains("#") ? [String(word)] : word.split(separator: ",").map(String.init)
        }
    }

    @Option(help: "This node's id (HERD_NODE_ID); default: the host name.")
    var nodeId: String = Environment.string("HERD_NODE_ID") ?? NodeIdentity.hostname()

    @Option(name: .customLong("fleet-key"), help: "Fleet key to sign heartbeats with (HERD_FLEET_KEY).")
    var fleetKeyFlag: String?
    /// The flag, else its environment twin (an optional option takes no default value).
    var fleetKey: String? { fleetKeyFlag ?? Environment.string("HERD_FLEET_KEY") }

    @Flag(name: .customLong("no-meeting-detection"), help: "Do not report camera/microphone use (meeting detection) (HERD_NO_MEETING_DETECTION=1).")
    var noMeetingDetectionFlag = false
    var noMeetingDetection: Bool {
        get throws(SettingError) { try SettingsReader().bool(noMeetingDetectionFlag ? true : nil, env: "HERD_NO_MEETING_DETECTION", default: false) }
    }

    @Flag(name: .customLong("learn-capacity"), inversion: .prefixedNo,
          help: "Learn the owner's week: per hour of the week, how much CPU and memory the owner uses themselves; the router routes around it (HERD_LEARN_CAPACITY=0 to switch off).")
    var learnCapacityFlag: Bool?
    var learnCapacity: Bool {
        get throws(SettingError) { try SettingsReader().bool(learnCapacityFlag, env: "HERD_LEARN_CAPACITY", default: true) }
    }

    @Option(name: .customLong("data-dir"),
            help: "Where the learned week is kept (capacity.db) (HERD_DATA_DIR); default: $HOME/.local/share/herd-node, as root /var/lib/herd-node.")
    var dataDirFlag: String?
    var dataDir: String {
        if let dir = dataDirFlag ?? Environment.string("HERD_DATA_DIR") { return dir }
        if getuid() != 0, let home = Environment.string("HOME"), !home.isEmpty { return home + "/.local/share/herd-node" }
        return "/var/lib/herd-node"
    }

    @Option(name: .customLong("interval"), help: "Time between heartbeats, 0.1 s–10 min: seconds, or 500ms, 2s, 1m (HERD_INTERVAL; 2). Sent in each heartbeat: the router judges lateness by it.")
    var intervalFlag: Seconds?
    var interval: Seconds {
        get throws(SettingError) {
            try SettingsReader().seconds(intervalFlag, "interval", env: "HERD_INTERVAL", default: 2,
                                         in: Double(Heartbeat.intervalRange.lowerBound) / 1000...Double(Heartbeat.intervalRange.upperBound) / 1000)
        }
    }

    @Option(name: .customLong("command-timeout"), help: "Time a telemetry command (nvidia-smi) may run before it is killed and skipped, up to 600 s (HERD_COMMAND_TIMEOUT; 5).")
    var commandTimeoutFlag: Seconds?
    var commandTimeout: Seconds {
        get throws(SettingError) { try SettingsReader().seconds(commandTimeoutFlag, "command-timeout", env: "HERD_COMMAND_TIMEOUT", default: 5, in: 0.001...600) }
    }

    @Option(name: .customLong("model-probe-interval"),
            help: "How often an OpenAI-compatible backend is asked for its models (/v1/models, /props), 1 s–1 h, and never while the router has requests on this node: llama-cpp-python's server ends a running stream when /v1/models is asked. Between, only /health (HERD_MODEL_PROBE_INTERVAL; 30).")
    var modelProbeIntervalFlag: Seconds?
    var modelProbeInterval: Seconds {
        get throws(SettingError) {
            try SettingsReader().seconds(modelProbeIntervalFlag, "model-probe-interval", env: "HERD_MODEL_PROBE_INTERVAL", default: 30, in: 1...3600)
        }
    }

    func validate() throws {
        do {
            _ = try interval
            _ = try modelProbeInterval
            _ = try commandTimeout
            _ = try learnCapacity
            _ = try noMeetingDetection
        } catch { throw ValidationError(error.description) }
        guard Heartbeat.isValidNodeID(nodeId) else {
            throw ValidationError("--node-id must be 1–128 letters, digits, '.', '_', '-' or ':' (got '\(nodeId)')")
        }
        if let fleetKey, FleetKey(fleetKey) == nil { throw ValidationError("--fleet-key must be at least 16 characters") }
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
            let kinds = BackendKind.allCases.map(\.rawValue).joined(separator: ", ")
            guard entry.utf8.count <= 4096, let eq = entry.firstIndex(of: "="), let kind = BackendKind(rawValue: String(entry[..<eq])) else {
                throw ValidationError("--backend must be KIND=URL[#model,…] with KIND one of \(kinds) (got '\(entry.prefix(200))')")
            }
            var rest = entry[entry.index(after: eq)...]
            var models: [String] = []
            if let hash = rest.firstIndex(of: "#") {
                models = rest[rest.index(after: hash)...].split(separator: ",").map { String($0.trimmingSpaces) }
                rest = rest[..<hash]
                guard !models.isEmpty, models.count <= 64,
                      models.allSatisfy({ RequestLimits.modelBytes.contains($0.utf8.count) && RequestLimits.isModelName($0) }) else {
                    throw ValidationError("--backend \(kind.rawValue)=URL#models: 1–64 model names, each 1–\(RequestLimits.modelBytes.upperBound) bytes")
                }
            }
            do { targets.append(BackendTarget(kind: kind, url: try HTTPURL(String(rest)), models: models)) } catch {
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
                                  intervalMilliseconds: try interval.milliseconds, fleetKey: fleetKey.flatMap(FleetKey.init))
        options.modelProbeMilliseconds = try modelProbeInterval.milliseconds
        options.telemetry.meetingDetection = !(try noMeetingDetection)
        options.telemetry.commandTimeoutMilliseconds = Int32(clamping: max(1, try commandTimeout.milliseconds))
        let learnCapacity = try learnCapacity
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

extension Seconds: ExpressibleByArgument {}
