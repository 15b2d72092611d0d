import HerdWire

/// Routing without control (it is away): from the last snapshot, the first
/// model (requested, then fallbacks) that an online (else degraded) node has,
/// on the node with the fewest of this proxy's requests in flight; loaded
/// models first. No queuing. Pure.
enum LocalPolicy {
    static func choose(
        snapshot: RoutingSnapshot, api: ClientAPI, models: [String], excluded: Set<String>, inFlight: (String) -> Int, id: UInt64,
        work: WorkKind = .chat
    ) -> RouteAnswer? {
        for model in models {
            var best: (node: RoutingSnapshot.Node, backend: RoutingSnapshot.Backend, name: String, rank: (Int, Int, Int))?
            for node in snapshot.nodes where (node.status == "online" || node.status == "degraded") && !excluded.contains(node.id) {
                for backend in node.backends where backend.kind.serves(api) && backend.kind.serves(work) {
                    guard let name = backend.models.first(where: { ModelName.same($0, model) }) ?? backend.loaded.first(where: { ModelName.same($0, model) }) else { continue }
                    let hot = backend.loaded.contains { ModelName.same($0, model) }
                    let rank = (node.status == "online" ? 0 : 1, hot ? 0 : 1, inFlight(backend.address))
                    if best == nil || rank < best!.rank { best = (node, backend, name, rank) }
                    break
                }
            }
            if let best {
                return RouteAnswer(id: id, node: best.node.id, upstream: best.backend.address, backend: best.backend.kind,
                                   model: best.name, reason: "local policy (control unreachable)")
            }
        }
        return nil
    }

    /// Why nothing could be chosen: no fleet known yet, a known model with no
    /// reachable node (503), or a model the fleet does not have (404).
    static func refusal(snapshot: RoutingSnapshot, api: ClientAPI, models: [String], id: UInt64) -> RouteRefusal {
        let known = knownModels(snapshot, api: api)
        if snapshot.nodes.isEmpty {
            return RouteRefusal(id: id, code: .noNode, message: "herd-control is not reachable and no fleet is known yet", retryAfter: 2)
        }
        if models.contains(where: { model in known.contains { ModelName.same($0, model) } }) {
            return RouteRefusal(id: id, code: .noNode, message: "no reachable node can serve '\(models[0])'", retryAfter: 5)
        }
        return RouteRefusal(id: id, code: .modelNotFound, message: "model '\(models[0])' not found in the fleet", models: known)
    }

    static func knownModels(_ snapshot: RoutingSnapshot, api: ClientAPI) -> [String] {
        Set(snapshot.nodes.flatMap { $0.backends.filter { $0.kind.serves(api) }.flatMap(\.models) }).sorted()
    }
}
