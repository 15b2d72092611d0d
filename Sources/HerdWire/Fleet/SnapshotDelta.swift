import HerdJSON

/// control → proxy: what changed between two routing snapshots. A proxy that
/// holds snapshot `base` applies it to get snapshot `version`; a heartbeat that
/// changes one node sends that node (and the fleet listings only if they
/// changed), not the whole fleet. A delta whose `base` is not the snapshot the
/// proxy holds is a protocol error: the connection drops, and the proxy gets a
/// whole snapshot when it reconnects.
public struct SnapshotDelta: Equatable, Sendable, WireCodable {
    public static let context = "snapshot_delta"

    /// The version this delta applies to.
    public var base: Int
    /// The version it makes.
    public var version: Int
    /// Nodes added or changed, whole.
    public var nodes: [RoutingSnapshot.Node]
    /// Ids of nodes no longer in the fleet.
    public var removed: [String]
    /// The fleet listings, each present only when it changed.
    public var tags: JSONValue?
    public var ps: JSONValue?
    public var openAIModels: JSONValue?
    public var ollamaVersion: String?
    /// The client keys, present only when they changed.
    public var keys: ClientKeys?

    public init(base: Int, version: Int, nodes: [RoutingSnapshot.Node] = [], removed: [String] = [], tags: JSONValue? = nil,
                ps: JSONValue? = nil, openAIModels: JSONValue? = nil, ollamaVersion: String? = nil, keys: ClientKeys? = nil) {
        self.keys = keys
        self.base = base
        self.version = version
        self.nodes = nodes
        self.removed = removed
        self.tags = tags
        self.ps = ps
        self.openAIModels = openAIModels
        self.ollamaVersion = ollamaVersion
    }

    /// The delta from `old` to `new`.
    public init(from old: RoutingSnapshot, to new: RoutingSnapshot) {
        var before: [String: RoutingSnapshot.Node] = [:]
        before.reserveCapacity(old.nodes.count)
        for node in old.nodes { before[node.id] = node }
        var changed: [RoutingSnapshot.Node] = []
        for node in new.nodes {
            if before.removeValue(forKey: node.id) != node { changed.append(node) }
        }
        // (`.none`, not `nil`: `JSONValue` takes `nil` as its JSON null.)
        self.init(base: old.version, version: new.version, nodes: changed, removed: before.keys.sorted(),
                  tags: old.tags == new.tags ? .none : new.tags, ps: old.ps == new.ps ? .none : new.ps,
                  openAIModels: old.openAIModels == new.openAIModels ? .none : new.openAIModels,
                  ollamaVersion: old.ollamaVersion == new.ollamaVersion ? .none : new.ollamaVersion,
                  keys: old.keys == new.keys ? nil : new.keys)
    }

    enum CodingKeys: String, CodingKey {
        case base, version, nodes, removed, tags, ps, openAIModels = "openai_models", ollamaVersion = "ollama_version", keys
    }
}

extension RoutingSnapshot {
    /// This snapshot with `delta` applied; nodes stay sorted by id.
    /// Throws when the delta was made for another snapshot.
    public func applying(_ delta: SnapshotDelta) throws(ControlProtocolError) -> RoutingSnapshot {
        guard delta.base == version else {
            throw ControlProtocolError("snapshot delta for version \(delta.base), this proxy holds \(version)")
        }
        var result = self
        result.version = delta.version
        if !delta.nodes.isEmpty || !delta.removed.isEmpty {
            var byID: [String: Node] = [:]
            byID.reserveCapacity(nodes.count + delta.nodes.count)
            for node in nodes { byID[node.id] = node }
            for id in delta.removed { byID[id] = nil }
            for node in delta.nodes { byID[node.id] = node }
            result.nodes = byID.keys.sorted().map { byID[$0]! }
        }
        if let tags = delta.tags { result.tags = tags }
        if let ps = delta.ps { result.ps = ps }
        if let models = delta.openAIModels { result.openAIModels = models }
        if let ollamaVersion = delta.ollamaVersion { result.ollamaVersion = ollamaVersion }
        if let keys = delta.keys { result.keys = keys }
        return result
    }
}
