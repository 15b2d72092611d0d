import Glibc
import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdWire

/// herd-proxy's settings.
struct ProxyOptions: Sendable {
    var host = "127.0.0.1"
    var port = 11435
    var controlSocket = DataDirectory.resolve() + "/control.sock"
    var proxyID = "proxy"
    var client = HTTPClientConfiguration()
    var server = HTTPServerConfiguration()
    var session = ProxySession.Settings()
    /// Retries on other nodes when routing locally (control away).
    var maxLocalRetries = 2
    /// How long control has to answer a ROUTE before the proxy routes it
    /// itself (milliseconds; a queued request: its queue time plus this).
    var routeTimeoutMilliseconds: UInt64 = 1_000
    /// How long in-flight requests may finish after SIGTERM (milliseconds).
    var drainMilliseconds: UInt64 = 30_000
    /// Browser origins allowed by CORS (`*` for any).
    var allowedOrigins = ProxyOptions.defaultOrigins
    /// Model management (`/api/pull`, `/api/delete`, …) from other machines without a fleet key (`--allow-remote-admin`).
    var allowRemoteAdmin = false
    /// Largest multipart upload (audio to transcribe, images to edit): 413 past it (`--max-upload-mb`).
    var maxUploadBytes = 25 * 1024 * 1024
    /// The exact response cache's size (0: off) and how long an answer is kept.
    var cacheBytes = 0
    var cacheTTLMilliseconds: UInt64 = 600_000
    /// The semantic cache: how alike a prompt must be, and the embedding model ("": the fleet's first).
    var semanticThreshold = 0.9
    var semanticModel = ""
    /// Cloud providers control may route a request to (opt-in per key).
    var providers = CloudProviders.Settings()

    /// Like Ollama's defaults: local pages, desktop apps and browser extensions.
    static let defaultOrigins = ["http://localhost", "https://localhost", "http://127.0.0.1", "https://127.0.0.1",
                                 "http://0.0.0.0", "https://0.0.0.0", "app://", "file://", "tauri://", "vscode-webview://",
                                 "chrome-extension://", "moz-extension://", "safari-web-extension://"]
}

/// The composition root of herd-proxy: the client-facing server, the control
/// client, the route source, the upstream pools, and the endpoints answered
/// from the snapshot. Loop-thread only.
final class ProxyApp {
    let loop: EventLoop
    let options: ProxyOptions
    let log = Logger(label: "herd-proxy")
    let control: ControlClient
    let upstreams: Upstreams
    private let client: HTTPClient
    let routes: RouteSource
    let admin: ModelAdmin
    private var server: HTTPServer!
    private var nextID: UInt64 = 0
    private var listings = Listings()
    /// The exact response cache (nil: off), and the fleet's model digests it keys on.
    let cache: ResponseCache?
    /// The semantic cache's index (with the exact cache: its answers live there).
    let semantic: SemanticIndex?
    private var digests: (version: Int, byModel: [String: String]) = (-1, [:])
    /// Client keys, as the snapshot has them.
    private var keyCheck = KeyCheck()

    /// Serialised fleet listings for the current snapshot.
    private struct Listings {
        var version = -1
        var tags: [UInt8] = []
        var ps: [UInt8] = []
        var models: [UInt8] = []
        var ollamaVersion: [UInt8] = []
    }

    init(loop: EventLoop, options: ProxyOptions) {
        self.loop = loop
        self.options = options
        control = ControlClient(loop: loop, path: options.controlSocket, proxyID: options.proxyID,
                                routeTimeoutMilliseconds: options.routeTimeoutMilliseconds, log: Logger(label: "herd-proxy[\(options.proxyID)]"))
        let client = HTTPClient(loop: loop, configuration: options.client)
        self.client = client
        let upstreams = Upstreams(client: client)
        self.upstreams = upstreams
        routes = RouteSource(loop: loop, control: control, maxLocalRetries: options.maxLocalRetries, inFlight: { upstreams.load($0) })
        admin = ModelAdmin(control: control, upstreams: upstreams, allowRemote: options.allowRemoteAdmin)
        cache = options.cacheBytes > 0 ? ResponseCache(capacityBytes: options.cacheBytes, ttlMilliseconds: options.cacheTTLMilliseconds) : nil
        semantic = options.cacheBytes > 0 ? SemanticIndex(threshold: options.semanticThreshold, maxBytes: max(64 * 1024, options.cacheBytes / 4)) : nil
    }

