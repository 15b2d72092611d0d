import HerdJSON
import HerdBounds

/// What herd-node reports every ~2 s (`POST /heartbeat`), schema 1: `Codable`
/// over `JSONValue`. Control validates it whole (`init(json:)` decodes, then
/// `validate` checks ids, addresses and bounds): anything malformed is refused
/// and changes nothing. Fields an older agent leaves out are `Defaulted`.
public struct Heartbeat: Equatable, Sendable, WireCodable {
    public static let context = "heartbeat"
    public static let currentSchema = 1

    /// A model on a backend's disk (`/api/tags`, `/v1/models`).
    public struct Model: Equatable, Sendable, Codable {
        public var name: String
        @Defaulted<WireDefaults.Zero> public var sizeBytes: Int
        @Defaulted<WireDefaults.EmptyString> public var digest: String
        @Defaulted<WireDefaults.EmptyString> public var modifiedAt: String
        /// Ollama's `details` object, passed through to `/api/tags`.
        @Defaulted<WireDefaults.EmptyObject> public var details: JSONValue
        /// From `/api/show`: `completion`, `vision`, `tools`, `embedding`, `thinking`, …
        @Defaulted<WireDefaults.Empty<String>> public var capabilities: [String]

        public init(name: String, sizeBytes: Int = 0, digest: String = "", modifiedAt: String = "", details: JSONValue = [:], capabilities: [String] = []) {
            self.name = name
            self.sizeBytes = sizeBytes
            self.digest = digest
            self.modifiedAt = modifiedAt
            self.details = details
            self.capabilities = capabilities
        }

        enum CodingKeys: String, CodingKey {
            case name, sizeBytes = "size", digest, modifiedAt = "modified_at", details, capabilities
        }
    }

    /// A model loaded in memory (`/api/ps`).
    public struct LoadedModel: Equatable, Sendable, Codable {
        public var name: String
        @Defaulted<WireDefaults.Zero> public var sizeBytes: Int
        @Defaulted<WireDefaults.Zero> public var vramBytes: Int
        @Defaulted<WireDefaults.Zero> public var contextLength: Int
        @Defaulted<WireDefaults.EmptyString> public var expiresAt: String

        public init(name: String, sizeBytes: Int = 0, vramBytes: Int = 0, contextLength: Int = 0, expiresAt: String = "") {
            self.name = name
            self.sizeBytes = sizeBytes
            self.vramBytes = vramBytes
            self.contextLength = contextLength
            self.expiresAt = expiresAt
        }

        enum CodingKeys: String, CodingKey {
            case name, sizeBytes = "size", vramBytes = "size_vram", contextLength = "context_length", expiresAt = "expires_at"
        }
    }

    /// One inference server on the node.
    public struct Backend: Equatable, Sendable, Codable {
        public var kind: BackendKind
        /// The URL the agent was given (for people).
        @Defaulted<WireDefaults.EmptyString> public var url: String
        /// `host:port` the router connects to (numeric host).
        public var address: String
        @Defaulted<WireDefaults.True> public var reachable: Bool
        public var version: String?
        public var error: String?
        @Defaulted<WireDefaults.Empty<Model>> public var models: [Model]
        @Defaulted<WireDefaults.Empty<LoadedModel>> public var loaded: [LoadedModel]
        /// Requests the backend serves at once per model, when it says:
        /// Ollama's `OLLAMA_NUM_PARALLEL` (read from the server's environment),
        /// llama.cpp's `/props` `total_slots`. The learned concurrency starts here.
        public var parallel: Int?
        /// The backend answers only on its machine's loopback, so the router cannot reach it.
        @Defaulted<WireDefaults.False> public var localOnly: Bool = false
        /// Hosts other than the router connected to the backend right now
        /// (they bypass the router; at most `maxDirectClients`).
        @Defaulted<WireDefaults.Empty<String>> public var directClients: [String] = []
        public static let maxDirectClients = 8
        /// The backend's own queue gauges (its `/metrics`), read while the router has requests on it.
        public var queue: QueueGauges?

        enum CodingKeys: String, CodingKey {
            case kind, url, address, reachable, version, error, models, loaded, parallel
            case localOnly = "local_only", directClients = "direct_clients", queue
        }

        public init(kind: BackendKind, url: String, address: String, reachable: Bool, version: String? = nil, error: String? = nil,
                    models: [Model] = [], loaded: [LoadedModel] = [], parallel: Int? = nil) {
            self.kind = kind
            self.url = url
            self.address = address
            self.reachable = reachable
            self.version = version
            self.error = error
            self.models = models
            self.loaded = loaded
            self.parallel = parallel
        }
    }

