import HerdBounds

// The per-request control messages in protocol 2's compact encoding
// (`WireBinary.swift`; field order in `ControlProtocol.md`). Their `Codable`
// JSON form stays their readable description (and what errors are named
// after); on the socket they travel in this form.

extension ClientAPI: WireEnumeration {
    public static let wireOrder: [ClientAPI] = [.ollama, .openai, .anthropic]
}

extension WorkKind: WireEnumeration {
    public static let wireOrder: [WorkKind] = [.chat, .embed, .rerank, .stt, .tts, .image]
}

extension BackendKind: WireEnumeration {
    public static let wireOrder: [BackendKind] = [.ollama, .openai, .stt, .tts, .image, .embed, .rerank]
}

extension RouteResult.Outcome: WireEnumeration {
    public static let wireOrder: [RouteResult.Outcome] = [.ok, .upstreamError, .rejected, .clientGone, .timeout]
}

extension RouteRefusal.Code: WireEnumeration {
    public static let wireOrder: [RouteRefusal.Code] = [.modelNotFound, .queueTimeout, .noNode, .retriesExhausted, .clientLimit, .incapable,
                                                                 .keyLimit]
}

/// A message in the compact encoding.
public protocol WireBinaryMessage {
    /// Appends the message's fields to `out`.
    func write(to out: inout [UInt8])
    /// Reads the message's fields (not checking that the frame ends after them).
    init(reading r: inout WireReader) throws(ControlProtocolError)
}

extension WireBinaryMessage {
    /// Decodes a whole frame body.
    public init(binary bytes: UnsafeRawBufferPointer, context: String) throws(ControlProtocolError) {
        var r = WireReader(bytes, context: context)
        self = try Self(reading: &r)
        try r.end()
    }

    /// The encoded fields, as a new array (tests and tools; the channel appends in place).
    public var binary: [UInt8] {
        var out: [UInt8] = []
        write(to: &out)
        return out
    }
}

extension ContentHash: WireBinaryMessage {
    public func write(to out: inout [UInt8]) {
        for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: value >> UInt64(truncatingIfNeeded: shift))) }
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(try r.byte()) << UInt64(truncatingIfNeeded: i * 8) }
        self.init(v)
    }
}

extension Array where Element == UInt8 {
    /// An optional message: a presence byte, then the message.
    mutating func wire(optional message: (some WireBinaryMessage)?) {
        guard let message else { return append(0) }
        append(1)
        message.write(to: &self)
    }

    /// A list of messages: a varint count, then each.
    mutating func wire(list messages: [some WireBinaryMessage]) {
        wire(varint: UInt64(clamping: messages.count))
        for message in messages { message.write(to: &self) }
    }
}

extension WireReader {
    mutating func optional<M: WireBinaryMessage>(_: M.Type) throws(ControlProtocolError) -> M? {
        try bool() ? try M(reading: &self) : nil
    }

    mutating func list<M: WireBinaryMessage>(_: M.Type) throws(ControlProtocolError) -> [M] {
        let n = try count()
        var out: [M] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try M(reading: &self)) }
        return out
    }
}

extension RouteRequest: WireBinaryMessage {
    public func write(to out: inout [UInt8]) {
        out.wire(varint: id)
        out.append(api.wireCode)
        out.wire(string: path)
        out.wire(string: model)
        out.wire(bool: stream)
        out.wire(strings: fallbacks)
        out.wire(strings: tags)
        out.wire(int: estimatedTokens)
        out.wire(optionalInt: numCtx)
        out.wire(string: client)
        out.wire(optionalInt: maxTokens)
        out.wire(optionalBool: think)
        out.wire(optional: session)
        out.wire(optional: prefix)
        out.wire(bool: vision)
        // Always present (one byte for a chat): a request is also written inside
        // RESULT and RETRY frames (a ticket's), where more follows it.
        out.wire(optionalDouble: workUnits != 0 ? workUnits : nil)
        out.wire(varint: UInt64(truncatingIfNeeded: key))
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(id: try r.varint(), api: try r.code(ClientAPI.self), path: try r.string(), model: try r.string(), stream: try r.bool(),
                  fallbacks: try r.strings(), tags: try r.strings(), estimatedTokens: try r.int(), numCtx: try r.optionalInt(),
                  client: try r.string(), maxTokens: try r.optionalInt(), think: try r.optionalBool(),
                  session: try r.optional(ContentHash.self), prefix: try r.optional(ContentHash.self),
                  vision: try r.bool(), workUnits: try r.optionalDouble() ?? 0, key: Int(truncatingIfNeeded: try r.varint()))
        // Control trusts the proxy only as far as these bounds (the proxy's
        // validator applies the same ones, so it never sends past them).
        if let problem = RequestLimits.check(self) { throw r.fail(problem) }
    }
}

