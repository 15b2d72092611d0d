import HerdHTTP
import HerdJSON
import HerdRuntime

/// A scriptable fake Ollama / OpenAI-compatible server for tests and benchmarks,
/// built on herd's own HTTP server. It frames NDJSON and SSE streams as the real
/// servers do. Loop-thread only, except `start`/`stop` through a `LoopThread`.
///
/// Scripting: set `configuration` on the loop thread, or `POST /_fake/config`
/// with `{"failure":"hang","tokens":20,"token_delay_ms":5,"first_byte_delay_ms":0,
/// "loaded":["m"],"models":["a","b"]}`; `GET /_fake/stats` returns request counts.
public final class FakeBackend {
    public let loop: EventLoop
    public var configuration: FakeBackendConfiguration
    private var server: HTTPServer?
    private var host = "127.0.0.1"
    public private(set) var port = 0
    /// Inference requests received, by path.
    public private(set) var requestCounts: [String: Int] = [:]
    /// Requests whose head arrived, by path (an upload relayed as it comes shows here before its body ends).
    public private(set) var headCounts: [String: Int] = [:]
    /// Streams cancelled by the client going away.
    public private(set) var cancelledStreams = 0
    /// The largest number of unwritten bytes any response had (backpressure check).
    public private(set) var maxPendingResponseBytes = 0
    /// A stream stops producing above this many unwritten bytes.
    public var highWatermark = 64 * 1024
    /// Inference requests being served (bounded by `configuration.slots`).
    private var serving = Set<ObjectIdentifier>()
    /// Inference requests waiting inside the backend for a slot.
    private var waiting: [(HTTPExchange, () -> Void)] = []
    /// Other requests held while it serves (`deafWhileBusy`), answered when it is idle.
    private var unheard: [() -> Void] = []
    /// The most inference requests that ever waited inside the backend at once.
    public private(set) var maxWaiting = 0
    /// The last `/v1/messages` or `/v1/responses` body (passthrough checks).
    private var lastBody: JSONValue = nil
    private var lastRaw: [UInt8] = []
    /// Generates without a prompt (model loads) received.
    public private(set) var prewarms = 0
    /// Unloads asked for (a generate without a prompt, keep_alive 0).
    public private(set) var unloads = 0
    /// Reloads to change a model's context (`contextReloads`), and each model's own context.
    public private(set) var reloads = 0
    private var ownContext: [String: Int] = [:]
    /// The load time the next answer reports (nanoseconds).
    private var loadNanoseconds = 500_000.0

    public init(loop: EventLoop, configuration: FakeBackendConfiguration = FakeBackendConfiguration()) {
        self.loop = loop
        self.configuration = configuration
    }

    /// Listens on `host:port` (0: a free port) and returns the port.
    @discardableResult
    public func start(host: String = "127.0.0.1", port: Int = 0) throws -> Int {
        self.host = host
        let server = HTTPServer(loop: loop) { [unowned self] exchange in self.handle(exchange) }
        self.port = try server.listen(host: host, port: port).port
        self.server = server
        if configuration.failure == .refuse { server.stopAccepting() }
        return self.port
    }

    public func stop() {
        server?.close()
        server = nil
    }

    /// Changes the failure mode; `.refuse` closes the listening socket, leaving it
    /// listens again on the same port.
    public func setFailure(_ failure: FakeFailure) {
        let wasRefusing = configuration.failure == .refuse
        configuration.failure = failure
        if failure == .refuse {
            server?.close()
        } else if wasRefusing, let server {
            _ = try? server.listen(host: host, port: port)
        }
    }

    public var totalRequests: Int { requestCounts.values.reduce(0, +) }
    /// Requests whose body carried `options.num_ctx`.
    private var numCtxRequests = 0

    // MARK: Routing

    private func handle(_ exchange: HTTPExchange) {
        headCounts[String(exchange.head.path), default: 0] += 1
        exchange.collectBody { [unowned self] body in self.route(exchange, body: body) }
    }

