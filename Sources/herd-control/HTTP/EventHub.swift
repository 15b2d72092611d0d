import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdRouting

/// `GET /api/v1/events`: Server-Sent Events for the dashboard. Small events,
/// each when it happens: `node` (a heartbeat: the node's live readings),
/// `fleet` (a node joined, left or changed status), `health` (a check fired
/// or cleared), and batched every 250 ms: `decision` and `request` (the
/// newest few; at most `maxPerFlush` of each per batch, the rest counted in
/// `dropped`) and `stats` (one line of totals). A client that stops reading
/// is dropped past `maxPendingBytes`; at most `maxClients` at once.
/// Loop-thread only.
final class EventHub {
    static let maxClients = 64
    static let maxPendingBytes = 512 * 1024
    /// The kernel's send buffer under each stream (SO_SNDBUF): without a cap,
    /// Linux grows it to megabytes (tcp_wmem) before a stalled reader shows
    /// in `pendingResponseBytes`: 64 streams could pin hundreds of MB.
    static let socketSendBuffer = 64 * 1024
    static let maxPerFlush = 10
    static let flushMilliseconds: UInt64 = 250

    private let loop: EventLoop
    private var clients: [ObjectIdentifier: HTTPExchange] = [:]
    private var timer: LoopTimer?
    private var lastDecision: UInt64 = 0
    private var requests: [JSONValue] = []
    private var droppedRequests = 0
    private var ticks = 0
    /// Totals for the `stats` event, read at each flush.
    private let stats: () -> JSONValue
    /// The decision feed to follow.
    private let decisions: () -> DecisionFeed
    private let log: Logger

    init(loop: EventLoop, log: Logger, decisions: @escaping () -> DecisionFeed, stats: @escaping () -> JSONValue) {
        self.loop = loop
        self.log = log
        self.decisions = decisions
        self.stats = stats
    }

    var clientCount: Int { clients.count }

    func subscribe(_ exchange: HTTPExchange, hello: JSONValue) {
        guard clients.count < Self.maxClients else {
            var body: [UInt8] = []
            JSONValue.object([("error", .string("too many event streams open (\(Self.maxClients))"))]).write(to: &body)
            exchange.respond(status: 503, headers: ["Content-Type": "application/json; charset=utf-8", "Retry-After": "5"], body: body)
            return
        }
        exchange.startResponse(status: 200, headers: ["Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
                                                      "X-Accel-Buffering": "no"])
        exchange.limitSendBuffer(bytes: Self.socketSendBuffer)
        let id = ObjectIdentifier(exchange)
        clients[id] = exchange
        exchange.onCancel = { [weak self] in self?.clients[id] = nil }
        exchange.write("retry: 2000\n\n" + Self.frame("hello", hello))
        if timer == nil {
            lastDecision = decisions().decisions.last?.sequence ?? 0
            let t = LoopTimer(loop: loop)
            t.start(after: Self.flushMilliseconds, repeating: Self.flushMilliseconds) { [weak self] in self?.flush() }
            timer = t
        }
    }

    /// `event: NAME\ndata: JSON\n\n`.
    static func frame(_ name: String, _ data: JSONValue) -> String {
        var bytes: [UInt8] = []
        bytes.append(contentsOf: "event: \(name)\ndata: ".utf8)
        data.write(to: &bytes)
        bytes.append(contentsOf: "\n\n".utf8)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Sends an event to every client now.
    func publish(_ name: String, _ data: JSONValue) {
        guard !clients.isEmpty else { return }
        send(Self.frame(name, data))
    }

    /// A finished request, sent with the next batch.
    func finished(_ finished: FinishedRequest) {
        guard !clients.isEmpty else { return }
        if requests.count >= Self.maxPerFlush {
            droppedRequests += 1
            return
        }
        let r = finished.result
        requests.append([
            "request_id": .int(Int(truncatingIfNeeded: r.id)), "model": .string(finished.request?.model ?? r.model),
            "served_model": .string(r.model), "node": .string(r.node), "outcome": .string(r.outcome.rawValue), "status": .int(r.status),
            "duration_ms": .number((r.durationMilliseconds * 10).rounded() / 10), "tokens": .int(r.completionTokens),
            "ticket": .bool(finished.ticket), "retries": .int(r.retries), "queued_ms": .int(finished.decision?.queuedMilliseconds ?? 0),
        ])
    }

    private func send(_ text: String) {
        for (id, exchange) in clients {
            guard exchange.isOpen else {
                clients[id] = nil
                continue
            }
            if exchange.pendingResponseBytes > Self.maxPendingBytes {
                clients[id] = nil
                log.warning("event stream to \(exchange.remoteAddress?.description ?? "?") dropped: it stopped reading (\(Self.maxPendingBytes / 1024) KiB waiting)")
                exchange.abort()
                continue
            }
            exchange.write(text)
        }
    }

    private func flush() {
        guard !clients.isEmpty else {
            timer?.close()
            timer = nil
            requests.removeAll()
            droppedRequests = 0
            return
        }
        var text = ""
        do {
            let feed = decisions()
            let fresh = feed.decisions.filter { $0.sequence > lastDecision }
            lastDecision = feed.decisions.last?.sequence ?? lastDecision
            for d in fresh.suffix(Self.maxPerFlush) {
                text += Self.frame("decision", [
                    "seq": .int(Int(clamping: d.sequence)), "request_id": .int(Int(truncatingIfNeeded: d.requestID)), "model": .string(d.model),
                    "action": .string(d.action), "node": .string(d.node), "served_model": .string(d.servedModel), "score": .string(d.score),
                    "reason": .string(d.reason),
                ])
            }
            if fresh.count > Self.maxPerFlush { text += Self.frame("dropped", ["decisions": .int(fresh.count - Self.maxPerFlush)]) }
        }
        for request in requests { text += Self.frame("request", request) }
        if droppedRequests > 0 { text += Self.frame("dropped", ["requests": .int(droppedRequests)]) }
        requests.removeAll(keepingCapacity: true)
        droppedRequests = 0
        ticks += 1
        if ticks % 4 == 0 { text += Self.frame("stats", stats()) }
        // A comment line every 15 s keeps idle streams open through proxies.
        if text.isEmpty, ticks % 60 == 0 { text = ": ping\n\n" }
        if !text.isEmpty { send(text) }
    }

    func close() {
        timer?.close()
        timer = nil
        for exchange in clients.values { exchange.end() }
        clients.removeAll()
    }
}