    func run() throws {
        if !options.providers.providers.isEmpty {
            upstreams.providers = try CloudProviders(settings: options.providers, client: client, loop: loop, log: log)
        }
        server = HTTPServer(loop: loop, configuration: options.server) { [unowned self] in self.handle($0) }
        // The server's own errors (400, 408, 413, 431) in the client's API format.
        server.errorBody = ClientError.serverError
        let bound = try server.listen(host: options.host, port: options.port, reusePort: true)
        control.start()
        log.info("\(options.proxyID) serving the Ollama and OpenAI APIs on \(bound); control at \(options.controlSocket)")
        var draining = false
        let drain: (Int32) -> Void = { [unowned self] signal in
            guard !draining else { return }
            draining = true
            self.log.info("signal \(signal): draining (up to \(self.options.drainMilliseconds / 1000) s)")
            let deadline = LoopTimer(loop: self.loop)
            deadline.start(after: self.options.drainMilliseconds) { [unowned self] in
                self.log.warning("drain deadline reached with \(self.server.connectionCount) connection(s) open")
                self.server.close()
                self.loop.stop()
            }
            self.server.drain { [unowned self] in
                deadline.close()
                self.loop.stop()
            }
        }
        // The cache's counts go to control every 2 s while they change (its /metrics).
        let cacheReport = LoopTimer(loop: loop)
        if let cache {
            var last = CacheStats()
            cacheReport.start(after: 2_000, repeating: 2_000) { [unowned self] in
                let now = cache.stats
                guard now != last, self.control.isConnected else { return }
                last = now
                self.control.reportCache(now)
            }
        }
        let term = try SignalWatcher(loop: loop, signal: SIGTERM, drain)
        let interrupt = try SignalWatcher(loop: loop, signal: SIGINT, drain)
        signal(SIGPIPE, SIG_IGN)
        loop.run()
        term.close()
        interrupt.close()
        cacheReport.close()
        control.stop()
        upstreams.close()
    }

    // MARK: Requests

    func handle(_ exchange: HTTPExchange) {
        let method = exchange.head.method
        let path = exchange.head.path
        if method == "OPTIONS" {
            preflight(exchange)
            return
        }
        if !keyCheck.isCurrent(control.snapshotVersion) { keyCheck.follow(version: control.snapshotVersion, keys: control.snapshot.keys) }
        var key: KeyCheck.Known?
        if keyCheck.active, !(method == "GET" && path == "/") {
            switch keyCheck.check(exchange.head.headers, adminKeyHash: control.adminKeyHash) {
            case .anonymous: break
            case let .key(found): key = found
            case let .refused(error):
                var headers = corsHeaders(for: exchange)
                headers.add("WWW-Authenticate", "Bearer realm=\"herd\"")
                return error.respond(exchange, api: ClientAPI(target: path), headers: headers)
            }
        }
        if let endpoint = Endpoint.at(path) {
            guard method == "POST" else {
                return ClientError.methodNotAllowed(method: method, path: path).respond(exchange, api: endpoint.api, headers: ["Allow": "POST"])
            }
            if endpoint.isForm { return upload(exchange, endpoint: endpoint, key: key) }
            exchange.collectBody { [unowned self] body in self.route(exchange, endpoint: endpoint, body: body, key: key) }
            return
        }
        let cors = corsHeaders(for: exchange)
        if ModelAdmin.manages(method: method, path: path) { return admin.handle(exchange, cors: cors) }
        switch (method, path) {
        case ("GET", "/"), ("HEAD", "/"):
            exchange.respond(status: 200, headers: cors + ["Content-Type": "text/plain; charset=utf-8"], body: ProxyApp.running)
        case ("GET", "/api/version"), ("HEAD", "/api/version"):
            refreshListings()
            json(exchange, listings.ollamaVersion, cors)
        case ("GET", "/api/tags"), ("HEAD", "/api/tags"):
            refreshListings()
            json(exchange, listings.tags, cors)
        case ("GET", "/api/ps"), ("HEAD", "/api/ps"):
            refreshListings()
            json(exchange, listings.ps, cors)
        case ("GET", "/v1/models"), ("HEAD", "/v1/models"):
            refreshListings()
            json(exchange, listings.models, cors)
        case ("GET", _) where path.hasPrefix("/v1/models/"), ("HEAD", _) where path.hasPrefix("/v1/models/"):
            model(exchange, name: PercentDecoding.decode(path.dropFirst("/v1/models/".count)), cors)
        default:
            ClientError.unknownEndpoint(method: method, path: path).respond(exchange, api: ClientAPI(target: path), headers: cors)
        }
    }