    private func route(_ exchange: HTTPExchange, body: [UInt8]) {
        let path = String(exchange.head.path)
        let method = exchange.head.method
        switch (method, path) {
        case ("GET", "/_fake/last_raw"):
            // The last POST body, byte for byte.
            exchange.respond(status: 200, headers: ["Content-Type": "application/octet-stream"], body: lastRaw)
            return
        case ("GET", "/_fake/last"):
            // The last Anthropic / Responses body, as the backend received it.
            respondJSON(exchange, 200, lastBody)
            return
        case ("GET", "/_fake/stats"):
            let counts = JSONValue.object(requestCounts.sorted { $0.key < $1.key }.map { ($0.key, .number(Double($0.value))) })
            let heads = JSONValue.object(headCounts.sorted { $0.key < $1.key }.map { ($0.key, .number(Double($0.value))) })
            respondJSON(exchange, 200, ["requests": .number(Double(totalRequests)), "by_path": counts, "heads_by_path": heads, "cancelled": .number(Double(cancelledStreams)),
                                        "max_waiting": .number(Double(maxWaiting)), "prewarms": .number(Double(prewarms)), "unloads": .number(Double(unloads)), "reloads": .number(Double(reloads)), "waiting": .number(Double(waiting.count)),
                                        "num_ctx_requests": .number(Double(numCtxRequests))])
            return
        case ("POST", "/_fake/config"):
            applyScript(exchange, body)
            return
        default: break
        }
        if configuration.deafWhileBusy, !serving.isEmpty, method != "POST" || path == "/api/show" {
            unheard.append { [unowned self] in self.route(exchange, body: body) }
            return
        }
        requestCounts[path, default: 0] += 1
        if method == "POST" { lastRaw = body }
        if let handled = manage(exchange, method: method, path: path, body: body), handled { return }
        let isInference = method == "POST" && path != "/api/show"
        if isInference, configuration.headsEarly, let type = Self.streamType(path: path, body: body) {
            exchange.startResponse(status: 200, headers: ["Content-Type": type, "X-Fake-Backend": configuration.name])
        }
        guard isInference, configuration.slots > 0 else { return serve(exchange, method: method, path: path, body: body, isInference: isInference) }
        // Like a real server with N parallel slots: the rest waits inside, in order.
        if serving.count < configuration.slots {
            serving.insert(ObjectIdentifier(exchange))
            serve(exchange, method: method, path: path, body: body, isInference: true)
        } else {
            waiting.append((exchange, { [unowned self] in
                self.serving.insert(ObjectIdentifier(exchange))
                self.serve(exchange, method: method, path: path, body: body, isInference: true)
            }))
            maxWaiting = max(maxWaiting, waiting.count)
            exchange.onCancel = { [unowned self] in self.waiting.removeAll { $0.0 === exchange } }
        }
    }

    /// The content type of `body`'s answer when it is a stream (Ollama streams unless told not to; OpenAI only when asked).
    private static func streamType(path: String, body: [UInt8]) -> String? {
        let stream = (try? JSONValue.parse(body))?["stream"]?.boolValue
        if path.hasPrefix("/api/") { return stream == false ? nil : "application/x-ndjson" }
        return stream == true ? "text/event-stream" : nil
    }

    /// A served inference request ended (answered, streamed to the end, or
    /// cancelled): its slot goes to the next waiting one.
    func release(_ exchange: HTTPExchange) {
        guard serving.remove(ObjectIdentifier(exchange)) != nil else { return }
        while !waiting.isEmpty {
            let (next, start) = waiting.removeFirst()
            guard next.isOpen else { continue }
            next.onCancel = nil
            start()
            return
        }
        if serving.isEmpty, !unheard.isEmpty {
            let heard = unheard
            unheard = []
            for answer in heard { answer() }
        }
    }

    /// Releases `exchange`'s slot now if its response is over (streams release at their end).
    private func releaseIfDone(_ exchange: HTTPExchange) {
        if !exchange.isOpen { release(exchange) }
    }

