import HerdBounds
import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdRouting
import HerdSecurity
import HerdWire

/// herd-control's HTTP endpoints on `:11436`: heartbeats from nodes, health,
/// and the fleet as JSON. Loop-thread only.
final class ControlAPI {
    private let registry: NodeRegistry
    private let routes: ControlServer
    private let loop: EventLoop
    /// The loop's clock, or a test's.
    private let clock: any LoopClock
    private let log: Logger
    /// Called when a heartbeat changed what routing sees.
    private let onFleetChange: () -> Void
    /// Called after every accepted heartbeat, with the node's id and whether it is new.
    private let onHeartbeat: (String, Bool) -> Void
    /// Request counters for `/metrics`.
    let metrics: ControlMetrics
    /// The fleet key: when one is set, heartbeats must be signed with it.
    private let gate: FleetKeyGate
    /// The trace store, for its health in /health and /metrics.
    private let traces: TraceStore?
    /// Heartbeats of new nodes refused because the fleet was full (in /metrics).
    private(set) var refusedNewNodes = 0
    private var lastFullWarning: UInt64 = 0

    /// Host and cross-site checks on every request.
    let requestGuard: RequestGuard

    init(loop: EventLoop, clock: any LoopClock, registry: NodeRegistry, routes: ControlServer, log: Logger, metrics: ControlMetrics,
         requestGuard: RequestGuard,
         gate: FleetKeyGate, traces: TraceStore?, fleetAPI: FleetAPI, keysAPI: KeysAPI, onFleetChange: @escaping () -> Void,
         onHeartbeat: @escaping (String, Bool) -> Void) {
        self.requestGuard = requestGuard
        self.metrics = metrics
        self.loop = loop
        self.clock = clock
        self.registry = registry
        self.routes = routes
        self.log = log
        self.gate = gate
        self.traces = traces
        self.fleetAPI = fleetAPI
        self.keysAPI = keysAPI
        self.onFleetChange = onFleetChange
        self.onHeartbeat = onHeartbeat
    }

    /// `/api/v1/…`.
    private let fleetAPI: FleetAPI
    /// `/api/v1/keys…`.
    private let keysAPI: KeysAPI
    /// `/api/v1/benchmarks`.
    var benchmarksAPI: BenchmarksAPI?
    /// `/`, `/app.js`, …
    let dashboard = Dashboard()

    func handle(_ exchange: HTTPExchange) {
        let path = exchange.head.path
        if let refusal = requestGuard.refusal(method: exchange.head.method, headers: exchange.head.headers) {
            respond(exchange, refusal.status, ["error": .string(refusal.message)])
            return
        }
        if KeysAPI.serves(path) {
            keysAPI.handle(exchange)
            return
        }
        if BenchmarksAPI.serves(path), let benchmarksAPI {
            benchmarksAPI.handle(exchange)
            return
        }
        if path.hasPrefix("/api/v1/") {
            fleetAPI.handle(exchange)
            return
        }
        switch (exchange.head.method, path) {
        case ("POST", "/heartbeat"):
            exchange.collectBody { [unowned self] body in self.heartbeat(exchange, body) }
        case ("GET", "/health"), ("HEAD", "/health"):
            // Degraded, not down: routing works; what fails is said.
            let problems = [traces?.problem(now: Int(clamping: EventLoop.wallClockMilliseconds()))].compactMap { $0 }
            respond(exchange, 200, ["status": .string(problems.isEmpty ? "ok" : "degraded"), "version": .string(HerdVersion.current),
                                    "nodes": .int(registry.nodes.count), "proxies": .int(routes.proxyCount),
                                    "problems": .strings(problems)])
        case ("GET", "/api/fleet"):
            respond(exchange, 200, fleetJSON())
        case ("GET", "/api/decisions"):
            // ?since=<seq> (what the reader has seen), ?limit=<n> (≤ 256).
            let since = exchange.head.queryValue("since").flatMap { UInt64($0) } ?? 0
            let limit = min(256, max(0, exchange.head.queryValue("limit").flatMap { Int($0) } ?? 256))
            exchange.respond(status: 200, headers: ["Content-Type": "application/json; charset=utf-8"],
                             body: routes.scheduler.feed.json(since: since, limit: limit))
        case ("GET", "/metrics"):
            let scheduler = routes.scheduler
            let state = MetricsState(
                nodes: registry.list, inFlight: scheduler.inFlightCount, queueLength: scheduler.queueLength, proxies: routes.proxyCount,
                numCtx: scheduler.numCtxEvents, prewarms: scheduler.prewarmCount, scorings: scheduler.scorings, tickets: scheduler.ticketCounts,
                ticketsOut: scheduler.ticketsOut, traces: traces?.counts, learned: scheduler.learnedLimits,
                health: fleetAPI.health.checks.map { ($0.id, $0.severity.rawValue, fleetAPI.health.states[$0.id]?.firing ?? false) },
                cache: routes.cacheStats, keys: keysAPI.metrics)
            exchange.respond(status: 200, headers: ["Content-Type": "text/plain; version=0.0.4; charset=utf-8"], body: metrics.text(state))
        case ("GET", _) where dashboard.serve(exchange, path: path), ("HEAD", _) where dashboard.serve(exchange, path: path):
            break
        case (_, "/heartbeat"), (_, "/health"), (_, "/api/fleet"), (_, "/api/decisions"), (_, "/metrics"):
            respond(exchange, 405, ["error": .string("\(exchange.head.method) is not allowed on \(path)")])
        default:
            respond(exchange, 404, ["error": .string("no endpoint \(path)")])
        }
    }