    /// A multipart upload: routed once its `model` is read, relayed as it
    /// arrives (`UploadRelay`), within its own limit (413 in OpenAI's shape).
    ///
    /// Ollama Herd's `/api/transcribe` is held whole (its form is rewritten:
    /// `audio` becomes `file`, and the fleet's speech-to-text model is named
    /// when the form names none).
    private func upload(_ exchange: HTTPExchange, endpoint: Endpoint, key: KeyCheck.Known?) {
        let legacy = endpoint == .legacyTranscribe
        let relay = UploadRelay(exchange: exchange, limit: options.maxUploadBytes, scanLimit: legacy ? 0 : 1024 * 1024)
        let contentType = exchange.head.headers[.contentType]
        let fallbacks = RouteFields.list(exchange.head.headers[.xHerdFallbackModels])
        let tags = RouteFields.list(exchange.head.headers[.xHerdTags])
        relay.start(scan: { (held, whole) throws(RouteFields.Invalid) -> RouteFields? in
            guard var fields = try RouteFields.readForm(held, contentType: contentType, headerFallbacks: fallbacks, headerTags: tags,
                                                        partial: !whole, modelRequired: !legacy) else { return nil }
            if endpoint != .imageEdits {
                // The audio's length, from its WAV header: wait for the file's first bytes (not past 64 KiB).
                let seconds = WorkUnits.audioSeconds(form: held, contentType: contentType, totalLength: relay.totalLength)
                if seconds == nil, !whole, held.count < 64 * 1024 { return nil }
                fields.workUnits = seconds ?? 0
            }
            return fields
        }, routable: { [unowned self] named in
            var fields = named
            if fields.model.isEmpty {
                guard let model = self.fleetModel(kind: WorkKind.stt.rawValue) else {
                    return ClientError(status: 404, message: "no speech-to-text model in the fleet (a node with --backend stt=URL serves one)")
                        .respond(exchange, api: endpoint.api, headers: self.corsHeaders(for: exchange))
                }
                fields.model = model
            }
            if let key, let refusal = ProxyApp.keyRefusal(key, &fields) {
                return refusal.respond(exchange, api: endpoint.api, headers: self.corsHeaders(for: exchange))
            }
            self.nextID &+= 1
            ProxySession(exchange: exchange, endpoint: endpoint, fields: fields, body: [], upload: relay, id: self.nextID, routes: self.routes,
                         upstreams: self.upstreams, cors: self.corsHeaders(for: exchange), settings: self.options.session, key: key).start()
        }, invalid: { [unowned self] error in
            ClientError.badRequest(error.message).respond(exchange, api: endpoint.api, headers: self.corsHeaders(for: exchange))
        })
    }

    private func route(_ exchange: HTTPExchange, endpoint: Endpoint, body: [UInt8], key: KeyCheck.Known?) {
        var fields: RouteFields
        do {
            let herd = RouteFields.herdHeaders(exchange.head.headers)
            fields = try RouteFields.read(body, endpoint: endpoint, headerFallbacks: RouteFields.list(herd.fallbacks),
                                          headerTags: RouteFields.list(herd.tags), headerSession: herd.session, headerNode: herd.node)
        } catch {
            ClientError.badRequest(error.message).respond(exchange, api: endpoint.api, headers: corsHeaders(for: exchange))
            return
        }
        if let key, let refusal = ProxyApp.keyRefusal(key, &fields) {
            return refusal.respond(exchange, api: endpoint.api, headers: corsHeaders(for: exchange))
        }
        if WorkUnits.measures(endpoint) { fields.workUnits = WorkUnits.json(body, endpoint: endpoint) }
        var caching: ProxySession.Caching?
        if let cache {
            // Answered from the cache, or kept once answered (`ResponseCache`).
            let ask = ResponseCache.ask(exchange.head.headers[.xHerdCache])
            if ask == .semantic || (ask != .off && key?.key.semantic == true), let semantic,
               let prompt = SemanticIndex.prompt(endpoint: endpoint, body: body, modelDigest: modelDigest(fields.model)),
               let exact = ResponseCache.key(path: endpoint.rawValue, body: body, modelDigest: modelDigest(fields.model)) {
                if let hit = cache.lookup(exact, now: loop.nowMilliseconds) { return replay(hit, exchange) }
                return routeSemantic(exchange, endpoint: endpoint, fields: fields, body: body, key: key, prompt: prompt, exact: exact,
                                     cache: cache, index: semantic)
            }
            if ask != .off, ask == .on || ResponseCache.deterministic(endpoint, body: body),
               let key = ResponseCache.key(path: endpoint.rawValue, body: body, modelDigest: modelDigest(fields.model)) {
                if let hit = cache.lookup(key, now: loop.nowMilliseconds) { return replay(hit, exchange) }
                caching = ProxySession.Caching(cache: cache, key: key)
            } else {
                caching = ProxySession.Caching(cache: cache, key: nil)
            }
        }
        nextID &+= 1
        ProxySession(exchange: exchange, endpoint: endpoint, fields: fields, body: body, id: nextID, routes: routes, upstreams: upstreams,
                     cors: corsHeaders(for: exchange), settings: options.session, caching: caching, key: key).start()
    }

