import HerdRuntime
import HerdJSON
/// What herd-node reports every ~2 s (`POST /heartbeat`), schema 1. Control
/// validates it whole: anything malformed is refused and changes nothing.
public struct Heartbeat: Equatable, Sendable {
    public static let schema = 1

    /// A model on a backend's disk (`/api/tags`, `/v1/models`).
    public struct Model: Equatable, Sendable {
        public var name: String
        public var sizeBytes: Int
        public var digest: String
        public var modifiedAt: String
        /// Ollama's `details` object, passed through to `/api/tags`.
        public var details: JSONValue
        /// From `/api/show`: `completion`, `vision`, `tools`, `embedding`, `thinking`, …
        public var capabilities: [String]

        public init(name: String, sizeBytes: Int = 0, digest: String = "", modifiedAt: String = "", details: JSONValue = [:], capabilities: [String] = []) {
            self.name = name
            self.sizeBytes = sizeBytes
            self.digest = digest
            self.modifiedAt = modifiedAt
            self.details = details
            self.capabilities = capabilities
        }
    }

    /// A model loaded in memory (`/api/ps`).
    public struct LoadedModel: Equatable, Sendable {
        public var name: String
        public var sizeBytes: Int
        public var vramBytes: Int
        public var contextLength: Int
        public var expiresAt: String

        public init(name: String, sizeBytes: Int = 0, vramBytes: Int = 0, contextLength: Int = 0, expiresAt: String = "") {
            self.name = name
            self.sizeBytes = sizeBytes
            self.vramBytes = vramBytes
            self.contextLength = contextLength
            self.expiresAt = expiresAt
        }
    }

    /// One inference server on the node.
    public struct Backend: Equatable, Sendable {
        public var kind: BackendKind
        /// The URL the agent was given (for people).
        public var url: String
        /// `host:port` the router connects to (numeric host).
        public var address: String
        public var reachable: Bool
        public var version: String?
        public var error: String?
        public var models: [Model]
        public var loaded: [LoadedModel]

        public init(kind: BackendKind, url: String, address: String, reachable: Bool, version: String? = nil, error: String? = nil,
                    models: [Model] = [], loaded: [LoadedModel] = []) {
            self.kind = kind
            self.url = url
            self.address = address
            self.reachable = reachable
            self.version = version
            self.error = error
            self.models = models
            self.loaded = loaded
        }
    }

    public var nodeID: String
    public var agentVersion: String
    public var sentAtMilliseconds: Int
    public var cpuCores: Int
    /// 0…1 over the last sampling interval.
    public var cpuUtilization: Double
    public var memoryTotalBytes: Int
    public var memoryAvailableBytes: Int
    public var backends: [Backend]
    /// Load, swap, pressure, GPUs, thermal state, camera/microphone (optional on the wire).
    public var telemetry: Telemetry

    public init(nodeID: String, agentVersion: String = HerdVersion.current, sentAtMilliseconds: Int = 0, cpuCores: Int = 0,
                cpuUtilization: Double = 0, memoryTotalBytes: Int = 0, memoryAvailableBytes: Int = 0, backends: [Backend] = [], telemetry: Telemetry = Telemetry()) {
        self.nodeID = nodeID
        self.agentVersion = agentVersion
        self.sentAtMilliseconds = sentAtMilliseconds
        self.cpuCores = cpuCores
        self.cpuUtilization = cpuUtilization
        self.memoryTotalBytes = memoryTotalBytes
        self.memoryAvailableBytes = memoryAvailableBytes
        self.backends = backends
        self.telemetry = telemetry
    }