    private func heartbeat(_ exchange: HTTPExchange, _ body: [UInt8]) {
        if let verifier = gate.verifier {
            do {
                try verifier.verify(method: "POST", path: "/heartbeat", timestamp: exchange.head.headers[FleetKey.timestampHeader],
                                    signature: exchange.head.headers[FleetKey.signatureHeader], body: body,
                                    now: Int(clamping: EventLoop.wallClockMilliseconds()))
            } catch {
                log.warning("refused heartbeat from \(exchange.remoteAddress?.description ?? "?"): \(error)")
                respond(exchange, 401, ["error": .string(error.description)])
                return
            }
        }
        let heartbeat: Heartbeat
        do {
            heartbeat = try Heartbeat(json: try JSONValue.parse(body))
        } catch {
            log.warning("refused heartbeat from \(exchange.remoteAddress?.description ?? "?"): \(error)")
            respond(exchange, 400, ["error": .string("invalid heartbeat: \(error)")])
            return
        }
        let known = registry.nodes[heartbeat.nodeID] != nil
        defer { registry.noteClock(node: heartbeat.nodeID, sentAt: heartbeat.sentAtMilliseconds, wallNow: Int(clamping: EventLoop.wallClockMilliseconds())) }
        switch registry.admit(heartbeat, now: clock.now) {
        case .accepted(changed: true):
            if !known { log.info("node \(heartbeat.nodeID) joined with \(heartbeat.backends.count) backend(s)") }
            onFleetChange()
        case .accepted(changed: false):
            break
        case .fleetFull:
            refusedNewNodes += 1
            let now = clock.now
            if now >= lastFullWarning + 60_000 || lastFullWarning == 0 {
                lastFullWarning = now
                log.warning("refused new node \(heartbeat.nodeID) from \(exchange.remoteAddress?.description ?? "?"): the fleet has \(registry.settings.maxNodes) nodes (--max-nodes); \(refusedNewNodes) refused so far")
            }
            respond(exchange, 503, ["error": .string("the fleet is full (\(registry.settings.maxNodes) nodes, none offline); raise --max-nodes on the router")])
            return
        }
        onHeartbeat(heartbeat.nodeID, !known)
        routes.gauges(heartbeat)
        // The requests in flight on the node: its agent does not ask a backend
        // anything that could disturb them (llama-cpp-python's /v1/models).
        respond(exchange, 200, ["ok": true, "node_id": .string(heartbeat.nodeID), "interval_ms": .int(heartbeat.interval),
                                "in_flight": .int(routes.scheduler.inFlight(node: heartbeat.nodeID))])
    }

    private func fleetJSON() -> JSONValue {
        let now = clock.now
        return ["nodes": .array(registry.nodes.values.sorted { $0.id < $1.id }.map { node in
            let hb = node.heartbeat
            return ["id": .string(node.id), "status": .string(node.status.rawValue),
                    "last_seen_ms_ago": .int(Int(clamping: now - min(now, node.lastSeenMilliseconds))),
                    "agent_version": .string(hb.agentVersion),
                    "cpu": ["cores": .int(hb.cpuCores), "utilization": .number(hb.cpuUtilization)],
                    "memory": ["total_bytes": .int(hb.memoryTotalBytes), "available_bytes": .int(hb.memoryAvailableBytes)],
                    "in_flight": .int(routes.scheduler.inFlight(node: node.id)),
                    "concurrency": .object(routes.scheduler.learnedLimits.filter { $0.node == node.id }.map { ($0.model, .int($0.limit)) }),
                    "telemetry": hb.telemetry.json,
                    "capacity": hb.capacity?.json ?? .null,
                    "backends": .array(hb.backends.map { b in
                        var members: [(String, JSONValue)] = [
                            ("kind", .string(b.kind.rawValue)), ("address", .string(b.address)), ("reachable", .bool(b.reachable)),
                            ("models", .strings(b.models.map(\.name))), ("loaded", .strings(b.loaded.map(\.name))),
                        ]
                        if let parallel = b.parallel { members.append(("parallel", .int(parallel))) }
                        let capable = b.models.filter { !$0.capabilities.isEmpty }
                        if !capable.isEmpty { members.append(("capabilities", .object(capable.map { ($0.name, .strings($0.capabilities)) }))) }
                        return JSONValue.object(members)
                    })]
        }), "queue_length": .int(routes.scheduler.queueLength), "in_flight": .int(routes.scheduler.inFlightCount)]
    }

    private func respond(_ exchange: HTTPExchange, _ status: Int, _ body: JSONValue) {
        var bytes: [UInt8] = []
        body.write(to: &bytes)
        exchange.respond(status: status, headers: ["Content-Type": "application/json; charset=utf-8"], body: bytes)
    }
}