    /// A key that may not use the model asked for: 403. Fallbacks it may not use are dropped.
    static func keyRefusal(_ known: KeyCheck.Known, _ fields: inout RouteFields) -> ClientError? {
        let key = known.key
        guard !key.models.isEmpty else { return nil }
        guard KeyCheck.allows(key, model: fields.model) else {
            return ClientError(status: 403, message: "key '\(key.name)' may not use model '\(fields.model)' (it may use: \(key.models.joined(separator: ", ")))")
        }
        fields.fallbacks = fields.fallbacks.filter { KeyCheck.allows(key, model: $0) }
        return nil
    }

    /// A single-turn prompt asked of the semantic cache: embedded by the
    /// fleet's embedding model, answered from the cache when one alike enough
    /// was answered before, else routed as usual and its answer kept (with its
    /// vector). No embedding model, or the embedding fails: it goes on uncached.
    private func routeSemantic(_ exchange: HTTPExchange, endpoint: Endpoint, fields: RouteFields, body: [UInt8], key: KeyCheck.Known?,
                               prompt: SemanticIndex.Prompt, exact: ResponseCache.Key, cache: ResponseCache, index: SemanticIndex) {
        let go = { [unowned self] (semantic: ProxySession.Caching.Semantic?) in
            self.nextID &+= 1
            ProxySession(exchange: exchange, endpoint: endpoint, fields: fields, body: body, id: self.nextID, routes: self.routes,
                         upstreams: self.upstreams, cors: self.corsHeaders(for: exchange), settings: self.options.session,
                         caching: ProxySession.Caching(cache: cache, key: exact, semantic: semantic), key: key).start()
        }
        guard let model = options.semanticModel.isEmpty ? fleetModel(kind: WorkKind.embed.rawValue) : options.semanticModel else { return go(nil) }
        nextID &+= 1
        EmbeddingLookup(id: nextID, model: model, text: prompt.text, routes: routes, upstreams: upstreams) { [unowned self] values in
            guard exchange.isOpen else { return }
            guard let vector = values.flatMap(SemanticIndex.unit) else { return go(nil) }
            if let near = index.nearest(prompt.shape, vector) {
                if let hit = cache.lookup(near.key, now: self.loop.nowMilliseconds) { return self.replay(hit, exchange, similarity: near.similarity) }
                index.forget(prompt.shape, key: near.key)
            }
            go(ProxySession.Caching.Semantic(index: index, shape: prompt.shape, vector: vector))
        }.start()
    }

    /// A cached answer, as it was first given (a stream's bytes as a stream).
    private func replay(_ hit: ResponseCache.Entry, _ exchange: HTTPExchange, similarity: Double? = nil) {
        var headers = corsHeaders(for: exchange)
        headers.add("Content-Type", hit.contentType)
        headers.add("X-Herd-Cache", "hit")
        if let similarity { headers.add("X-Herd-Cache-Similarity", String((similarity * 1000).rounded() / 1000)) }
        headers.addSafely("X-Herd-Node", hit.node)
        headers.addSafely("X-Herd-Model", hit.model)
        exchange.respond(status: 200, headers: headers, body: hit.body)
    }

