import HerdJSON
/// control → proxy: what the proxy needs to answer fleet-wide listings and to
/// route on its own while control is away. Pushed on every change.
public struct RoutingSnapshot: Equatable, Sendable {
    public struct Backend: Equatable, Sendable {
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

    public struct Node: Equatable, Sendable {
        public var id: String
        /// `online`, `degraded` or `offline`.
        public var status: String
        public var backends: [Backend]

        public init(id: String, status: String, backends: [Backend]) {
            self.id = id
            self.status = status
            self.backends = backends
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

    public init(version: Int = 0, nodes: [Node] = [], tags: JSONValue = ["models": []], ps: JSONValue = ["models": []],
                openAIModels: JSONValue = ["object": "list", "data": []], ollamaVersion: String = "0.0.0") {
        self.version = version
        self.nodes = nodes
        self.tags = tags
        self.ps = ps
        self.openAIModels = openAIModels
        self.ollamaVersion = ollamaVersion
    }

    public var json: JSONValue {
        ["version": .int(version),
         "nodes": .array(nodes.map { n in
             ["id": .string(n.id), "status": .string(n.status), "backends": .array(n.backends.map { b in
                 ["kind": .string(b.kind.rawValue), "address": .string(b.address), "models": .strings(b.models), "loaded": .strings(b.loaded)]
             })]
         }),
         "tags": tags, "ps": ps, "openai_models": openAIModels, "ollama_version": .string(ollamaVersion)]
    }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: "snapshot")
        version = try f.int("version")
        var nodes: [Node] = []
        for n in try f.objects("nodes") {
            var backends: [Backend] = []
            for b in try n.objects("backends") {
                guard let kind = BackendKind(rawValue: try b.string("kind")) else { throw JSONFieldError("\(b.context).kind is unknown") }
                backends.append(Backend(kind: kind, address: try b.string("address"), models: try b.strings("models"), loaded: try b.strings("loaded")))
            }
            nodes.append(Node(id: try n.string("id"), status: try n.string("status"), backends: backends))
        }
        self.nodes = nodes
        tags = json["tags"] ?? ["models": []]
        ps = json["ps"] ?? ["models": []]
        openAIModels = json["openai_models"] ?? ["object": "list", "data": []]
        ollamaVersion = try f.optionalString("ollama_version") ?? "0.0.0"
    }
}
