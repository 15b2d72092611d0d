import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdWire

/// One backend the agent watches, and how to read its state.
struct BackendTarget {
    var kind: BackendKind
    var url: HTTPURL
    /// Models named on the command line (`KIND=URL#model1,model2`): the
    /// server's own list is not asked (many speech and image servers have none).
    var models: [String] = []
}

/// Reads a backend's state: Ollama `/api/version`, `/api/tags`, `/api/ps`; an
/// OpenAI-compatible server's `/v1/models` and `/props` when `models`, else
/// only `/health` (which takes no model lock: llama-cpp-python's server ends a
/// running stream to answer `/v1/models`). Loop-thread only.
enum BackendProbe {
    /// `completion`'s second value: every request that failed was taken and
    /// not answered in time (a server busy with a long job), none refused.
    static func probe(_ target: BackendTarget, address: SocketAddress?, client: HTTPClient, models: Bool = true,
                      completion: @escaping (Heartbeat.Backend, Bool) -> Void) {
        var backend = unprobed(target, address: address)
        guard let address else {
            backend.error = "cannot resolve \(target.url.host)"
            completion(backend, false)
            return
        }
        let prefix = target.url.path
        switch target.kind {
        case .ollama:
            var pending = 3
            var failure: String?
            var unanswered = true
            let failed = { (error: ProbeFailure) in
                failure = error.message
                unanswered = unanswered && error.unanswered
            }
            let done = {
                pending -= 1
                guard pending == 0 else { return }
                backend.reachable = failure == nil
                backend.error = failure
                completion(backend, failure != nil && unanswered)
            }
            get(prefix + "/api/version", address, client) { result in
                switch result {
                case let .success(json): backend.version = json["version"]?.stringValue
                case let .failure(error): failed(error)
                }
                done()
            }
            get(prefix + "/api/tags", address, client) { result in
                switch result {
                case let .success(json): backend.models = parseTags(json)
                case let .failure(error): failed(error)
                }
                done()
            }
            get(prefix + "/api/ps", address, client) { result in
                switch result {
                case let .success(json): backend.loaded = parsePS(json)
                case let .failure(error): failed(error)
                }
                done()
            }
        case _ where !models || !target.models.isEmpty:
            // Alive is any HTTP answer (llama-cpp-python has no /health: 404),
            // but llama.cpp's 503 "Loading model". Named models are the backend's.
            if !target.models.isEmpty {
                backend.models = target.models.map { Heartbeat.Model(name: $0) }
                backend.loaded = target.models.map { Heartbeat.LoadedModel(name: $0) }
            }
            client.collect(HTTPClientRequest(method: "GET", target: prefix + "/health"), to: address, limit: 64 * 1024) { result in
                var unanswered = false
                switch result {
                case let .success(response) where response.status == 503:
                    backend.error = "GET \(prefix)/health: status 503 (loading)"
                case .success:
                    backend.reachable = true
                case let .failure(error):
                    backend.error = "GET \(prefix)/health: \(error)"
                    unanswered = ProbeFailure.unanswered(error)
                }
                completion(backend, unanswered)
            }
        default:
            get(prefix + "/v1/models", address, client) { result in
                switch result {
                case let .success(json):
                    backend.reachable = true
                    backend.models = parseOpenAIModels(json)
                    // An OpenAI-compatible server serves what it has in memory: its models are hot.
                    backend.loaded = backend.models.map { Heartbeat.LoadedModel(name: $0.name, sizeBytes: $0.sizeBytes,
                                                                                contextLength: contextLength(json, model: $0.name)) }
                case let .failure(error):
                    backend.error = error.message
                    return completion(backend, error.unanswered)
                }
                // llama.cpp's server says how many requests it serves at once; others answer 404.
                get(prefix + "/props", address, client) { result in
                    if case let .success(props) = result {
                        backend.parallel = parseProps(props)
                        if let vision = propsVision(props) { backend.models = backend.models.map { withVision($0, vision) } }
                    }
                    completion(backend, false)
                }
            }
        }
    }

    /// What is known of a backend before a probe answers: not reachable, at its address.
    static func unprobed(_ target: BackendTarget, address: SocketAddress?, error: String? = nil) -> Heartbeat.Backend {
        Heartbeat.Backend(kind: target.kind, url: target.url.description,
                          address: address.map(\.description) ?? "\(target.url.host):\(target.url.port)", reachable: false, error: error)
    }