    private func serve(_ exchange: HTTPExchange, method: String, path: String, body: [UInt8], isInference: Bool) {
        if isInference {
            switch configuration.failure {
            case .status500:
                respondJSON(exchange, 500, ["error": "fake backend failure"])
                release(exchange)
                return
            case .status501:
                respondJSON(exchange, 501, ["error": ["code": 501, "message": "This server does not support embeddings. Start it with `--embeddings`",
                                                      "type": "not_supported_error"]])
                release(exchange)
                return
            case .hang:
                exchange.onCancel = { [unowned self] in self.cancelledStreams += 1 }
                return
            default: break
            }
        }
        var delay = configuration.firstByteDelayMilliseconds
        loadNanoseconds = 500_000
        if configuration.contextReloads, method == "POST", path == "/api/chat" || path == "/api/generate",
           let request = try? JSONValue.parse(body), let name = request["model"]?.stringValue,
           let i = configuration.models.firstIndex(where: { $0.name == name || $0.name == name + ":latest" }) {
            let own = ownContext[configuration.models[i].name] ?? configuration.models[i].contextLength
            ownContext[configuration.models[i].name] = own
            let wanted = request["options"]?["num_ctx"]?.intValue ?? own
            if !configuration.models[i].loaded || configuration.models[i].contextLength != wanted {
                configuration.models[i].loaded = true
                configuration.models[i].contextLength = max(1, wanted)
                reloads += 1
                loadNanoseconds = 400_000_000
            }
            if configuration.ttftGrowsAsContextShrinks, configuration.models[i].contextLength < own {
                delay = delay * UInt64(own) / UInt64(max(1, configuration.models[i].contextLength))
            }
        }
        if delay > 0 {
            let timer = LoopTimer(loop: loop)
            exchange.onCancel = { [unowned self] in
                timer.close()
                self.release(exchange)
            }
            let load = loadNanoseconds
            timer.start(after: delay) { [unowned self] in
                timer.close()
                exchange.onCancel = nil
                self.loadNanoseconds = load
                self.dispatch(exchange, method: method, path: path, body: body)
                self.releaseIfDone(exchange)
            }
        } else {
            dispatch(exchange, method: method, path: path, body: body)
            releaseIfDone(exchange)
        }
    }