extension RouteAsk: WireBinaryMessage {
    public func write(to out: inout [UInt8]) {
        request.write(to: &out)
        out.wire(string: node)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(request: try RouteRequest(reading: &r), node: try r.string())
        if !RequestLimits.nodeBytes.contains(node.utf8.count) || node.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
            throw r.fail("node: at most \(RequestLimits.nodeBytes.upperBound) bytes without control characters")
        }
    }
}

extension RouteAnswer: WireBinaryMessage {
    public func write(to out: inout [UInt8]) {
        out.wire(varint: id)
        out.wire(string: node)
        out.wire(string: upstream)
        out.append(backend.wireCode)
        out.wire(string: model)
        out.wire(int: queuedMilliseconds)
        out.wire(string: reason)
        out.wire(int: retries)
        out.wire(string: score)
        out.wire(bool: stripNumCtx)
        out.wire(bool: reportStart)
        out.wire(optionalInt: numCtx)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(id: try r.varint(), node: try r.string(), upstream: try r.string(), backend: try r.code(BackendKind.self), model: try r.string(),
                  queuedMilliseconds: try r.int(), reason: try r.string(), retries: try r.int(), score: try r.string(),
                  stripNumCtx: try r.bool(), reportStart: try r.bool(), numCtx: try r.optionalInt())
        if let n = numCtx, !RequestLimits.numCtx.contains(n) { throw r.fail("num_ctx must be \(RequestLimits.numCtx.lowerBound)–\(RequestLimits.numCtx.upperBound)") }
    }
}

extension RouteRefusal: WireBinaryMessage {
    public func write(to out: inout [UInt8]) {
        out.wire(varint: id)
        out.append(code.wireCode)
        out.wire(string: message)
        out.wire(optionalInt: retryAfter)
        out.wire(strings: models)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(id: try r.varint(), code: try r.code(Code.self), message: try r.string(), retryAfter: try r.optionalInt(), models: try r.strings())
    }
}

extension RouteRetry: WireBinaryMessage {
    public func write(to out: inout [UInt8]) {
        out.wire(varint: id)
        out.wire(string: node)
        out.wire(string: reason)
        out.wire(optionalInt: upstreamStatus)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(id: try r.varint(), node: try r.string(), reason: try r.string(), upstreamStatus: try r.optionalInt())
    }
}

extension RouteCancel: WireBinaryMessage {
    public func write(to out: inout [UInt8]) { out.wire(varint: id) }

    public init(reading r: inout WireReader) throws(ControlProtocolError) { self.init(id: try r.varint()) }
}

extension RouteQueued: WireBinaryMessage {
    public func write(to out: inout [UInt8]) {
        out.wire(varint: id)
        out.wire(varint: timeoutMilliseconds)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(id: try r.varint(), timeoutMilliseconds: try r.varint())
    }
}

extension RouteStarted: WireBinaryMessage {
    public func write(to out: inout [UInt8]) {
        out.wire(varint: id)
        out.wire(int: status)
        out.wire(double: upstreamTtftMilliseconds)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(id: try r.varint(), status: try r.int(), upstreamTtftMilliseconds: try r.double())
        status = status.clamped(to: 0...999)
        upstreamTtftMilliseconds = ResultLimits.milliseconds(upstreamTtftMilliseconds)
    }
}

extension RouteResult: WireBinaryMessage {
    public func write(to out: inout [UInt8]) {
        out.wire(varint: id)
        out.wire(string: node)
        out.wire(string: model)
        out.append(outcome.wireCode)
        out.wire(int: status)
        out.wire(double: ttftMilliseconds)
        out.wire(double: durationMilliseconds)
        out.wire(int: promptTokens)
        out.wire(int: completionTokens)
        out.wire(int: bytes)
        out.wire(int: retries)
        out.wire(optionalString: error)
        out.wire(bool: local)
        out.wire(optionalString: localReason)
        out.wire(optionalDouble: backendPromptMilliseconds)
        out.wire(optionalDouble: backendDecodeMilliseconds)
        out.wire(optionalDouble: backendLoadMilliseconds)
        out.wire(optionalDouble: upstreamTtftMilliseconds)
        out.wire(optionalDouble: upstreamMilliseconds)
        out.wire(optionalDouble: backendTotalMilliseconds)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(id: try r.varint(), node: try r.string(), model: try r.string(), outcome: try r.code(Outcome.self), status: try r.int(),
                  ttftMilliseconds: try r.double(), durationMilliseconds: try r.double(), promptTokens: try r.int(),
                  completionTokens: try r.int(), bytes: try r.int(), retries: try r.int(), error: try r.optionalString(),
                  local: try r.bool(), localReason: try r.optionalString(), backendPromptMilliseconds: try r.optionalDouble(),
                  backendDecodeMilliseconds: try r.optionalDouble(), backendLoadMilliseconds: try r.optionalDouble(),
                  upstreamTtftMilliseconds: try r.optionalDouble(), upstreamMilliseconds: try r.optionalDouble(),
                  backendTotalMilliseconds: try r.optionalDouble())
        self = sanitized
    }
}