    public var json: JSONValue {
        ["schema": .int(Heartbeat.schema), "node_id": .string(nodeID), "agent_version": .string(agentVersion),
         "sent_at_ms": .int(sentAtMilliseconds),
         "cpu": ["cores": .int(cpuCores), "utilization": .number(cpuUtilization)],
         "memory": ["total_bytes": .int(memoryTotalBytes), "available_bytes": .int(memoryAvailableBytes)],
         "telemetry": telemetry.json,
         "backends": .array(backends.map { b in
             var members: [(String, JSONValue)] = [
                 ("kind", .string(b.kind.rawValue)), ("url", .string(b.url)), ("address", .string(b.address)),
                 ("reachable", .bool(b.reachable)),
                 ("models", .array(b.models.map { m in
                     ["name": .string(m.name), "size": .int(m.sizeBytes), "digest": .string(m.digest),
                      "modified_at": .string(m.modifiedAt), "details": m.details, "capabilities": .strings(m.capabilities)]
                 })),
                 ("loaded", .array(b.loaded.map { m in
                     ["name": .string(m.name), "size": .int(m.sizeBytes), "size_vram": .int(m.vramBytes),
                      "context_length": .int(m.contextLength), "expires_at": .string(m.expiresAt)]
                 })),
             ]
             if let v = b.version { members.append(("version", .string(v))) }
             if let e = b.error { members.append(("error", .string(e))) }
             return .object(members)
         })]
    }

    /// Parses and validates a heartbeat body.
    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: "heartbeat")
        let schema = try f.int("schema")
        guard schema == Heartbeat.schema else { throw JSONFieldError("heartbeat.schema \(schema) is not supported (this control speaks \(Heartbeat.schema))") }
        nodeID = try f.string("node_id")
        guard Heartbeat.isValidNodeID(nodeID) else {
            throw JSONFieldError("heartbeat.node_id must be 1–128 characters of letters, digits, '.', '_', '-' or ':'")
        }
        agentVersion = try f.optionalString("agent_version") ?? ""
        sentAtMilliseconds = try f.optionalInt("sent_at_ms") ?? 0
        let cpu = try f.object("cpu")
        cpuCores = try cpu?.optionalInt("cores") ?? 0
        cpuUtilization = try cpu?.double("utilization", default: 0) ?? 0
        let memory = try f.object("memory")
        memoryTotalBytes = try memory?.optionalInt("total_bytes") ?? 0
        memoryAvailableBytes = try memory?.optionalInt("available_bytes") ?? 0
        if let value = json["telemetry"], value != .null {
            telemetry = try Telemetry(json: value)
        } else {
            telemetry = Telemetry()
        }
        let backendFields = try f.objects("backends")
        guard backendFields.count <= 16 else { throw JSONFieldError("heartbeat.backends: at most 16") }
        var backends: [Backend] = []
        for b in backendFields {
            guard let kind = BackendKind(rawValue: try b.string("kind")) else { throw JSONFieldError("\(b.context).kind must be ollama or openai") }
            let address = try b.string("address")
            guard Heartbeat.isValidAddress(address) else { throw JSONFieldError("\(b.context).address must be a numeric host:port") }
            let modelFields = try b.objects("models")
            let loadedFields = try b.objects("loaded")
            guard modelFields.count <= 4096, loadedFields.count <= 256 else { throw JSONFieldError("\(b.context): too many models") }
            var models: [Model] = []
            for m in modelFields {
                let name = try m.string("name")
                guard !name.isEmpty, name.utf8.count <= 512 else { throw JSONFieldError("\(m.context).name must be 1–512 bytes") }
                models.append(Model(name: name, sizeBytes: try m.optionalInt("size") ?? 0, digest: try m.optionalString("digest") ?? "",
                                    modifiedAt: try m.optionalString("modified_at") ?? "", details: m.value["details"] ?? [:],
                                    capabilities: try m.strings("capabilities")))
            }
            var loaded: [LoadedModel] = []
            for m in loadedFields {
                loaded.append(LoadedModel(name: try m.string("name"), sizeBytes: try m.optionalInt("size") ?? 0,
                                          vramBytes: try m.optionalInt("size_vram") ?? 0, contextLength: try m.optionalInt("context_length") ?? 0,
                                          expiresAt: try m.optionalString("expires_at") ?? ""))
            }
            backends.append(Backend(kind: kind, url: try b.optionalString("url") ?? "", address: address,
                                    reachable: try b.bool("reachable", default: true), version: try b.optionalString("version"),
                                    error: try b.optionalString("error"), models: models, loaded: loaded))
        }
        self.backends = backends
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
        return (try? SocketAddress(host: host, port: port)) != nil
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