    /// The backend's queue gauges from its `/metrics` (llama.cpp's server
    /// with `--metrics`, vLLM, SGLang, TGI): nil when it has none (404, no
    /// known names) or the answer is not usable. The text is bounded (1 MiB).
    static func queueGauges(_ target: BackendTarget, address: SocketAddress, client: HTTPClient,
                            completion: @escaping (Heartbeat.QueueGauges?) -> Void) {
        client.collect(HTTPClientRequest(method: "GET", target: target.url.path + "/metrics"), to: address, limit: 1024 * 1024) { result in
            guard case let .success(response) = result, response.status == 200 else { return completion(nil) }
            completion(QueueGaugeReader.parse(response.body))
        }
    }

    /// `/api/tags` → models on disk.
    static func parseTags(_ json: JSONValue) -> [Heartbeat.Model] {
        (json["models"]?.arrayValue ?? []).compactMap { m in
            guard let name = m["name"]?.stringValue ?? m["model"]?.stringValue else { return nil }
            return Heartbeat.Model(name: name, sizeBytes: m["size"]?.intValue ?? 0, digest: m["digest"]?.stringValue ?? "",
                                   modifiedAt: m["modified_at"]?.stringValue ?? "", details: m["details"] ?? [:])
        }
    }

    /// llama.cpp's `/props` → `total_slots` (1–1024), its parallel requests.
    static func parseProps(_ json: JSONValue) -> Int? {
        guard let slots = json["total_slots"]?.intValue, (1...1024).contains(slots) else { return nil }
        return slots
    }

    /// An OpenAI-compatible server's `/v1/models` → its models. What llama.cpp's
    /// server says besides the ids is kept, bounded: the weights' size
    /// (`meta.size`) and what the model reads (`architecture.input_modalities`:
    /// with `image` it has the vision capability, without it not; unsaid,
    /// nothing is known and requests with images are not refused on its account).
    static func parseOpenAIModels(_ json: JSONValue) -> [Heartbeat.Model] {
        (json["data"]?.arrayValue ?? []).prefix(1024).compactMap { entry in
            guard let id = entry["id"]?.stringValue else { return nil }
            let size = entry["meta"]?["size"]?.intValue.flatMap { (1...(1 << 44)).contains($0) ? $0 : nil } ?? 0
            var capabilities: [String] = []
            if let inputs = entry["architecture"]?["input_modalities"]?.arrayValue {
                capabilities = ["completion"] + (inputs.contains { $0.stringValue == "image" } ? ["vision"] : [])
            }
            return Heartbeat.Model(name: id, sizeBytes: size, capabilities: capabilities)
        }
    }

    /// The context `model` is served with (llama.cpp's `meta.n_ctx`, 1–16M tokens), else 0.
    static func contextLength(_ json: JSONValue, model: String) -> Int {
        guard let entry = (json["data"]?.arrayValue ?? []).prefix(1024).first(where: { $0["id"]?.stringValue == model }),
              let context = entry["meta"]?["n_ctx"]?.intValue, (1...(1 << 24)).contains(context) else { return 0 }
        return context
    }

    /// llama.cpp's `/props` → `modalities.vision`, whether the model it serves sees images.
    static func propsVision(_ json: JSONValue) -> Bool? {
        guard case let .bool(vision)? = json["modalities"]?["vision"] else { return nil }
        return vision
    }

    /// `model` with the vision capability set to `vision` (and `completion`, which it serves).
    static func withVision(_ model: Heartbeat.Model, _ vision: Bool) -> Heartbeat.Model {
        var model = model
        var capabilities = model.capabilities.filter { $0 != "vision" }
        if !capabilities.contains("completion") { capabilities.insert("completion", at: 0) }
        if vision { capabilities.append("vision") }
        model.capabilities = capabilities
        return model
    }

    /// `/api/ps` → loaded models with their memory and context.
    static func parsePS(_ json: JSONValue) -> [Heartbeat.LoadedModel] {
        (json["models"]?.arrayValue ?? []).compactMap { m in
            guard let name = m["name"]?.stringValue ?? m["model"]?.stringValue else { return nil }
            return Heartbeat.LoadedModel(name: name, sizeBytes: m["size"]?.intValue ?? 0, vramBytes: m["size_vram"]?.intValue ?? 0,
                                         contextLength: m["context_length"]?.intValue ?? 0, expiresAt: m["expires_at"]?.stringValue ?? "")
        }
    }

