import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdWire

/// One routed request, from its complete body to the end of the relayed
/// response: performs the actions `ProxyFlow` decides. Loop-thread only.
///
/// Lifetime: the session is kept alive by the exchange's callbacks and by the
/// upstream task's delegate slot while either can still fire.
final class ProxySession: RouteWaiter, HTTPClientResponseDelegate {
    private let app: ProxyApp
    private let exchange: HTTPExchange
    private let endpoint: Endpoint
    private let fields: RouteFields
    private let body: [UInt8]
    let id: UInt64
    private var flow = ProxyFlow()
    private var answer: RouteAnswer?
    private var task: HTTPClientTask?
    private var upstreamAddress: String?
    private var excluded: Set<String> = []
    private var routedLocally = false
    private let startedAt = EventLoop.monotonicNanoseconds()
    private var firstByteAt: UInt64?
    private var upstreamHead: HTTPResponseHead?
    private var bytesRelayed = 0
    private var tail: [UInt8] = []
    private static let tailLimit = 16 * 1024
    private var relayPaused = false
    static let requestDrops: Set<KnownHeader> = [.host, .contentLength, .xHerdFallbackModels, .xForwardedFor, .xForwardedProto]
    static let responseDrops: Set<KnownHeader> = [.contentLength]
    /// Keeps the session alive while it waits on control or an upstream.
    private var selfReference: ProxySession?

    init(app: ProxyApp, exchange: HTTPExchange, endpoint: Endpoint, fields: RouteFields, body: [UInt8], id: UInt64) {
        self.app = app
        self.exchange = exchange
        self.endpoint = endpoint
        self.fields = fields
        self.body = body
        self.id = id
    }

    func start() {
        selfReference = self
        // Strong captures: the exchange drops its callbacks when it ends or is
        // cancelled, which breaks the cycle (no unowned side tables per request).
        exchange.onCancel = { [self] in self.perform(self.flow.clientGone()) }
        exchange.onWritable = { [self] in
            guard self.relayPaused else { return }
            self.relayPaused = false
            self.task?.resumeReading()
        }
        perform(flow.start())
    }

    private var models: [String] { [fields.model] + fields.fallbacks }

    // MARK: Performing actions

    private func perform(_ actions: [ProxyFlow.Action]) {
        for action in actions { perform(action) }
        if flow.phase == .finished {
            selfReference = nil
        }
    }

    private func perform(_ action: ProxyFlow.Action) {
        switch action {
        case .askRoute:
            let request = RouteRequest(
                id: id, api: endpoint.api, path: endpoint.rawValue, model: fields.model, stream: fields.stream,
                fallbacks: fields.fallbacks, tags: fields.tags, estimatedTokens: body.count / 4, numCtx: fields.numCtx,
                client: exchange.remoteAddress?.host ?? "")
            if !app.control.route(request, waiter: self) { routeLocally() }
        case let .askRetry(node, reason):
            excluded.insert(node)
            if routedLocally || !app.control.retry(RouteRetry(id: id, node: node, reason: reason), waiter: self) { routeLocally() }
        case let .sendUpstream(answer):
            sendUpstream(answer)
        case .cancelUpstream:
            task?.cancel()
            releaseUpstream()
        case .cancelRoute:
            app.control.cancel(id: id)
        case .relayHead:
            relayHead()
        case let .failClient(status, message, retryAfter, models):
            ClientErrors.respond(exchange, api: endpoint.api, status: status, message: message, models: models,
                                 retryAfter: retryAfter, extra: app.corsHeaders(for: exchange))
        case let .failStream(message):
            if let bytes = ClientErrors.streamError(contentType: upstreamHead?.headers["Content-Type"], message: message),
               upstreamHead.map({ app.isChunked($0) }) ?? false {
                exchange.write(bytes)
                exchange.end()
            } else {
                exchange.abort() // a fixed-length body cannot carry an error: cut it
            }
            releaseUpstream()
        case .endClient:
            exchange.end()
            releaseUpstream()
        case let .report(outcome, status, error):
            report(outcome, status: status, error: error)
        }
    }

    // MARK: Routing

    func routed(_ answer: RouteAnswer) { perform(flow.routed(answer)) }
    func refused(_ refusal: RouteRefusal) { perform(flow.refused(refusal)) }

    func controlLost() {
        if flow.phase == .routing { routeLocally() }
    }

