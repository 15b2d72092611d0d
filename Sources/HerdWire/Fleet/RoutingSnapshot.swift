import HerdJSON

/// control → proxy: what the proxy needs to answer fleet-wide listings and to
/// route on its own while control is away. Pushed on every change.
public struct RoutingSnapshot: Equatable, Sendable, WireCodable {
    public static let context = "snapshot"

    public struct Backend: Equatable, Sendable, Codable {
        public var kind: BackendKind
        public var address: String
        public var models: [String]
        public var loaded: [String]

        public init(kind: BackendKind, address: String, models: [String], loaded: [String]) {
            self.kind = kind
            self.address = address
            self.models = models
            self.loaded = loaded
        }
    }

    public struct Node: Equatable, Sendable, Codable {
        public var id: String
        /// `online`, `degraded` or `offline`; `drained` or `paused` when an operator holds it (not routed to).
        public var status: String
        public var backends: [Backend]
        /// The memory models load into: the GPUs' total, else RAM (a fixed
        /// figure, so the snapshot does not change with it). Where a pull
        /// without `X-Herd-Node` goes.
        @Defaulted<WireDefaults.Zero> public var memoryBytes: Int

        public init(id: String, status: String, backends: [Backend], memoryBytes: Int = 0) {
            self.id = id
            self.status = status
            self.backends = backends
            self.memoryBytes = memoryBytes
        }
    }

    public var version: Int
    public var nodes: [Node]
    /// The body of `GET /api/tags` for the fleet (the union, one entry per model).
    public var tags: JSONValue
    /// The body of `GET /api/ps` for the fleet.
    public var ps: JSONValue
    /// The body of `GET /v1/models` for the fleet.
    public var openAIModels: JSONValue
    /// The Ollama version reported at `GET /api/version`.
    public var ollamaVersion: String
    /// The client keys (hashes) and whether a request needs one.
    @Defaulted<ClientKeys.None> public var keys: ClientKeys

    public init(version: Int = 0, nodes: [Node] = [], tags: JSONValue = ["models": []], ps: JSONValue = ["models": []],
                openAIModels: JSONValue = ["object": "list", "data": []], ollamaVersion: String = "0.0.0", keys: ClientKeys = ClientKeys()) {
        self.keys = keys
        self.version = version
        self.nodes = nodes
        self.tags = tags
        self.ps = ps
        self.openAIModels = openAIModels
        self.ollamaVersion = ollamaVersion
    }

    enum CodingKeys: String, CodingKey {
        case version, nodes, tags, ps, openAIModels = "openai_models", ollamaVersion = "ollama_version", keys
    }
}
