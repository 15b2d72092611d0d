import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdWire

/// One routed request, from its complete body to the end of the relayed
/// response: performs the actions `ProxyFlow` decides. Its collaborators are
/// narrow: a `RouteSource` (control, or the local policy; it owns the retry
/// budget) and the `Upstreams` client. Loop-thread only.
///
/// Lifetime: the session is kept alive by the exchange's callbacks and by the
/// upstream task's delegate slot while either can still fire.
final class ProxySession: RouteWaiter, HTTPClientResponseDelegate {
    /// What every session of a proxy shares.
    struct Settings {
        /// Above this many unsent response bytes, reading from the upstream pauses.
        var relayHighWatermark = 256 * 1024
    }

    /// The response cache's part in this request: `key` when its answer is to
    /// be kept (`X-Herd-Cache: miss`), nil when it bypasses the cache.
    struct Caching {
        /// A prompt of the semantic cache: its answer, once kept, is found by its vector too.
        struct Semantic {
            let index: SemanticIndex
            let shape: ResponseCache.Key
            let vector: [Float]
        }

        let cache: ResponseCache
        let key: ResponseCache.Key?
        var semantic: Semantic? = nil
    }

    private let exchange: HTTPExchange
    private let endpoint: Endpoint
    private let fields: RouteFields
    private let body: [UInt8]
    /// A multipart upload relayed as it arrives (then `body` is empty).
    private let upload: UploadRelay?
    let id: UInt64
    private let routes: RouteSource
    private let upstreams: Upstreams
    private let settings: Settings
    /// CORS headers for this request's origin (empty when it has none allowed).
    private let cors: HTTPHeaders
    private var flow: ProxyFlow
    private var attempt: RouteAttempt?
    private var answer: RouteAnswer?
    private var task: HTTPClientTask?
    private var upstream: Upstreams.Upstream?
    private let startedAt = EventLoop.monotonicNanoseconds()
    private var firstByteAt: UInt64?
    /// When the last attempt's request went to its node.
    private var upstreamSentAt: UInt64?
    private var upstreamFirstByteAt: UInt64?
    /// A 2xx stream's head came: its first byte is its first body bytes (a
    /// server may send the head at once and its first token only when a slot frees).
    private var firstBodyPending = false
    private var upstreamHead: HTTPResponseHead?
    /// `upstreamHead` is chunked (a stream that can carry an error line).
    private var upstreamChunked = false
    /// Newlines of a 2xx server-sent event stream (its output tokens when it
    /// says nothing of its usage); nil for any other answer.
    private var streamNewlines: Int?
    private var bytesRelayed = 0
    private var tail: [UInt8] = []
    private static let tailLimit = 16 * 1024
    private var relayPaused = false
    /// Turns an OpenAI answer into Ollama's when an Ollama-API request went to an OpenAI-compatible backend.
    private var translator: (any AnswerTranslator)?
    /// Not passed on: framing, herd's own, and `Expect` (herd's server already
    /// answered 100 Continue; a backend's would reach the client as the answer).
    static let requestDrops: KnownHeaderSet = [.host, .contentLength, .xHerdFallbackModels, .xForwardedFor, .xForwardedProto, .expect, .xHerdNode]
    static let responseDrops: KnownHeaderSet = [.contentLength]
    /// Keeps the session alive while it waits on control or an upstream.
    private var selfReference: ProxySession?
    private let caching: Caching?
    /// The answer as relayed, while it may still be kept (nil once too large, or not to be kept).
    private var cacheBody: [UInt8]?

    /// The request's client key, when it carries a known one.
    private let key: KeyCheck.Known?

