/// Route tickets (`ControlProtocol.md`): control decides ahead of requests.
/// For each model a proxy is serving, control grants it a few routes drawn
/// from the same scorer, each holding a slot of its node:model (counted in
/// the learned concurrency like a request in flight). The proxy spends one
/// per request with no round trip and says so in the request's RESULT;
/// what it does not spend before the ticket's time runs out, or what control
/// revokes, it returns.

/// control → proxy (in a GRANT): one pre-decided route.
public struct RouteTicket: Equatable, Sendable, WireBinaryMessage {
    /// Control's number for it (unique per connection).
    public var ticket: UInt64
    /// The requests it may serve: this API, this model name (as the proxy's requests spelled it).
    public var api: ClientAPI
    public var model: String
    public var node: String
    public var upstream: String
    public var backend: BackendKind
    /// The model as the backend knows it.
    public var servedModel: String
    public var reason: String
    public var score: String
    /// Unspent after this long, it goes back (the proxy's clock, from receipt).
    public var ttlMilliseconds: UInt64
    /// Only one node can serve the model now: no request's affinity could
    /// choose another, so any request for it may spend this ticket.
    public var exclusive: Bool
    /// The kind of work it was decided for: only a request of that kind may
    /// spend it (a chat's ticket never sends an embedding or a transcription).
    public var work: WorkKind

    public init(ticket: UInt64, api: ClientAPI, model: String, node: String, upstream: String, backend: BackendKind, servedModel: String,
                reason: String, score: String, ttlMilliseconds: UInt64, exclusive: Bool, work: WorkKind = .chat) {
        self.ticket = ticket
        self.api = api
        self.model = model
        self.node = node
        self.upstream = upstream
        self.backend = backend
        self.servedModel = servedModel
        self.reason = reason
        self.score = score
        self.ttlMilliseconds = ttlMilliseconds
        self.exclusive = exclusive
        self.work = work
    }

    /// The routing answer it stands for, for request `id`.
    public func answer(for id: UInt64) -> RouteAnswer {
        RouteAnswer(id: id, node: node, upstream: upstream, backend: backend, model: servedModel, reason: reason, score: score)
    }

    public func write(to out: inout [UInt8]) {
        out.wire(varint: ticket)
        out.append(api.wireCode)
        out.wire(string: model)
        out.wire(string: node)
        out.wire(string: upstream)
        out.append(backend.wireCode)
        out.wire(string: servedModel)
        out.wire(string: reason)
        out.wire(string: score)
        out.wire(varint: ttlMilliseconds)
        out.wire(bool: exclusive)
        out.append(work.wireCode)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(ticket: try r.varint(), api: try r.code(ClientAPI.self), model: try r.string(), node: try r.string(), upstream: try r.string(),
                  backend: try r.code(BackendKind.self), servedModel: try r.string(), reason: try r.string(), score: try r.string(),
                  ttlMilliseconds: try r.varint(), exclusive: try r.bool(), work: try r.code(WorkKind.self))
    }
}

/// GRANT (control → proxy): tickets.
public struct TicketGrant: Equatable, Sendable, WireBinaryMessage {
    public var tickets: [RouteTicket]

    public init(tickets: [RouteTicket]) { self.tickets = tickets }

    public func write(to out: inout [UInt8]) { out.wire(list: tickets) }

    public init(reading r: inout WireReader) throws(ControlProtocolError) { self.init(tickets: try r.list(RouteTicket.self)) }
}

/// RETURN (proxy → control: unspent, their slots free) and REVOKE (control →
/// proxy: do not spend these; return those still unspent): ticket numbers.
public struct TicketList: Equatable, Sendable, WireBinaryMessage {
    public var tickets: [UInt64]

    public init(tickets: [UInt64]) { self.tickets = tickets }

    public func write(to out: inout [UInt8]) {
        out.wire(varint: UInt64(clamping: tickets.count))
        for ticket in tickets { out.wire(varint: ticket) }
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        let n = try r.count()
        var tickets: [UInt64] = []
        tickets.reserveCapacity(n)
        for _ in 0..<n { tickets.append(try r.varint()) }
        self.init(tickets: tickets)
    }
}

/// A request that spent a ticket, as control first hears of it (in its
/// RESULT, or in a RETRY when its node failed): which ticket, and the
/// request itself (what a ROUTE would have said).
public struct TicketUse: Equatable, Sendable, WireBinaryMessage {
    public var ticket: UInt64
    public var request: RouteRequest

    public init(ticket: UInt64, request: RouteRequest) {
        self.ticket = ticket
        self.request = request
    }

    public func write(to out: inout [UInt8]) {
        out.wire(varint: ticket)
        request.write(to: &out)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(ticket: try r.varint(), request: try RouteRequest(reading: &r))
    }
}

/// One request's outcome in a RESULT frame, with the ticket it spent, if any.
public struct ReportedResult: Equatable, Sendable, WireBinaryMessage {
    public var result: RouteResult
    public var ticket: TicketUse?

    public init(_ result: RouteResult, ticket: TicketUse? = nil) {
        self.result = result
        self.ticket = ticket
    }

    public func write(to out: inout [UInt8]) {
        result.write(to: &out)
        out.wire(optional: ticket)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(try RouteResult(reading: &r), ticket: try r.optional(TicketUse.self))
    }
}

/// RESULT (proxy → control): the outcomes of one loop iteration, in one frame.
public struct ResultBatch: Equatable, Sendable, WireBinaryMessage {
    public var results: [ReportedResult]

    public init(_ results: [ReportedResult]) { self.results = results }

    public func write(to out: inout [UInt8]) { out.wire(list: results) }

    public init(reading r: inout WireReader) throws(ControlProtocolError) { self.init(try r.list(ReportedResult.self)) }
}

/// RETRY (proxy → control): a node failed before any byte reached the
/// client; for a request that spent a ticket, the ticket and the request
/// (control has not heard of it yet).
public struct RetryMessage: Equatable, Sendable, WireBinaryMessage {
    public var retry: RouteRetry
    public var ticket: TicketUse?

    public init(_ retry: RouteRetry, ticket: TicketUse? = nil) {
        self.retry = retry
        self.ticket = ticket
    }

    public func write(to out: inout [UInt8]) {
        retry.write(to: &out)
        out.wire(optional: ticket)
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(try RouteRetry(reading: &r), ticket: try r.optional(TicketUse.self))
    }
}

/// CACHE_STATS (proxy → control): the proxy's response cache, as counted
/// since the proxy started (sent every few seconds while it changes), for
/// control's `/metrics`.
public struct CacheStats: Equatable, Sendable, WireBinaryMessage {
    public var hits: UInt64
    public var misses: UInt64
    public var stores: UInt64
    public var evictions: UInt64
    public var bytes: UInt64
    public var entries: UInt64

    public init(hits: UInt64 = 0, misses: UInt64 = 0, stores: UInt64 = 0, evictions: UInt64 = 0, bytes: UInt64 = 0, entries: UInt64 = 0) {
        self.hits = hits
        self.misses = misses
        self.stores = stores
        self.evictions = evictions
        self.bytes = bytes
        self.entries = entries
    }

    public func write(to out: inout [UInt8]) {
        for value in [hits, misses, stores, evictions, bytes, entries] { out.wire(varint: value) }
    }

    public init(reading r: inout WireReader) throws(ControlProtocolError) {
        self.init(hits: try r.varint(), misses: try r.varint(), stores: try r.varint(), evictions: try r.varint(),
                  bytes: try r.varint(), entries: try r.varint())
    }
}
