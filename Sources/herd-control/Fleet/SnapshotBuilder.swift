import HerdJSON
import HerdRouting
import HerdWire

/// Builds the routing snapshot pushed to proxies: per node, its backends and
/// models, and the fleet-wide listings (`/api/tags`, `/api/ps`, `/v1/models`)
/// with one entry per model (`llama3` and `llama3:latest` are one: `ModelName`).
enum SnapshotBuilder {
    static func build(version: Int, nodes: [FleetNode]) -> RoutingSnapshot {
        var snapshotNodes: [RoutingSnapshot.Node] = []
        var tags: [String: JSONValue] = [:]
        var ps: [String: JSONValue] = [:]
        var openAI: [String: JSONValue] = [:]
        var ollamaVersion = "0.0.0"
        for node in nodes.sorted(by: { $0.id < $1.id }) {
            // A held node is not routed to by a proxy on its own either.
            let gpuBytes = node.heartbeat.telemetry.gpus.reduce(0) { $0.addingSaturated($1.memoryTotalBytes) }
            snapshotNodes.append(RoutingSnapshot.Node(id: node.id, status: node.hold?.label ?? node.status.rawValue, backends: node.heartbeat.backends.map { b in
                RoutingSnapshot.Backend(kind: b.kind, address: b.address, models: b.models.map(\.name), loaded: b.loaded.map(\.name))
            }, memoryBytes: gpuBytes > 0 ? gpuBytes : node.heartbeat.memoryTotalBytes))
            guard node.status != .offline else { continue }
            // A backend that did not answer its node's last probe (busy with a
            // long job: a CPU whisper transcribing, a one-slot server mid-answer)
            // is listed with the models it last answered (its node keeps them
            // ten minutes, `LastKnownModels`): a request for one gets a 503
            // with Retry-After while it is away, not a 404, and a client's
            // model list does not flicker. Answering backends' entries come first.
            let answering = node.heartbeat.backends.filter(\.reachable)
            for backend in answering + node.heartbeat.backends.filter({ !$0.reachable }) {
                if backend.reachable, backend.kind == .ollama, let version = backend.version, versionIsNewer(version, than: ollamaVersion) {
                    ollamaVersion = version
                }
                // Speech, image and rerank servers' models are not Ollama models: only in /v1/models.
                let ollamaListed = backend.kind == .ollama || backend.kind == .openai || backend.kind == .embed
                for model in backend.models {
                    let key = ModelName.canonical(model.name)
                    if ollamaListed, tags[key] == nil {
                        // An OpenAI-compatible server's model is listed too (the proxy translates Ollama-API requests to it).
                        tags[key] = ["name": .string(model.name), "model": .string(model.name),
                                     "modified_at": .string(model.modifiedAt.isEmpty ? "1970-01-01T00:00:00Z" : model.modifiedAt),
                                     "size": .int(model.sizeBytes), "digest": .string(model.digest),
                                     "details": backend.kind == .ollama ? model.details : SnapshotBuilder.openAIDetails]
                    }
                    if openAI[key] == nil {
                        openAI[key] = ["id": .string(model.name), "object": "model", "created": .int(0), "owned_by": .string(node.id),
                                       "herd_kind": .string(SnapshotBuilder.work(backend.kind, model).rawValue)]
                    }
                }
                // An OpenAI-compatible server's models are all loaded (its node says so), with no expiry.
                for model in backend.loaded where ollamaListed && ps[ModelName.canonical(model.name)] == nil {
                    let details = backend.models.first { ModelName.same($0.name, model.name) }
                    let ollama = backend.kind == .ollama
                    ps[ModelName.canonical(model.name)] = ["name": .string(model.name), "model": .string(model.name), "size": .int(model.sizeBytes),
                                      "digest": .string(details?.digest ?? ""), "details": ollama ? details?.details ?? [:] : SnapshotBuilder.openAIDetails,
                                      "expires_at": .string(ollama || !model.expiresAt.isEmpty ? model.expiresAt : "2999-01-01T00:00:00Z"),
                                      "size_vram": .int(model.vramBytes), "context_length": .int(model.contextLength)]
                }
            }
        }
        return RoutingSnapshot(
            version: version, nodes: snapshotNodes,
            tags: ["models": .array(tags.keys.sorted().map { tags[$0]! })],
            ps: ["models": .array(ps.keys.sorted().map { ps[$0]! })],
            openAIModels: ["object": "list", "data": .array(openAI.keys.sorted().map { openAI[$0]! })],
            ollamaVersion: ollamaVersion)
    }

    /// The kind of work a model does, for listings: its backend's kind, or for
    /// Ollama and general OpenAI-compatible servers what the model says it can
    /// (Ollama `capabilities`: an embedding model without `completion` embeds).
    static func work(_ kind: BackendKind, _ model: Heartbeat.Model) -> WorkKind {
        switch kind {
        case .stt: .stt
        case .tts: .tts
        case .image: .image
        case .embed: .embed
        case .rerank: .rerank
        case .ollama, .openai:
            model.capabilities.contains("embedding") && !model.capabilities.contains("completion") ? .embed
                : model.capabilities.contains("audio") && !model.capabilities.contains("completion") ? .stt : .chat
        }
    }

    /// What `/api/tags` says of a model an OpenAI-compatible server serves (it says nothing of it).
    static let openAIDetails: JSONValue = ["parent_model": "", "format": "gguf", "family": "", "families": nil, "parameter_size": "",
                                           "quantization_level": ""]

    /// Compares dotted versions numerically (`0.12.10` > `0.12.9`).
    static func versionIsNewer(_ a: String, than b: String) -> Bool {
        let x = a.split(separator: ".").map { Int($0.prefix { $0.isNumber }) ?? 0 }
        let y = b.split(separator: ".").map { Int($0.prefix { $0.isNumber }) ?? 0 }
        for i in 0..<max(x.count, y.count) {
            let p = i < x.count ? x[i] : 0, q = i < y.count ? y[i] : 0
            if p != q { return p > q }
        }
        return false
    }
}