    private static func get(_ path: String, _ address: SocketAddress, _ client: HTTPClient, _ completion: @escaping (Result<JSONValue, ProbeFailure>) -> Void) {
        client.collect(HTTPClientRequest(method: "GET", target: path), to: address) { result in
            switch result {
            case let .success(response):
                guard response.status == 200 else { return completion(.failure(ProbeFailure(message: "GET \(path): status \(response.status)"))) }
                do {
                    completion(.success(try JSONValue.parse(response.body)))
                } catch {
                    completion(.failure(ProbeFailure(message: "GET \(path): \(error)")))
                }
            case let .failure(error):
                completion(.failure(ProbeFailure(message: "GET \(path): \(error)", unanswered: ProbeFailure.unanswered(error))))
            }
        }
    }
}

/// When each OpenAI-compatible backend's models are asked for again: every
/// `interval`, never while the router has requests on the node (asking can
/// interrupt them), at once when a backend answers again after failing (it
/// may have restarted with other models), and on every beat until an ask
/// succeeds. A value; times are the agent's milliseconds.
struct ModelProbeSchedule {
    private var lastFull: [Int: UInt64] = [:]
    private var failed: Set<Int> = []
    /// What the last full probe found, reported on the beats between.
    private var found: [Int: (models: [Heartbeat.Model], loaded: [Heartbeat.LoadedModel], parallel: Int?)] = [:]

    func due(index: Int, now: UInt64, interval: UInt64, routerInFlight: Int) -> Bool {
        guard let last = lastFull[index] else { return true }
        if failed.contains(index) { return routerInFlight == 0 }
        return routerInFlight == 0 && (now < last || now - last >= interval)
    }

    /// Notes a probe's report; a `/health`-only one that answered gets the models last found.
    mutating func probed(index: Int, full: Bool, report: inout Heartbeat.Backend, now: UInt64) {
        guard report.reachable else {
            failed.insert(index)
            return
        }
        if full {
            lastFull[index] = now
            failed.remove(index)
            found[index] = (report.models, report.loaded, report.parallel)
        } else if let known = found[index] {
            report.models = known.models
            report.loaded = known.loaded
            report.parallel = known.parallel
        }
    }
}

/// Why a probe request failed, in words for the heartbeat's `error`.
struct ProbeFailure: Error {
    let message: String
    /// The server took the connection and did not answer in time (busy), rather than refusing it or answering nonsense.
    var unanswered = false

    static func unanswered(_ error: HTTPClientError) -> Bool {
        switch error {
        case .firstByteTimeout, .readTimeout, .totalTimeout: true
        default: false
        }
    }
}

/// What each backend last answered it serves, kept through failed probes
/// for `keepMilliseconds`: a backend briefly gone is reported unreachable
/// *with* its models, so the router answers 503 with `Retry-After` for them
/// rather than a false 404 "not in the fleet". One that took the probe and
/// did not answer while the router had requests on the node is *busy* with
/// them (a one-slot CPU server — llama-cpp-python, a whisper server —
/// answers nothing until its job ends): reported reachable with those
/// models, so requests for it wait in the router's queue for its slot
/// instead of being refused. A value; times are the agent's milliseconds.
struct LastKnownModels {
    static let keepMilliseconds: UInt64 = 10 * 60_000

    private var last: [Int: (models: [Heartbeat.Model], loaded: [Heartbeat.LoadedModel], at: UInt64)] = [:]

    /// Remembers a report that answered; gives one that did not the models
    /// last answered (while recent); `busy`: it did not answer while serving
    /// the router's requests — reachable, with those models.
    mutating func fill(_ backend: inout Heartbeat.Backend, index: Int, now: UInt64, busy: Bool = false) {
        if backend.reachable {
            last[index] = (backend.models, backend.loaded, now)
            return
        }
        guard let known = last[index], now >= known.at, now - known.at <= LastKnownModels.keepMilliseconds else { return }
        if backend.models.isEmpty, backend.loaded.isEmpty {
            backend.models = known.models
            backend.loaded = known.loaded
        }
        if busy {
            backend.reachable = true
            backend.error = "busy: " + (backend.error ?? "no answer")
        }
    }
}
