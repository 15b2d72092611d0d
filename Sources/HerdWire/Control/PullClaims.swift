/// Model pulls are coordinated by control across every proxy and the
/// dashboard: one pull of a model under way in the whole router. A proxy asks
/// before it relays `POST /api/pull` (PULL_CLAIM), control answers
/// (PULL_ANSWER), and the proxy says when it ended (PULL_DONE); a proxy that
/// goes away releases its claims.

/// PULL_CLAIM (proxy → control): may this proxy pull `model` to `node`?
public struct PullClaim: Equatable, Sendable, WireBinaryMessage {
    /// Chosen by the proxy, unique per connection (its own counter, apart from request ids).
    public var id: UInt64
    public var model: String
    public var node: String
    /// The client named the node (`X-Herd-Node`): a pull of the model to
    /// another node under way does not stop it (the operator wants it on both).
    public var named: Bool

    public init(id: UInt64, model: String, node: String, named: Bool = false) {
        self.id = id
        self.model = model
        self.node = node
        self.named = named
    }

    /// The one rule, control's and a proxy's on its own: a pull under way of
    /// `running` (canonical name) to `runningNode` stops a new pull of
    /// `model` (canonical) to `node` when it is the same model and either the
    /// same node or the new pull did not name its node.
    public static func stops(running: String, on runningNode: String, model: String, node: String, named: Bool) -> Bool {
        running == model && (runningNode == node || !named)
    }

    public func write(to out: inout [UInt8]) {
        out.wire(varint: id)
        out.wire(string: model)
        out.wire(string: node)
        out.wire(bool: named)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(id: try r.varint(), model: try r.string(), node: try r.string(), named: try r.bool())
        guard RequestLimits.isModelName(model) else { throw r.fail("pull model must be 1–\(RequestLimits.modelBytes.upperBound) bytes without control characters") }
        guard (1...RequestLimits.nodeBytes.upperBound).contains(node.utf8.count), !node.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            throw r.fail("pull node must be 1–\(RequestLimits.nodeBytes.upperBound) bytes without control characters")
        }
    }
}

/// PULL_ANSWER (control → proxy): the claim's verdict; refused, `node` is
/// where a pull of that model is already under way.
public struct PullAnswer: Equatable, Sendable, WireBinaryMessage {
    public var id: UInt64
    public var granted: Bool
    /// Refused: the node the pull under way goes to ("" when granted).
    public var node: String

    public init(id: UInt64, granted: Bool, node: String = "") {
        self.id = id
        self.granted = granted
        self.node = node
    }

    public func write(to out: inout [UInt8]) {
        out.wire(varint: id)
        out.wire(bool: granted)
        out.wire(string: node)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(id: try r.varint(), granted: try r.bool(), node: try r.string())
        guard node.utf8.count <= RequestLimits.nodeBytes.upperBound else { throw r.fail("pull node longer than \(RequestLimits.nodeBytes.upperBound) bytes") }
    }
}

/// PULL_DONE (proxy → control): the pull of claim `id` ended (however it ended).
public struct PullDone: Equatable, Sendable, WireBinaryMessage {
    public var id: UInt64

    public init(id: UInt64) { self.id = id }

    public func write(to out: inout [UInt8]) { out.wire(varint: id) }

    public init(reading r: inout WireReader) throws(ControlProtocolError) { self.init(id: try r.varint()) }
}