    /// What a backend's own metrics say of its queue at one instant, summed
    /// over its models: requests it is serving (`running`) and requests it
    /// holds waiting for a slot (`waiting`). From llama.cpp's server
    /// (`llamacpp:requests_processing`, `llamacpp:requests_deferred`), vLLM
    /// (`vllm:num_requests_running`, `vllm:num_requests_waiting`), SGLang and
    /// TGI. Each 0–`maxCount`.
    public struct QueueGauges: Equatable, Sendable, Codable {
        public static let maxCount = 1_000_000
        public var running: Int
        public var waiting: Int
        /// Which server's names they were read from (`llamacpp`, `vllm`, `sglang`, `tgi`).
        @Defaulted<WireDefaults.EmptyString> public var source: String

        public init(running: Int, waiting: Int, source: String = "") {
            self.running = running
            self.waiting = waiting
            self.source = source
        }
    }

    /// CPU cores and utilisation (0…1 over the last sampling interval).
    public struct CPU: Equatable, Sendable, Codable {
        public enum Unknown: WireDefault { public static var value: CPU { CPU() } }

        @Defaulted<WireDefaults.Zero> public var cores: Int
        @Defaulted<WireDefaults.ZeroNumber> public var utilization: Double

        public init(cores: Int = 0, utilization: Double = 0) {
            self.cores = cores
            self.utilization = utilization
        }
    }

    public struct Memory: Equatable, Sendable, Codable {
        public enum Unknown: WireDefault { public static var value: Memory { Memory() } }

        @Defaulted<WireDefaults.Zero> public var totalBytes: Int
        @Defaulted<WireDefaults.Zero> public var availableBytes: Int

        public init(totalBytes: Int = 0, availableBytes: Int = 0) {
            self.totalBytes = totalBytes
            self.availableBytes = availableBytes
        }

        enum CodingKeys: String, CodingKey {
            case totalBytes = "total_bytes", availableBytes = "available_bytes"
        }
    }

    /// What herd-node learned of its owner's week (`--learn-capacity`): for
    /// this hour of the week, the share of the machine the owner leaves free
    /// and the memory herd may fill.
    public struct Capacity: Equatable, Sendable, Codable {
        /// 0…1: 1 − the owner's own CPU use at this hour of the week (learned, blended with now).
        public var availability: Double
        /// Bytes of memory models may use now: total − what the owner uses at this hour (at least what is free now).
        public var memoryCeilingBytes: Int
        /// Hours of the week with a learned value (0…168).
        @Defaulted<WireDefaults.Zero> public var learnedHours: Int
        /// This hour of the week was learned in an earlier week (not only from now):
        /// only then may a low availability pause the node.
        @Defaulted<WireDefaults.False> public var hourLearned: Bool
        /// The learned availability of every hour of the week (168 values,
        /// Sunday 00:00–00:59 first, in the node's local time), −1 where not learned: the dashboard's heatmap.
        public var week: [Double]?

        public init(availability: Double, memoryCeilingBytes: Int, learnedHours: Int = 0, hourLearned: Bool = false, week: [Double]? = nil) {
            self.availability = availability
            self.memoryCeilingBytes = memoryCeilingBytes
            self.learnedHours = learnedHours
            self.hourLearned = hourLearned
            self.week = week
        }

        enum CodingKeys: String, CodingKey {
            case availability, memoryCeilingBytes = "memory_ceiling_bytes", learnedHours = "learned_hours", hourLearned = "hour_learned", week
        }

        public var json: JSONValue {
            ["availability": .number((availability * 1000).rounded() / 1000), "memory_ceiling_bytes": .int(memoryCeilingBytes),
             "learned_hours": .int(learnedHours), "hour_learned": .bool(hourLearned)]
        }
    }

    public var schema: Int
    public var nodeID: String
    @Defaulted<WireDefaults.EmptyString> public var agentVersion: String
    @Defaulted<WireDefaults.Zero> public var sentAtMilliseconds: Int
    @Defaulted<CPU.Unknown> public var cpu: CPU
    @Defaulted<Memory.Unknown> public var memory: Memory
    /// Load, swap, pressure, GPUs, thermal state, camera/microphone (left out by older agents).
    @Defaulted<Telemetry.Unknown> public var telemetry: Telemetry
    @Defaulted<WireDefaults.Empty<Backend>> public var backends: [Backend]
    /// Learned capacity (absent when the node does not learn it).
    public var capacity: Capacity?
    /// How often this node beats (ms; absent from older agents: 2,000). The
    /// registry derives degraded and offline from it, so a node started with
    /// `--interval 6` is not late by control's clock.
    public var intervalMilliseconds: Int?
    public static let defaultIntervalMilliseconds = 2_000
    /// The interval a node may choose (ms).
    public static let intervalRange = 100...600_000
    /// The interval this heartbeat says, else the default.
    public var interval: Int { intervalMilliseconds ?? Heartbeat.defaultIntervalMilliseconds }

    public init(nodeID: String, agentVersion: String = HerdVersion.current, sentAtMilliseconds: Int = 0, cpuCores: Int = 0,
                cpuUtilization: Double = 0, memoryTotalBytes: Int = 0, memoryAvailableBytes: Int = 0, backends: [Backend] = [],
                telemetry: Telemetry = Telemetry()) {
        schema = Heartbeat.currentSchema
        self.nodeID = nodeID
        self.agentVersion = agentVersion
        self.sentAtMilliseconds = sentAtMilliseconds
        cpu = CPU(cores: cpuCores, utilization: cpuUtilization)
        memory = Memory(totalBytes: memoryTotalBytes, availableBytes: memoryAvailableBytes)
        self.backends = backends
        self.telemetry = telemetry
    }