    private func dispatch(_ exchange: HTTPExchange, method: String, path: String, body: [UInt8]) {
        let headers: HTTPHeaders = ["X-Fake-Backend": configuration.name]
        switch (method, path) {
        case ("GET", "/"), ("HEAD", "/"):
            exchange.respond(status: 200, headers: headers + ["Content-Type": "text/plain; charset=utf-8"], body: "Ollama is running")
        case ("GET", "/api/version"):
            respondJSON(exchange, 200, ["version": .string(configuration.version)])
        case ("GET", "/api/tags"):
            respondJSON(exchange, 200, FakeOllama.tags(configuration))
        case ("GET", "/api/ps"):
            respondJSON(exchange, 200, FakeOllama.ps(configuration))
        case ("GET", "/metrics") where configuration.metrics != nil:
            // Its queue as vLLM or llama.cpp's server report it (Prometheus text).
            let (runningName, waitingName) = configuration.metrics == "llamacpp"
                ? ("llamacpp:requests_processing", "llamacpp:requests_deferred")
                : ("vllm:num_requests_running{model_name=\"m\"}", "vllm:num_requests_waiting{model_name=\"m\"}")
            let text = "# HELP queue gauges\n# TYPE x gauge\n\(runningName) \(Double(serving.count))\n\(waitingName) \(Double(waiting.count))\n"
            exchange.respond(status: 200, headers: headers + ["Content-Type": "text/plain; version=0.0.4"], body: Array(text.utf8))
        case ("GET", "/props") where configuration.slots > 0 && configuration.props:
            // llama.cpp's server: how many requests it serves at once.
            respondJSON(exchange, 200, ["total_slots": .int(configuration.slots), "n_ctx": 8192])
        case ("GET", "/v1/models"):
            respondJSON(exchange, 200, FakeOpenAI.models(configuration))
        case ("POST", "/v1/audio/transcriptions"), ("POST", "/v1/audio/translations"), ("POST", "/v1/images/edits"):
            // A form: says which backend read how many bytes for which model (the upload arrived whole).
            let model = FakeMedia.formField("model", in: body) ?? ""
            guard configuration.model(named: model) != nil else {
                return respondJSON(exchange, 404, FakeOpenAI.error("model '\(model)' not found", type: "invalid_request_error", code: "model_not_found"))
            }
            // OpenAI's audio endpoints take the audio in a part named `file`.
            let filePart = Array(#"name="file""#.utf8)
            if path.hasPrefix("/v1/audio"), !body.indices.contains(where: { body[$0...].starts(with: filePart) }) {
                return respondJSON(exchange, 400, FakeOpenAI.error("the form has no 'file' part", type: "invalid_request_error"))
            }
            if path.hasPrefix("/v1/images") {
                respondJSON(exchange, 200, ["created": 1, "data": [["b64_json": .string("ZmFrZQ==")]], "herd_fake": ["backend": .string(configuration.name),
                                            "model": .string(model), "bytes": .int(body.count)]])
            } else {
                respondJSON(exchange, 200, ["text": .string("fake words from \(configuration.name)"),
                                            "herd_fake": ["backend": .string(configuration.name), "model": .string(model), "bytes": .int(body.count)]])
            }
        case ("POST", _):
            let request: JSONValue
            do {
                request = try JSONValue.parse(body)
            } catch {
                if path.hasPrefix("/v1/") {
                    respondJSON(exchange, 400, FakeOpenAI.error("invalid JSON: \(error)", type: "invalid_request_error"))
                } else {
                    respondJSON(exchange, 400, ["error": .string("invalid JSON: \(error)")])
                }
                return
            }
            // Ollama reloads a model to change its context: count the requests that asked for one.
            if request["options"]?["num_ctx"] != nil { numCtxRequests += 1 }
            post(exchange, path: path, request: request)
        default:
            respondJSON(exchange, 404, ["error": "404 page not found"])
        }
    }

    private func post(_ exchange: HTTPExchange, path: String, request: JSONValue) {
        let modelName = request["model"]?.stringValue ?? ""
        guard let model = configuration.model(named: modelName) else {
            if path.hasPrefix("/v1/messages") {
                respondJSON(exchange, 404, FakeAnthropic.error("model '\(modelName)' not found", type: "not_found_error"))
            } else if path.hasPrefix("/v1/") {
                respondJSON(exchange, 404, FakeOpenAI.error("model '\(modelName)' not found", type: "invalid_request_error", code: "model_not_found"))
            } else {
                respondJSON(exchange, 404, ["error": .string("model '\(modelName)' not found")])
            }
            return
        }
        switch path {
        case "/api/generate" where request["prompt"] == nil && (request["keep_alive"]?.doubleValue == 0 || request["keep_alive"]?.stringValue == "0"):
            // Like Ollama: no prompt and keep_alive 0 unloads the model.
            if let i = configuration.models.firstIndex(where: { $0.name == model.name }) { configuration.models[i].loaded = false }
            unloads += 1
            respondJSON(exchange, 200, ["model": .string(model.name), "created_at": "2026-11-22T00:00:00Z", "response": "", "done": true,
                                        "done_reason": "unload"])
        case "/api/generate" where request["prompt"] == nil:
            // Like Ollama: a generate without a prompt only loads the model (a pre-warm).
            if let i = configuration.models.firstIndex(where: { $0.name == model.name }) { configuration.models[i].loaded = true }
            prewarms += 1
            respondJSON(exchange, 200, ["model": .string(model.name), "created_at": "2026-11-22T00:00:00Z", "response": "", "done": true,
                                        "done_reason": "load", "load_duration": 1_250_000_000])
        case "/api/chat", "/api/generate":
            let stream = request["stream"]?.boolValue ?? true
            let chat = path == "/api/chat"
            if stream {
                streamLines(exchange, contentType: "application/x-ndjson", lines: FakeOllama.streamLines(model: model, chat: chat, configuration: configuration,
                                                                                                               loadNanoseconds: loadNanoseconds))
            } else {
                respondJSON(exchange, 200, FakeOllama.whole(model: model, chat: chat, configuration: configuration, loadNanoseconds: loadNanoseconds))
            }
        case "/api/embed":
            let count = request["input"]?.arrayValue?.count ?? 1
            respondJSON(exchange, 200, FakeOllama.embed(model: model, inputs: count, texts: FakeOllama.texts(request["input"])))
        case "/api/embeddings":
            respondJSON(exchange, 200, ["embedding": FakeOllama.vector(model.embeddingDimensions)])
        case "/api/show":
            respondJSON(exchange, 200, FakeOllama.show(model))
        case "/v1/chat/completions", "/v1/completions":
            let stream = request["stream"]?.boolValue ?? false
            let chat = path == "/v1/chat/completions"
            if stream {
                let usage = request["stream_options"]?["include_usage"]?.boolValue ?? false
                streamLines(exchange, contentType: "text/event-stream", lines: FakeOpenAI.streamEvents(model: model, chat: chat, includeUsage: usage, configuration: configuration,
                                                                                                      tool: FakeOpenAI.toolCall(request)))
            } else {
                respondJSON(exchange, 200, FakeOpenAI.whole(model: model, chat: chat, configuration: configuration, tool: FakeOpenAI.toolCall(request)))
            }
        case "/v1/embeddings":
            let count = request["input"]?.arrayValue?.count ?? 1
            respondJSON(exchange, 200, FakeOpenAI.embeddings(model: model, inputs: count, texts: FakeOllama.texts(request["input"])))
        case "/v1/messages" where !configuration.anthropic:
            exchange.respond(status: 404, headers: ["Content-Type": "text/plain", "X-Fake-Backend": configuration.name], body: "404 page not found")
        case "/v1/messages":
            lastBody = request
            if request["stream"]?.boolValue ?? false {
                streamLines(exchange, contentType: "text/event-stream", lines: FakeAnthropic.streamEvents(model: model, request: request, configuration: configuration))
            } else {
                respondJSON(exchange, 200, FakeAnthropic.whole(model: model, request: request, configuration: configuration))
            }
        case "/v1/responses" where !configuration.responses:
            exchange.respond(status: 404, headers: ["Content-Type": "text/plain", "X-Fake-Backend": configuration.name], body: "404 page not found")
        case "/v1/responses":
            lastBody = request
            if request["stream"]?.boolValue ?? false {
                streamLines(exchange, contentType: "text/event-stream", lines: FakeResponses.streamEvents(model: model, configuration: configuration))
            } else {
                respondJSON(exchange, 200, FakeResponses.whole(model: model, configuration: configuration))
            }
        case "/v1/audio/speech":
            // Audio bytes, streamed as they are made: a WAV header, then samples.
            let characters = request["input"]?.stringValue?.count ?? 0
            streamLines(exchange, contentType: "audio/wav", lines: FakeMedia.speech(characters: characters, chunks: 8))
        case "/v1/images/generations":
            respondJSON(exchange, 200, ["created": 1, "data": [["b64_json": .string("ZmFrZQ==")]],
                                        "herd_fake": ["backend": .string(configuration.name), "model": .string(model.name)]])
        case "/v1/rerank", "/rerank", "/v1/reranking":
            let documents = request["documents"]?.arrayValue?.count ?? 0
            respondJSON(exchange, 200, ["model": .string(model.name), "object": "list",
                                        "results": .array((0..<documents).map { ["index": .int($0), "relevance_score": .number(1 / Double($0 + 1))] }),
                                        "usage": ["prompt_tokens": .int(documents * 8), "total_tokens": .int(documents * 8)]])
        default:
            respondJSON(exchange, 404, ["error": "404 page not found"])
        }
    }

    // MARK: Model management (as Ollama answers it)

    /// Blobs uploaded (`POST /api/blobs/:digest`), by digest.
    private var blobs: Set<String> = []

    /// `/api/pull` (progress streamed, one line per token delay), `/api/delete`,
    /// `/api/copy`, `/api/create`, `/api/push`, `/api/blobs/:digest`. Nil: not a management request.
    private func manage(_ exchange: HTTPExchange, method: String, path: String, body: [UInt8]) -> Bool? {
        let request = (try? JSONValue.parse(body)) ?? [:]
        let name = request["model"]?.stringValue ?? request["name"]?.stringValue ?? ""
        switch (method, path) {
        case ("POST", "/api/pull"):
            let stream = request["stream"]?.boolValue ?? true
            let steps = ["pulling manifest", "pulling 6a0746a1ec1a", "verifying sha256 digest", "writing manifest", "success"]
            let add = { [unowned self] in
                if self.configuration.model(named: name) == nil { self.configuration.models.append(FakeModel(name: name, loaded: false)) }
            }
            guard stream else {
                add()
                respondJSON(exchange, 200, ["status": "success"])
                return true
            }
            streamLines(exchange, contentType: "application/x-ndjson", lines: FakeLineSource(count: steps.count) { i in
                if i == steps.count - 1 { add() }
                var line: [UInt8] = []
                let members: [(String, JSONValue)] = i == 1
                    ? [("status", .string(steps[i])), ("digest", "sha256:6a0746a1ec1a"), ("total", 2_000_000), ("completed", 2_000_000)]
                    : [("status", .string(steps[i]))]
                JSONValue.object(members).write(to: &line)
                line.append(10)
                return line
            })
            return true
        case ("DELETE", "/api/delete"):
            guard configuration.model(named: name) != nil else {
                respondJSON(exchange, 404, ["error": .string("model '\(name)' not found")])
                return true
            }
            configuration.models.removeAll { $0.name == name || $0.name == name + ":latest" }
            exchange.respond(status: 200, headers: ["X-Fake-Backend": configuration.name], body: [])
            return true
        case ("POST", "/api/copy"):
            let source = request["source"]?.stringValue ?? ""
            guard var model = configuration.model(named: source), let destination = request["destination"]?.stringValue else {
                respondJSON(exchange, 404, ["error": .string("model '\(source)' not found")])
                return true
            }
            model.name = destination
            model.loaded = false
            configuration.models.append(model)
            exchange.respond(status: 200, headers: ["X-Fake-Backend": configuration.name], body: [])
            return true
        case ("POST", "/api/create"):
            configuration.models.append(FakeModel(name: name, loaded: false))
            respondJSON(exchange, 200, ["status": "success"])
            return true
        case ("POST", "/api/push"):
            respondJSON(exchange, 200, ["status": "success"])
            return true
        case ("HEAD", _) where path.hasPrefix("/api/blobs/"):
            exchange.respond(status: blobs.contains(String(path.dropFirst(11))) ? 200 : 404, headers: ["X-Fake-Backend": configuration.name], body: [])
            return true
        case ("POST", _) where path.hasPrefix("/api/blobs/"):
            blobs.insert(String(path.dropFirst(11)))
            exchange.respond(status: 201, headers: ["X-Fake-Backend": configuration.name], body: [])
            return true
        default:
            return nil
        }
    }

    func respondJSON(_ exchange: HTTPExchange, _ status: Int, _ value: JSONValue) {
        var body: [UInt8] = []
        value.write(to: &body)
        exchange.respond(status: status, headers: ["Content-Type": "application/json; charset=utf-8", "X-Fake-Backend": configuration.name], body: body)
    }

    // MARK: Streaming

    /// Streams `lines` (each produced when due), honouring the pacing, the
    /// failure mode and backpressure (production pauses above the watermark).
    private func streamLines(_ exchange: HTTPExchange, contentType: String, lines: FakeLineSource) {
        exchange.startResponse(status: 200, headers: ["Content-Type": contentType, "X-Fake-Backend": configuration.name])
        let streamer = FakeStreamer(backend: self, exchange: exchange, lines: lines,
                                    delay: configuration.tokenDelayMilliseconds, failure: configuration.failure)
        streamer.start()
    }

    func noteCancelled() { cancelledStreams += 1 }

    func notePending(_ bytes: Int) {
        if bytes > maxPendingResponseBytes { maxPendingResponseBytes = bytes }
    }

    // MARK: Script endpoint

    private func applyScript(_ exchange: HTTPExchange, _ body: [UInt8]) {
        guard let script = try? JSONValue.parse(body), script.objectValue != nil else {
            respondJSON(exchange, 400, ["error": "expected a JSON object"])
            return
        }
        if let text = script["failure"]?.stringValue {
            guard let failure = FakeFailure(text) else {
                respondJSON(exchange, 400, ["error": .string("unknown failure '\(text)'")])
                return
            }
            // After this answer has been written: `refuse` closes every connection.
            loop.deferToNextTick { [unowned self] in self.setFailure(failure) }
        }
        if let n = script["tokens"]?.intValue { configuration.tokens = n }
        if let n = script["token_delay_ms"]?.intValue { configuration.tokenDelayMilliseconds = UInt64(max(0, n)) }
        if let n = script["first_byte_delay_ms"]?.intValue { configuration.firstByteDelayMilliseconds = UInt64(max(0, n)) }
        if let names = script["models"]?.arrayValue?.compactMap(\.stringValue) {
            configuration.models = names.map { FakeModel(name: $0) }
        }
        if let loaded = script["loaded"]?.arrayValue?.compactMap(\.stringValue) {
            for i in configuration.models.indices { configuration.models[i].loaded = loaded.contains(configuration.models[i].name) }
        }
        respondJSON(exchange, 200, ["ok": true])
    }
}

extension HTTPHeaders {
    static func + (lhs: HTTPHeaders, rhs: HTTPHeaders) -> HTTPHeaders {
        var out = lhs
        for (name, value) in rhs { out.add(name, value) }
        return out
    }
}