    /// The local policy, when control is away.
    private func routeLocally() {
        routedLocally = true
        let snapshot = app.control.snapshot
        if flow.retries > app.options.maxLocalRetries {
            perform(flow.refused(RouteRefusal(id: id, code: .retriesExhausted, message: "every node tried failed")))
            return
        }
        if let answer = LocalPolicy.choose(snapshot: snapshot, api: endpoint.api, models: models, excluded: excluded,
                                           inFlight: { [app] in app.localInFlight[$0] ?? 0 }, id: id) {
            perform(flow.routed(answer))
            return
        }
        let known = LocalPolicy.knownModels(snapshot, api: endpoint.api)
        let refusal: RouteRefusal
        if snapshot.nodes.isEmpty {
            refusal = RouteRefusal(id: id, code: .noNode, message: "herd-control is not reachable and no fleet is known yet", retryAfter: 2)
        } else if models.contains(where: { model in known.contains { ModelName.same($0, model) } }) {
            refusal = RouteRefusal(id: id, code: .noNode, message: "no reachable node can serve '\(fields.model)'", retryAfter: 5)
        } else {
            refusal = RouteRefusal(id: id, code: .modelNotFound, message: "model '\(fields.model)' not found in the fleet", models: known)
        }
        perform(flow.refused(refusal))
    }

    // MARK: Upstream

    private func sendUpstream(_ answer: RouteAnswer) {
        self.answer = answer
        guard let (host, port) = splitHostPort(answer.upstream), let address = try? SocketAddress(host: host, port: port) else {
            perform(flow.upstreamFailed(.invalidResponse("bad upstream address \(answer.upstream)"), status: 0))
            return
        }
        var headers = ProxyHeaders.endToEnd(exchange.head.headers, dropping: ProxySession.requestDrops)
        headers.add("Host", answer.upstream)
        let forwardedFor = exchange.head.headers["X-Forwarded-For"].map { $0 + ", " } ?? ""
        headers.add("X-Forwarded-For", forwardedFor + (exchange.remoteAddress?.host ?? "unknown"))
        headers.add("X-Forwarded-Proto", exchange.head.headers["X-Forwarded-Proto"] ?? "http")
        let upstreamBody = answer.model != fields.model || fields.hasFallbackField ? rewrittenBody(model: answer.model) : body
        let request = HTTPClientRequest(method: exchange.head.method, target: exchange.head.target, headers: headers, body: upstreamBody)
        upstreamAddress = answer.upstream
        app.localInFlight[answer.upstream, default: 0] += 1
        upstreamHead = nil
        task = app.client.execute(request, to: address, delegate: self)
    }

    /// The body with the served model and without `fallback_models` (rare path:
    /// only when a fallback was chosen or the client sent fallbacks).
    private func rewrittenBody(model: String) -> [UInt8] {
        guard case let .object(members)? = try? JSONValue.parse(body) else { return body }
        var out: [UInt8] = []
        JSONValue.object(members.compactMap { key, value in
            key == "fallback_models" ? nil : (key, key == "model" ? .string(model) : value)
        }).write(to: &out)
        return out
    }

    private func releaseUpstream() {
        guard let address = upstreamAddress else { return }
        upstreamAddress = nil
        if let count = app.localInFlight[address], count > 1 { app.localInFlight[address] = count - 1 } else { app.localInFlight[address] = nil }
    }

    func task(_ task: HTTPClientTask, didReceiveHead head: HTTPResponseHead) {
        if firstByteAt == nil { firstByteAt = EventLoop.monotonicNanoseconds() }
        upstreamHead = head
        perform(flow.upstreamHead(status: head.status))
    }

    private func relayHead() {
        guard let head = upstreamHead, let answer else { return }
        var headers = ProxyHeaders.endToEnd(head.headers, dropping: ProxySession.responseDrops)
        headers.add("X-Herd-Node", answer.node)
        headers.add("X-Herd-Model", answer.model)
        headers.add("X-Herd-Retries", String(flow.retries))
        for (name, value) in app.corsHeaders(for: exchange) { headers.add(name, value) }
        let length = app.isChunked(head) ? nil : head.headers["Content-Length"].flatMap { Int($0.trimmingSpaces) }
        exchange.startResponse(status: head.status, headers: headers, contentLength: length)
    }

