import HerdWire

/// A node that could serve a request, with the terms that ranked it.
struct RouteCandidate: Equatable, Sendable {
    var node: String
    var address: String
    var backend: BackendKind
    /// The model name as that backend knows it.
    var model: String
    var hot: Bool
    var inFlight: Int
    var limit: Int
    var memoryAvailableBytes: Int
    var degraded: Bool
    /// In a meeting, hot or throttled, or short of memory: used after the others.
    var strained: Bool = false
    /// A counter of when this node:model last got a request (0: never).
    var lastRouted: UInt64 = 0

    var hasCapacity: Bool { inFlight < limit }

    /// `hot=1 in_flight=2/4 mem=12.0GB`: the decision, for headers and traces.
    var reason: String {
        let gb = Double(memoryAvailableBytes) / 1e9
        return "hot=\(hot ? 1 : 0) in_flight=\(inFlight)/\(limit) mem_free_gb=\((gb * 10).rounded() / 10)\(degraded ? " degraded" : "")\(strained ? " strained" : "")"
    }
}

/// What to do with a request.
enum RouteDecision: Equatable, Sendable {
    /// Send it to this candidate now.
    case route(RouteCandidate)
    /// Every node that has `model` is at its limit: wait for a slot.
    case queue(model: String)
    /// No node has the model nor any fallback; `known` lists the models that exist.
    case notFound(known: [String])
    /// Nodes have the model but none is reachable (offline, excluded after failures).
    case noNode
}

/// The routing policy: a pure function of the fleet, the load and the request.
///
/// Elimination: offline nodes, nodes already tried (retries), unreachable
/// backends, backends of a kind the API cannot use, nodes without the model,
/// a cold model on a node under critical memory pressure. Nodes in a meeting
/// (camera/microphone), running hot or throttled, or short of memory are
/// "strained": used only after the others.
/// Then, for the requested model and each fallback in order, the first with a
/// free, hot (loaded) candidate wins; else the first with any free candidate.
/// Candidates rank: online before degraded, hot first, fewest in flight, then
/// the one routed to least recently, then most free memory. (The full scoring
/// engine is its own issue.)
enum RoutePolicy {
    static func decide(
        api: ClientAPI, models: [String], nodes: [FleetNode], excluded: Set<String>,
        inFlight: (String, String) -> Int, lastRouted: (String, String) -> UInt64 = { _, _ in 0 }, limit: (String, String) -> Int
    ) -> RouteDecision {
        var candidatesByModel: [(String, [RouteCandidate])] = []
        var anyoneHasIt = false
        for model in models {
            var candidates: [RouteCandidate] = []
            for node in nodes {
                for backend in node.heartbeat.backends where backend.kind.serves(api) {
                    guard let name = backend.models.first(where: { ModelName.same($0.name, model) })?.name
                        ?? backend.loaded.first(where: { ModelName.same($0.name, model) })?.name else { continue }
                    anyoneHasIt = true
                    guard node.status != .offline, backend.reachable, !excluded.contains(node.id) else { continue }
                    let hot = backend.loaded.contains { ModelName.same($0.name, model) }
                    let telemetry = node.heartbeat.telemetry
                    // Critical memory pressure: serve what is loaded, load nothing new there.
                    if telemetry.pressure == .critical, !hot { continue }
                    let strained = telemetry.inMeeting || telemetry.thermal >= .serious || telemetry.pressure >= .high
                    candidates.append(RouteCandidate(
                        node: node.id, address: backend.address, backend: backend.kind, model: name, hot: hot,
                        inFlight: inFlight(node.id, ModelName.canonical(model)), limit: limit(node.id, ModelName.canonical(model)),
                        memoryAvailableBytes: node.heartbeat.memoryAvailableBytes, degraded: node.status == .degraded,
                        strained: strained, lastRouted: lastRouted(node.id, ModelName.canonical(model))))
                    break // one backend per node and model
                }
            }
            candidates.sort(by: better)
            candidatesByModel.append((model, candidates))
        }
        if !anyoneHasIt { return .notFound(known: knownModels(nodes, api: api)) }
        if let (_, candidates) = candidatesByModel.first(where: { $0.1.contains { $0.hot && $0.hasCapacity } }),
           let best = candidates.first(where: { $0.hot && $0.hasCapacity }) {
            return .route(best)
        }
        if let (_, candidates) = candidatesByModel.first(where: { $0.1.contains(where: \.hasCapacity) }),
           let best = candidates.first(where: \.hasCapacity) {
            return .route(best)
        }
        if let (model, _) = candidatesByModel.first(where: { !$0.1.isEmpty }) { return .queue(model: model) }
        return .noNode
    }

    /// Ranking order of candidates of one model.
    static func better(_ a: RouteCandidate, _ b: RouteCandidate) -> Bool {
        if a.degraded != b.degraded { return !a.degraded }
        if a.strained != b.strained { return !a.strained }
        if a.hot != b.hot { return a.hot }
        if a.inFlight != b.inFlight { return a.inFlight < b.inFlight }
        // Equal load: the one that waited longest goes next (turns), then free memory.
        if a.lastRouted != b.lastRouted { return a.lastRouted < b.lastRouted }
        if a.memoryAvailableBytes != b.memoryAvailableBytes { return a.memoryAvailableBytes > b.memoryAvailableBytes }
        return a.node < b.node
    }

    /// Every model name the fleet has for this API (for 404 answers).
    static func knownModels(_ nodes: [FleetNode], api: ClientAPI) -> [String] {
        var names = Set<String>()
        for node in nodes where node.status != .offline {
            for backend in node.heartbeat.backends where backend.kind.serves(api) {
                for model in backend.models { names.insert(model.name) }
            }
        }
        return names.sorted()
    }
}