    /// The fleet's digest of `model` (`/api/tags`; empty when its server gives none): a re-pulled model misses the cache.
    private func modelDigest(_ model: String) -> String {
        let snapshot = control.snapshot
        if digests.version != snapshot.version {
            var byModel: [String: String] = [:]
            for entry in snapshot.tags["models"]?.arrayValue ?? [] {
                if let name = entry["name"]?.stringValue, let digest = entry["digest"]?.stringValue { byModel[ModelName.canonical(name)] = digest }
            }
            digests = (snapshot.version, byModel)
        }
        return digests.byModel[ModelName.canonical(model)] ?? ""
    }

    /// The first model of the fleet that does `kind` of work (`herd_kind` in `/v1/models`).
    private func fleetModel(kind: String) -> String? {
        control.snapshot.openAIModels["data"]?.arrayValue?.first { $0["herd_kind"]?.stringValue == kind }?["id"]?.stringValue
    }

    /// `GET /v1/models/{model}`: the fleet's entry for one model, or a 404 naming the ones it has.
    private func model(_ exchange: HTTPExchange, name: String, _ cors: HTTPHeaders) {
        let models = control.snapshot.openAIModels["data"]?.arrayValue ?? []
        if let entry = models.first(where: { $0["id"]?.stringValue == name }) {
            var out: [UInt8] = []
            entry.write(to: &out)
            return json(exchange, out, cors)
        }
        let known = models.prefix(100).compactMap { $0["id"]?.stringValue }
        let shown = name.utf8.count <= RequestLimits.modelBytes.upperBound && RequestLimits.isModelName(name) ? name : "(a name herd does not accept)"
        ClientError(status: 404, message: "model '\(shown)' not found in the fleet", models: known).respond(exchange, api: .openai, headers: cors)
    }


    private func json(_ exchange: HTTPExchange, _ body: [UInt8], _ cors: HTTPHeaders) {
        exchange.respond(status: 200, headers: cors + ["Content-Type": "application/json; charset=utf-8"], body: body)
    }

    private func refreshListings() {
        let snapshot = control.snapshot
        guard snapshot.version != listings.version else { return }
        listings.version = snapshot.version
        listings.tags = []
        snapshot.tags.write(to: &listings.tags)
        listings.ps = []
        snapshot.ps.write(to: &listings.ps)
        listings.models = []
        snapshot.openAIModels.write(to: &listings.models)
        listings.ollamaVersion = []
        JSONValue.object([("version", .string(snapshot.ollamaVersion))]).write(to: &listings.ollamaVersion)
    }

    static let running = Array("Ollama is running".utf8)

    // MARK: CORS

    /// `Access-Control-Allow-Origin` for an allowed `Origin`, nothing otherwise.
    func corsHeaders(for exchange: HTTPExchange) -> HTTPHeaders {
        guard let origin = exchange.head.headers[.origin], originAllowed(origin) else { return HTTPHeaders() }
        return ["Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Expose-Headers": "X-Herd-Node, X-Herd-Model, X-Herd-Retries, X-Herd-Score, X-Herd-Reason"]
    }

    func originAllowed(_ origin: String) -> Bool {
        if options.allowedOrigins.contains("*") { return true }
        let lower = origin.lowercased()
        return options.allowedOrigins.contains { allowed in
            let a = allowed.lowercased()
            if a.hasSuffix("://") { return lower.hasPrefix(a) }
            // Match scheme://host with any port.
            return lower == a || lower.hasPrefix(a + ":")
        }
    }

    private func preflight(_ exchange: HTTPExchange) {
        var headers = corsHeaders(for: exchange)
        if !headers.isEmpty {
            headers.add("Access-Control-Allow-Methods", "GET, POST, HEAD, OPTIONS")
            headers.add("Access-Control-Allow-Headers",
                        exchange.head.headers["Access-Control-Request-Headers"] ?? "Authorization, Content-Type, X-Herd-Fallback-Models, X-Herd-Tags, X-Herd-Session")
            headers.add("Access-Control-Max-Age", "86400")
        }
        exchange.respond(status: 204, headers: headers)
    }
}

extension HTTPHeaders {
    static func + (lhs: HTTPHeaders, rhs: HTTPHeaders) -> HTTPHeaders {
        var out = lhs
        for (name, value) in rhs { out.add(name, value) }
        return out
    }
}