    func task(_ task: HTTPClientTask, didReceiveBody bytes: UnsafeRawBufferPointer) {
        guard case .streaming = flow.phase else { return }
        exchange.write(bytes)
        bytesRelayed += bytes.count
        if bytes.count >= ProxySession.tailLimit {
            tail = Array(bytes.suffix(ProxySession.tailLimit))
        } else {
            tail.append(contentsOf: bytes)
            if tail.count > 2 * ProxySession.tailLimit { tail.removeFirst(tail.count - ProxySession.tailLimit) }
        }
        if exchange.pendingResponseBytes > app.options.relayHighWatermark, !relayPaused {
            relayPaused = true
            task.pauseReading()
        }
    }

    func taskDidFinish(_ task: HTTPClientTask) {
        perform(flow.upstreamFinished(status: upstreamHead?.status ?? 200))
    }

    func task(_ task: HTTPClientTask, didFail error: HTTPClientError) {
        perform(flow.upstreamFailed(error, status: upstreamHead?.status ?? 502))
    }

    // MARK: Reporting

    private func report(_ outcome: RouteResult.Outcome, status: Int, error: String?) {
        let now = EventLoop.monotonicNanoseconds()
        let tokens = TokenCounter.count(tail)
        let result = RouteResult(
            id: id, node: answer?.node ?? "", model: answer?.model ?? fields.model, outcome: outcome, status: status,
            ttftMilliseconds: firstByteAt.map { Double($0 - startedAt) / 1e6 } ?? 0,
            durationMilliseconds: Double(now - startedAt) / 1e6, promptTokens: tokens.prompt, completionTokens: tokens.completion,
            bytes: bytesRelayed, retries: flow.retries, error: error, local: routedLocally)
        app.control.result(result)
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded by a proxy.
enum ProxyHeaders {
    /// The end-to-end fields of `headers`: without hop-by-hop fields, the names
    /// listed in `Connection`, and the kinds in `dropping`.
    static func endToEnd(_ headers: HTTPHeaders, dropping: Set<KnownHeader>) -> HTTPHeaders {
        var named: [Substring] = []
        for (i, field) in headers.fields.enumerated() where headers.kinds[i] == .connection {
            for token in field.value.split(separator: ",") {
                let name = token.trimmingSpaces
                // `keep-alive` and `close` are options, not header names to drop.
                if !HTTPHeaders.namesEqual(name, "keep-alive"), !HTTPHeaders.namesEqual(name, "close") { named.append(name) }
            }
        }
        var out = HTTPHeaders()
        for (i, field) in headers.fields.enumerated() {
            let kind = headers.kinds[i]
            if let kind, kind.isHopByHop || dropping.contains(kind) { continue }
            if !named.isEmpty, named.contains(where: { HTTPHeaders.namesEqual($0, field.name) }) { continue }
            out.add(field.name, field.value, kind: kind)
        }
        return out
    }
}

/// Token counts from the end of a response: Ollama's last line
/// (`prompt_eval_count`, `eval_count`) or OpenAI's `usage`.
enum TokenCounter {
    static let keys: Set<String> = ["eval_count", "prompt_eval_count", "usage"]

    static func count(_ tail: [UInt8]) -> (prompt: Int, completion: Int) {
        var end = tail.count
        var examined = 0
        while end > 0, examined < 8 {
            var start = end - 1
            while start > 0, tail[start - 1] != 10 { start -= 1 }
            var line = tail[start..<end]
            end = start > 0 ? start - 1 : 0
            if line.starts(with: Array("data: ".utf8)) { line = line.dropFirst(6) }
            while let last = line.last, last == 13 || last == 10 || last == 32 { line = line.dropLast() }
            guard line.first == UInt8(ascii: "{") else { continue }
            examined += 1
            // Only the counters are built; the text of the answer is skipped.
            guard let json = try? line.withUnsafeBytes({ raw in try JSONValue.parseTopLevel(raw, keys: TokenCounter.keys) }) else { continue }
            if let completion = json["eval_count"]?.intValue {
                return (json["prompt_eval_count"]?.intValue ?? 0, completion)
            }
            if let usage = json["usage"], usage != .null {
                return (usage["prompt_tokens"]?.intValue ?? 0, usage["completion_tokens"]?.intValue ?? 0)
            }
            if let prompt = json["prompt_eval_count"]?.intValue { return (prompt, 0) }
        }
        return (0, 0)
    }
}