    enum CodingKeys: String, CodingKey {
        case schema, nodeID = "node_id", agentVersion = "agent_version", sentAtMilliseconds = "sent_at_ms", cpu, memory, telemetry, backends,
             capacity, intervalMilliseconds = "interval_ms"
    }

    public var cpuCores: Int { cpu.cores }
    public var cpuUtilization: Double { cpu.utilization }
    public var memoryTotalBytes: Int { memory.totalBytes }
    public var memoryAvailableBytes: Int {
        get { memory.availableBytes }
        set { memory.availableBytes = newValue }
    }

    /// Parses and validates a heartbeat body.
    public init(json: JSONValue) throws(JSONFieldError) {
        self = try JSONValueDecoder().decode(Heartbeat.self, from: json, context: Heartbeat.context)
        try validate()
    }

    /// The rules a heartbeat must follow beyond its shape: the schema this
    /// control speaks, a node id fit for logs and labels, numeric backend
    /// addresses, and bounds on everything a node can send many of.
    public mutating func validate() throws(JSONFieldError) {
        guard schema == Heartbeat.currentSchema else {
            throw JSONFieldError("heartbeat.schema \(schema) is not supported (this control speaks \(Heartbeat.currentSchema))")
        }
        guard Heartbeat.isValidNodeID(nodeID) else {
            throw JSONFieldError("heartbeat.node_id must be 1–128 characters of letters, digits, '.', '_', '-' or ':'")
        }
        guard backends.count <= 16 else { throw JSONFieldError("heartbeat.backends: at most 16") }
        try HeartbeatRanges.check(self)
        if let capacity {
            guard capacity.availability.isFinite, (0...1).contains(capacity.availability) else {
                throw JSONFieldError("heartbeat.capacity.availability must be 0–1")
            }
            guard HeartbeatRanges.bytes.contains(capacity.memoryCeilingBytes), (0...168).contains(capacity.learnedHours) else {
                throw JSONFieldError("heartbeat.capacity: memory_ceiling_bytes 0–2^50, learned_hours 0–168")
            }
            if let week = capacity.week, week.count != 168 || !week.allSatisfy({ $0 == -1 || (0...1).contains($0) }) {
                throw JSONFieldError("heartbeat.capacity.week must be 168 values, each 0–1 or -1")
            }
        }
        for (i, backend) in backends.enumerated() {
            let path = "heartbeat.backends[\(i)]"
            guard Heartbeat.isValidAddress(backend.address) else { throw JSONFieldError("\(path).address must be a numeric host:port") }
            guard backend.models.count <= 4096, backend.loaded.count <= 256 else { throw JSONFieldError("\(path): too many models") }
            if let parallel = backend.parallel, !(1...1024).contains(parallel) { throw JSONFieldError("\(path).parallel must be 1–1024") }
            if let queue = backend.queue {
                guard (0...QueueGauges.maxCount).contains(queue.running), (0...QueueGauges.maxCount).contains(queue.waiting), queue.source.utf8.count <= 16 else {
                    throw JSONFieldError("\(path).queue counts must be 0–\(QueueGauges.maxCount), its source at most 16 bytes")
                }
            }
            guard backend.directClients.count <= Backend.maxDirectClients,
                  backend.directClients.allSatisfy(IPLiteral.isValid) else {
                throw JSONFieldError("\(path).direct_clients: at most \(Backend.maxDirectClients) numeric addresses")
            }
            for (j, model) in backend.models.enumerated() where model.name.isEmpty || model.name.utf8.count > 512 {
                throw JSONFieldError("\(path).models[\(j)].name must be 1–512 bytes")
            }
            for (j, model) in backend.loaded.enumerated() where model.name.isEmpty || model.name.utf8.count > 512 {
                throw JSONFieldError("\(path).loaded[\(j)].name must be 1–512 bytes")
            }
        }
        if telemetry.gpus.count > 16 { telemetry.gpus = Array(telemetry.gpus.prefix(16)) }
    }

    public static func isValidNodeID(_ id: String) -> Bool {
        guard !id.isEmpty, id.utf8.count <= 128 else { return false }
        return id.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F || c == 0x2D || c == 0x3A
        }
    }

    /// A numeric `host:port` (`[v6]:port` for IPv6).
    public static func isValidAddress(_ address: String) -> Bool {
        guard let (host, port) = splitHostPort(address) else { return false }
        return port > 0 && port < 65536 && IPLiteral.isValid(host)
    }
}

/// Splits `host:port` or `[v6]:port`.
public func splitHostPort(_ text: String) -> (String, Int)? {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), port > 0, port < 65536 else { return nil }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty else { return nil }
    return (host, port)
}