    init(exchange: HTTPExchange, endpoint: Endpoint, fields: RouteFields, body: [UInt8], upload: UploadRelay? = nil, id: UInt64,
         routes: RouteSource, upstreams: Upstreams, cors: HTTPHeaders, settings: Settings, caching: Caching? = nil, key: KeyCheck.Known? = nil) {
        self.caching = caching
        self.key = key
        self.exchange = exchange
        self.endpoint = endpoint
        self.fields = fields
        self.body = body
        self.upload = upload
        self.id = id
        self.routes = routes
        self.upstreams = upstreams
        self.cors = cors
        self.settings = settings
        flow = ProxyFlow(answersWhenUnsupported: endpoint == .anthropicCountTokens)
        flow.mayTranslate = endpoint == .anthropicMessages || endpoint == .openAIResponses
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
        if let upload {
            upload.onTooLarge = { [weak self] in
                guard let self else { return }
                self.perform(self.flow.uploadTooLarge("the upload is over the limit of \(upload.limit / (1024 * 1024)) MiB (--max-upload-mb)"))
            }
        }
        perform(flow.start())
    }

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
                fallbacks: fields.fallbacks, tags: fields.tags, estimatedTokens: endpoint.bodyIsPrompt ? body.count / 4 : 0, numCtx: fields.numCtx,
                client: ClientIdentity.of(exchange.head.headers, address: exchange.remoteHost, key: key?.key.name), maxTokens: fields.maxTokens,
                think: fields.think, session: fields.session, prefix: fields.prefix, vision: fields.vision, workUnits: fields.workUnits,
                key: key?.key.id ?? 0)
            let attempt = routes.attempt(request, pin: fields.node, waiter: self)
            self.attempt = attempt
            attempt.start()
        case let .askRetry(node, reason, status):
            attempt?.retry(failedNode: node, reason: reason, status: status)
        case let .sendUpstream(answer):
            sendUpstream(answer)
        case .cancelUpstream:
            task?.cancel()
            releaseUpstream()
        case .cancelRoute:
            attempt?.cancel()
        case .relayHead:
            relayHead()
        case let .failClient(error):
            error.respond(exchange, api: endpoint.api, headers: cors)
        case let .failStream(message):
            if let bytes = ClientError.streamError(contentType: translator?.contentType ?? upstreamHead?.headers[.contentType], message: message,
                                                   api: endpoint.api),
               translator != nil || upstreamChunked {
                exchange.write(bytes)
                exchange.end()
            } else {
                exchange.abort() // a fixed-length body cannot carry an error: cut it
            }
            releaseUpstream()
        case .endClient:
            exchange.end()
            releaseUpstream()
            keepInCache()
        case let .report(outcome, status, error):
            report(outcome, status: status, error: error)
        case .answerItself:
            answerItself()
        case .resendTranslated:
            guard let answer else { return }
            upstreams.noteLacks(endpoint.rawValue, at: answer.upstream)
            sendUpstream(answer)
        }
    }

    /// herd's own answer where the backend has none: Anthropic's
    /// `count_tokens` estimated at about 4 bytes of the request per token
    /// (said in `X-Herd-Token-Count: estimate`); Ollama's `/api/show` for a
    /// model an OpenAI-compatible server serves.
    private func answerItself() {
        releaseUpstream()
        var headers = cors
        headers.add("Content-Type", ClientError.contentType)
        if let answer {
            headers.addSafely("X-Herd-Node", answer.node)
            headers.addSafely("X-Herd-Model", answer.model)
        }
        if endpoint == .show {
            return exchange.respond(status: 200, headers: headers, body: OllamaOverOpenAI.show(model: answer?.model ?? fields.model))
        }
        var out: [UInt8] = []
        JSONValue.object([("input_tokens", .int(max(1, body.count / 4)))]).write(to: &out)
        headers.add("X-Herd-Token-Count", "estimate")
        exchange.respond(status: 200, headers: headers, body: out)
    }

    // MARK: Routing

    func routed(_ answer: RouteAnswer) { perform(flow.routed(answer)) }
    func refused(_ refusal: RouteRefusal) { perform(flow.refused(refusal)) }

    // MARK: Upstream

    private func sendUpstream(_ answer: RouteAnswer) {
        self.answer = answer
        var headers = ProxyHeaders.endToEnd(exchange.head.headers, dropping: ProxySession.requestDrops)
        headers.add("Host", answer.upstream)
        let forwardedFor = exchange.head.headers[.xForwardedFor].map { $0 + ", " } ?? ""
        headers.add("X-Forwarded-For", forwardedFor + (exchange.remoteHost ?? "unknown"))
        headers.add("X-Forwarded-Proto", exchange.head.headers[.xForwardedProto] ?? "http")
        // A form goes as it came (its model named as the client named it).
        var upstreamBody = !endpoint.isForm && (answer.model != fields.model || fields.hasFallbackField || answer.stripNumCtx || answer.numCtx != nil)
            ? rewrittenBody(model: answer.model, stripNumCtx: answer.stripNumCtx, numCtx: answer.numCtx) : body
        var target = exchange.head.target
        translator = nil
        if let path = endpoint.upstreamPath {
            // Ollama Herd's own paths, sent on as OpenAI's.
            target = path
            if endpoint == .legacyTranscribe {
                guard let held = upload?.held, upload?.isWhole == true,
                      let form = RouteFields.transcriptionForm(fromLegacy: held, contentType: exchange.head.headers[.contentType], model: answer.model) else {
                    return perform(flow.answeredByHerd(ClientError.badRequest("the form has no \"audio\" part (the audio to transcribe)")))
                }
                return send(HTTPClientRequest(method: "POST", target: target, headers: headers, body: form), to: answer.upstream)
            }
            guard let request = LegacyImage.request(body: body, model: answer.model) else {
                return perform(flow.answeredByHerd(ClientError.badRequest("expected {\"model\", \"prompt\"} with an optional \"width\" and \"height\"")))
            }
            headers.remove("Accept-Encoding")
            translator = LegacyImage.AnswerTranslator()
            return send(HTTPClientRequest(method: "POST", target: target, headers: headers, body: request), to: answer.upstream)
        }
        if endpoint.api == .ollama, answer.backend.speaksOpenAIOnly {
            // An Ollama-API request to an OpenAI-compatible server: translated both ways.
            if endpoint == .show { return perform(flow.answeredByHerd()) }
            guard let translated = OllamaOverOpenAI.request(endpoint, body: body, model: answer.model, stream: fields.stream) else {
                return perform(flow.answeredByHerd(ClientError.badRequest("the request body must be a JSON object")))
            }
            target = translated.path
            upstreamBody = translated.body
            headers.remove("Accept-Encoding")
            translator = OllamaAnswerTranslator(endpoint: endpoint, model: fields.model, stream: fields.stream)
        } else if endpoint == .anthropicMessages || endpoint == .openAIResponses, upstreams.lacks(endpoint.rawValue, at: answer.upstream) {
            // A backend without /v1/messages or /v1/responses (it answered 404 to one):
            // an OpenAI chat completion, translated both ways.
            let translated: [UInt8]
            if endpoint == .anthropicMessages {
                guard let request = AnthropicOverOpenAI.request(body: upstreamBody, model: answer.model, stream: fields.stream) else {
                    return perform(flow.answeredByHerd(ClientError.badRequest("the request body must be a JSON object")))
                }
                translated = request
                translator = AnthropicAnswerTranslator(model: fields.model, stream: fields.stream)
            } else {
                do {
                    translated = try ResponsesOverOpenAI.request(body: upstreamBody, model: answer.model, stream: fields.stream)
                } catch {
                    return perform(flow.answeredByHerd(ClientError.badRequest(error.message)))
                }
                translator = ResponsesAnswerTranslator(model: fields.model, stream: fields.stream)
            }
            flow.mayTranslate = false
            target = "/v1/chat/completions"
            upstreamBody = translated
            headers.remove("Accept-Encoding")
        }
        var source: (any HTTPBodySource)?
        if let upload {
            // Held whole (it can go again after a failure), or relayed as it comes (once).
            if upload.isWhole {
                upstreamBody = upload.held
            } else if upload.isSpent || upload.phase == .dropped {
                flow.retryable = false
                return perform(flow.upstreamFailed(.connectionLost(nil, afterResponseStarted: false), status: 0))
            } else {
                source = upload
            }
        }
        send(HTTPClientRequest(method: exchange.head.method, target: target, headers: headers, body: upstreamBody, bodySource: source),
             to: answer.upstream)
    }

    private func send(_ request: consuming HTTPClientRequest, to upstreamAddress: String) {
        upstreamHead = nil
        upstreamChunked = false
        streamNewlines = nil
        upstreamSentAt = EventLoop.monotonicNanoseconds()
        upstreamFirstByteAt = nil
        firstBodyPending = false
        guard let (task, upstream) = upstreams.send(request, to: upstreamAddress, delegate: self) else {
            perform(flow.upstreamFailed(.invalidResponse("bad upstream address \(upstreamAddress)"), status: 0))
            return
        }
        self.upstream = upstream
        self.task = task
    }

    /// The body with the served model, without `fallback_models`, without
    /// `options.num_ctx` when control says the loaded context covers it, or
    /// with the `num_ctx` control sets (`--num-ctx-policy fit`) — rare paths:
    /// only then is the body parsed whole.
    private func rewrittenBody(model: String, stripNumCtx: Bool, numCtx: Int? = nil) -> [UInt8] {
        guard case var .object(members)? = try? JSONValue.parse(body) else { return body }
        if numCtx != nil, !members.contains(where: { $0.0 == "options" }) { members.append(("options", .object([]))) }
        var out: [UInt8] = []
        JSONValue.object(members.compactMap { key, value in
            switch key {
            case "fallback_models": return nil
            case "model": return (key, .string(model))
            case "options" where numCtx != nil:
                guard case let .object(options) = value else { return (key, value) }
                return (key, .object(options.filter { $0.0 != "num_ctx" } + [("num_ctx", .int(numCtx ?? 0))]))
            case "options" where stripNumCtx:
                guard case let .object(options) = value else { return (key, value) }
                return (key, .object(options.filter { $0.0 != "num_ctx" }))
            default: return (key, value)
            }
        }).write(to: &out)
        return out
    }

    private func releaseUpstream() {
        guard let upstream else { return }
        self.upstream = nil
        upstreams.release(upstream)
    }

    func task(_ task: HTTPClientTask, didReceiveHead head: HTTPResponseHead) {
        let now = EventLoop.monotonicNanoseconds()
        // The node's time starts when the request left on a connection, not while it waited for one in the pool.
        if let written = task.sentAt { upstreamSentAt = written }
        upstreamHead = head
        upstreamChunked = ProxySession.isChunked(head)
        // vLLM (Starlette's StreamingResponse) and others send a stream's head
        // at once and its first token only when a slot frees: its first byte
        // is its first body bytes, or a stream that waited looks instant.
        if (200..<300).contains(head.status), upstreamChunked {
            firstBodyPending = true
            if head.headers[.contentType]?.utf8.starts(with: "text/event-stream".utf8) == true { streamNewlines = 0 }
        } else {
            upstreamFirstByte(now, status: head.status)
        }
        if let upload { flow.retryable = !upload.isSpent }
        perform(flow.upstreamHead(status: head.status))
    }

    private func relayHead() {
        guard let head = upstreamHead, let answer else { return }
        var headers = ProxyHeaders.endToEnd(head.headers, dropping: ProxySession.responseDrops)
        if let translator {
            translator.head(status: head.status)
            headers.remove("Content-Type")
            headers.remove("Content-Encoding")
            headers.add("Content-Type", translator.contentType)
        }
        headers.addSafely("X-Herd-Node", answer.node)
        headers.addSafely("X-Herd-Model", answer.model)
        headers.add("X-Herd-Retries", String(attempt?.retries ?? 0))
        if !answer.score.isEmpty { headers.addSafely("X-Herd-Score", answer.score) }
        if !answer.reason.isEmpty { headers.addSafely("X-Herd-Reason", answer.reason) }
        for (name, value) in cors { headers.add(name, value) }
        if let caching {
            headers.add("X-Herd-Cache", caching.key == nil ? "bypass" : "miss")
            if caching.key != nil, head.status == 200 { cacheBody = [] }
        }
        let length = upstreamChunked || translator != nil ? nil : head.headers[.contentLength].flatMap { Int($0.trimmingSpaces) }
        exchange.startResponse(status: head.status, headers: headers, contentLength: length)
    }

    /// A whole 200 answer to a request whose answer is to be kept goes into the cache.
    private func keepInCache() {
        guard let caching, let key = caching.key, let body = cacheBody, upstreamHead?.status == 200, let answer else { return }
        cacheBody = nil
        let contentType = translator?.contentType ?? upstreamHead?.headers[.contentType] ?? "application/json"
        caching.cache.store(key, contentType: contentType, body: body, node: answer.node, model: answer.model, now: exchange.loop.nowMilliseconds)
        if let semantic = caching.semantic { semantic.index.add(semantic.shape, semantic.vector, key: key) }
    }

    /// Whether an upstream response is chunked (a stream that can carry an error line).
    static func isChunked(_ head: HTTPResponseHead) -> Bool {
        head.headers.hasToken("chunked", in: .transferEncoding)
    }

    /// The upstream's first byte (`now`): its time to first byte, and STARTED when control asked for it.
    private func upstreamFirstByte(_ now: UInt64, status: Int) {
        firstBodyPending = false
        upstreamFirstByteAt = now
        // The client's time to first byte is its first token's too: a head sent at once says nothing of it.
        if firstByteAt == nil { firstByteAt = now }
        if answer?.reportStart == true, let sent = upstreamSentAt {
            attempt?.started(status: status, upstreamTtftMilliseconds: Double(now - sent) / 1e6)
        }
    }

    func task(_ task: HTTPClientTask, didReceiveBody bytes: UnsafeRawBufferPointer) {
        if firstBodyPending, bytes.count > 0 { upstreamFirstByte(EventLoop.monotonicNanoseconds(), status: upstreamHead?.status ?? 200) }
        guard case .streaming = flow.phase else { return }
        if let lines = streamNewlines { streamNewlines = lines &+ TokenCounter.newlines(in: bytes) }
        if let translator {
            let out = translator.feed(bytes)
            out.withUnsafeBytes { relay($0) }
        } else {
            relay(bytes)
        }
        if exchange.pendingResponseBytes > settings.relayHighWatermark, !relayPaused {
            relayPaused = true
            task.pauseReading()
        }
    }

    /// Writes bytes to the client, keeping the last of them for the token counts.
    private func relay(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        exchange.write(bytes)
        bytesRelayed += bytes.count
        if cacheBody != nil, let caching {
            if bytesRelayed <= caching.cache.maxEntryBytes { cacheBody?.append(contentsOf: bytes) } else { cacheBody = nil }
        }
        if bytes.count >= ProxySession.tailLimit {
            tail = Array(bytes.suffix(ProxySession.tailLimit))
        } else {
            tail.append(contentsOf: bytes)
            if tail.count > 2 * ProxySession.tailLimit { tail.removeFirst(tail.count - ProxySession.tailLimit) }
        }
    }

    func taskDidFinish(_ task: HTTPClientTask) {
        if firstBodyPending { upstreamFirstByte(EventLoop.monotonicNanoseconds(), status: upstreamHead?.status ?? 200) }
        if let translator, case .streaming = flow.phase {
            translator.finish().withUnsafeBytes { relay($0) }
        }
        perform(flow.upstreamFinished(status: upstreamHead?.status ?? 200))
    }

    func task(_ task: HTTPClientTask, didFail error: HTTPClientError) {
        if let upload { flow.retryable = !upload.isSpent }
        perform(flow.upstreamFailed(error, status: upstreamHead?.status ?? 502))
    }

    // MARK: Reporting

    private func report(_ outcome: RouteResult.Outcome, status: Int, error: String?) {
        let now = EventLoop.monotonicNanoseconds()
        var usage = TokenCounter.read(tail)
        if usage.completionTokens == 0, outcome == .ok, let lines = streamNewlines {
            usage.completionTokens = TokenCounter.streamedTokens(newlines: lines)
        }
        let result = RouteResult(
            id: id, node: answer?.node ?? "", model: answer?.model ?? fields.model, outcome: outcome, status: status,
            ttftMilliseconds: firstByteAt.map { Double($0 - startedAt) / 1e6 } ?? 0,
            durationMilliseconds: Double(now - startedAt) / 1e6, promptTokens: usage.promptTokens,
            completionTokens: usage.completionTokens, bytes: bytesRelayed, error: error,
            backendPromptMilliseconds: usage.promptMilliseconds, backendDecodeMilliseconds: usage.decodeMilliseconds,
            backendLoadMilliseconds: usage.loadMilliseconds,
            upstreamTtftMilliseconds: upstreamSentAt.flatMap { sent in upstreamFirstByteAt.map { Double($0 - sent) / 1e6 } },
            upstreamMilliseconds: upstreamSentAt.map { Double(now - $0) / 1e6 }, backendTotalMilliseconds: usage.totalMilliseconds)
        attempt?.report(result)
    }
}
