import HerdBounds
import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdRouting
import HerdWire

/// `GET /api/v1/…`: everything the dashboard shows, as JSON (documented in
/// `ControlAPI.md`). Live state comes from memory; traces and usage from
/// SQLite, read on a worker thread. Loop-thread only.
final class FleetAPI {
    private let loop: EventLoop
    /// The loop's clock, or a test's.
    private let clock: any LoopClock
    private let registry: NodeRegistry
    private let routes: ControlServer
    let stats: RequestStats
    let health: HealthMonitor
    private let options: ControlOptions
    /// The trace database (nil: traces off).
    private let tracePath: String?
    /// The fleet key: state-changing requests need it when one is set.
    private let gate: FleetKeyGate
    /// `GET /api/v1/events`.
    private let events: EventHub
    /// A node's hold changed (routing must hear of it).
    private let onHoldChange: (String, Hold?) -> Void
    private let log: Logger
    private let startedAt: UInt64
    /// Pull and delete on a node, for the Models view.
    private lazy var modelActions = ModelActions(loop: loop, routes: routes, clock: clock)

    init(loop: EventLoop, clock: any LoopClock, registry: NodeRegistry, routes: ControlServer, stats: RequestStats, health: HealthMonitor,
         options: ControlOptions,
         tracePath: String?, gate: FleetKeyGate, events: EventHub, log: Logger, onHoldChange: @escaping (String, Hold?) -> Void) {
        self.loop = loop
        self.clock = clock
        self.registry = registry
        self.routes = routes
        self.stats = stats
        self.health = health
        self.options = options
        self.tracePath = tracePath
        self.gate = gate
        self.events = events
        self.log = log
        self.onHoldChange = onHoldChange
        startedAt = clock.now
    }

    /// The totals of the `stats` event (the last minute, what is in flight and queued, checks firing).
    static func statsEvent(stats: RequestStats, routes: ControlServer, health: HealthMonitor, now: UInt64) -> JSONValue {
        let minute = stats.total(minutes: 1, now: now)
        return [
            "in_flight": .int(routes.scheduler.inFlightCount), "queue_length": .int(routes.scheduler.queueLength),
            "requests_per_s": number(Double(minute.requests) / 60), "tokens_per_s": number(Double(minute.completionTokens) / 60),
            "errors_last_minute": .int(minute.errors), "health_firing": .int(health.firing.count),
        ]
    }

    func handle(_ exchange: HTTPExchange) {
        let path = exchange.head.path
        let parts = path.dropFirst("/api/v1/".count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if exchange.head.method == "POST", parts.count == 3, parts[0] == "nodes" {
            exchange.collectBody { [weak self] body in self?.nodeAction(exchange, node: parts[1], action: parts[2], body: body) }
            return
        }
        guard exchange.head.method == "GET" || exchange.head.method == "HEAD" else {
            respond(exchange, 405, ["error": .string("\(exchange.head.method) is not allowed on \(Logger.escape(String(path), limit: 100))")])
            return
        }
        switch parts.first ?? "" {
        case "fleet" where parts.count == 1: respond(exchange, 200, fleet())
        case "nodes" where parts.count == 1:
            let recent = stats.bySlot(minutes: 5, now: now)
            respond(exchange, 200, ["nodes": .array(sortedNodes.map { node($0, recent: recent) })])
        case "nodes" where parts.count == 2:
            guard let found = registry.nodes[parts[1]] else { return notFound(exchange, "node") }
            respond(exchange, 200, node(found, recent: stats.bySlot(minutes: 5, now: now)))
        case "models" where parts.count == 1: respond(exchange, 200, models())
        case "queues" where parts.count == 1: respond(exchange, 200, queues())
        case "decisions" where parts.count == 1:
            let since = exchange.head.queryValue("since").flatMap { UInt64($0) } ?? 0
            let limit = min(256, max(0, exchange.head.queryValue("limit").flatMap { Int($0) } ?? 256))
            exchange.respond(status: 200, headers: Self.jsonHeaders, body: routes.scheduler.feed.json(since: since, limit: limit))
        case "traces" where parts.count == 1: traces(exchange)
        case "traces" where parts.count == 2:
            guard let id = Int(parts[1]) else { return notFound(exchange, "trace") }
            trace(exchange, id: id)
        case "usage" where parts.count == 1: usage(exchange)
        case "capacity" where parts.count == 1: respond(exchange, 200, capacity())
        case "health" where parts.count == 1: respond(exchange, 200, healthJSON())
        case "settings" where parts.count == 1: respond(exchange, 200, settings())
        case "events" where parts.count == 1:
            events.subscribe(exchange, hello: fleet())
        default: respond(exchange, 404, ["error": .string("no endpoint \(Logger.escape(String(path), limit: 100)); see GET /api/v1/ in ControlAPI.md")])
        }
    }

    static let jsonHeaders: HTTPHeaders = ["Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"]

    private func respond(_ exchange: HTTPExchange, _ status: Int, _ body: JSONValue) {
        var bytes: [UInt8] = []
        body.write(to: &bytes)
        exchange.respond(status: status, headers: Self.jsonHeaders, body: bytes)
    }

    private func notFound(_ exchange: HTTPExchange, _ what: String) {
        respond(exchange, 404, ["error": .string("no such \(what)")])
    }

    private var sortedNodes: [FleetNode] { registry.nodes.values.sorted { $0.id < $1.id } }
    private var now: UInt64 { clock.now }

    private static func number(_ value: Double?) -> JSONValue {
        guard let value, value.isFinite else { return .null }
        return .number((value * 1000).rounded() / 1000)
    }

    // MARK: Fleet and nodes

    private func fleet() -> JSONValue {
        let minute = stats.total(minutes: 1, now: now)
        let counts = Dictionary(grouping: registry.nodes.values, by: \.status).mapValues(\.count)
        let firing = health.firing
        return [
            "router": ["version": .string(HerdVersion.current), "uptime_s": .int(Int(clamping: (now - startedAt) / 1000)),
                       "fleet_key": .bool(gate.isSet),
                       "proxies": ["expected": .int(options.proxies), "connected": .int(routes.proxyCount)]],
            "nodes": ["online": .int(counts[.online] ?? 0), "degraded": .int(counts[.degraded] ?? 0), "offline": .int(counts[.offline] ?? 0)],
            "models_loaded": .int(Set(registry.nodes.values.filter { $0.status != .offline }
                .flatMap { $0.heartbeat.backends.flatMap { $0.loaded.map { ModelName.canonical($0.name) } } }).count),
            "in_flight": .int(routes.scheduler.inFlightCount), "queue_length": .int(routes.scheduler.queueLength),
            "last_minute": tallyJSON(minute, seconds: 60),
            // Cloud providers keys made with `cloud` may overflow to (never their keys).
            "providers": .array(options.providers.map { p in
                ["node": .string(p.node), "name": .string(p.name), "url": .string((p.secure ? "https://" : "http://") + p.host + ":\(p.port)" + p.basePath),
                 "models": .object(p.models.keys.sorted().map { ($0, .string(p.models[$0] ?? "")) })]
            }),
            "health": ["critical": .int(firing.filter { $0.check.severity == .critical }.count),
                       "warning": .int(firing.filter { $0.check.severity == .warning }.count),
                       "info": .int(firing.filter { $0.check.severity == .info }.count)],
        ]
    }

    /// A tally as the API shows it; rates per second over `seconds`.
    private func tallyJSON(_ t: RequestTally, seconds: Double) -> JSONValue {
        [
            "requests": .int(t.requests), "ok": .int(t.ok), "errors": .int(t.errors), "rejected": .int(t.rejected),
            "client_gone": .int(t.clientGone), "retried": .int(t.retried), "by_ticket": .int(t.byTicket),
            "prompt_tokens": .int(t.promptTokens), "completion_tokens": .int(t.completionTokens),
            "requests_per_s": Self.number(Double(t.requests) / seconds), "tokens_per_s": Self.number(Double(t.completionTokens) / seconds),
            "ttft_p50_ms": Self.number(t.ttft.quantile(0.5)), "ttft_p95_ms": Self.number(t.ttft.quantile(0.95)),
            "duration_p50_ms": Self.number(t.duration.quantile(0.5)), "duration_p95_ms": Self.number(t.duration.quantile(0.95)),
            "decode_tokens_per_s": Self.number(t.decodeRate),
            "overhead_p50_ms": Self.number(t.overhead.quantile(0.5)), "overhead_p99_ms": Self.number(t.overhead.quantile(0.99)),
            // Context used (prompt + output tokens) by successful generations: what num_ctx must cover.
            "context_p99_tokens": t.contextUse.count > 0 ? Self.number(t.contextUse.quantile(0.99)) : .null,
        ]
    }

    /// A node, with `recent`: every node:model's tallies of the last 5 minutes.
    private func node(_ n: FleetNode, recent: [SlotKey: RequestTally]) -> JSONValue {
        let hb = n.heartbeat, t = hb.telemetry
        var total = RequestTally()
        for (key, tally) in recent where key.node == n.id { total.merge(tally) }
        let scheduler = routes.scheduler
        return [
            "id": .string(n.id), "status": .string(n.status.rawValue), "hold": n.hold.map { .string($0.rawValue) } ?? .null,
            "last_seen_ms_ago": .int(Int(clamping: now - min(now, n.lastSeenMilliseconds))),
            "agent_version": .string(hb.agentVersion), "clock_skew_ms": registry.clockSkew[n.id].map { .int($0) } ?? .null,
            "cpu": ["cores": .int(hb.cpuCores), "utilization": Self.number(hb.cpuUtilization), "load1": Self.number(t.load1),
                    "throttled": .bool(t.cpuThrottled)],
            "memory": ["total_bytes": .int(hb.memoryTotalBytes), "available_bytes": .int(hb.memoryAvailableBytes),
                       "pressure": .string(t.pressure.rawValue), "pressure_stall_percent": Self.number(t.pressureStallPercent),
                       "swap_total_bytes": .int(t.swapTotalBytes), "swap_used_bytes": .int(max(0, t.swapTotalBytes - t.swapFreeBytes))],
            "gpus": .array(t.gpus.map { g in
                ["vendor": .string(g.vendor), "name": .string(g.name), "memory_used_bytes": .int(g.memoryUsedBytes),
                 "memory_total_bytes": .int(g.memoryTotalBytes), "utilization": Self.number(g.utilization),
                 "temperature_celsius": Self.number(g.temperatureCelsius), "power_watts": Self.number(g.powerWatts),
                 "throttled": .bool(g.throttled)]
            }),
            "thermal": ["state": .string(t.thermal.rawValue), "max_temperature_celsius": Self.number(t.maxTemperatureCelsius)],
            "meeting": ["in_meeting": .bool(t.inMeeting), "camera": .bool(t.cameraInUse), "microphone": .bool(t.microphoneInUse)],
            "capacity": hb.capacity?.json ?? .null,
            "in_flight": .int(scheduler.inFlight(node: n.id)),
            "last_5_minutes": tallyJSON(total, seconds: 300),
            "backends": .array(hb.backends.map { b in
                [
                    "kind": .string(b.kind.rawValue), "url": .string(b.url), "address": .string(b.address), "reachable": .bool(b.reachable),
                    "version": b.version.map { .string($0) } ?? .null, "error": b.error.map { .string($0) } ?? .null,
                    "parallel": b.parallel.map { .int($0) } ?? .null, "local_only": .bool(b.localOnly),
                    "direct_clients": .strings(b.directClients), "models": .strings(b.models.map(\.name)),
                    "queue": b.queue.map { ["running": .int($0.running), "waiting": .int($0.waiting), "source": .string($0.source)] } ?? .null,
                    "loaded": .array(b.loaded.map { m in
                        [
                            "name": .string(m.name), "size_bytes": .int(m.sizeBytes), "vram_bytes": .int(m.vramBytes),
                            "context_length": .int(m.contextLength), "expires_at": .string(m.expiresAt),
                            "in_flight": .int(scheduler.inFlight(node: n.id, model: m.name)),
                            "queued": .int(scheduler.queued(node: n.id, model: m.name)),
                            "concurrency": .int(scheduler.limit(node: n.id, model: m.name)),
                        ]
                    }),
                ]
            }),
        ]
    }

    /// A node's live readings, small: the `node` event after each heartbeat.
    func nodeEvent(_ id: String) -> JSONValue? {
        guard let n = registry.nodes[id] else { return nil }
        let hb = n.heartbeat, t = hb.telemetry
        return [
            "id": .string(n.id), "status": .string(n.status.rawValue), "hold": n.hold.map { .string($0.rawValue) } ?? .null,
            "cpu_utilization": Self.number(hb.cpuUtilization),
            "memory_total_bytes": .int(hb.memoryTotalBytes), "memory_available_bytes": .int(hb.memoryAvailableBytes),
            "pressure": .string(t.pressure.rawValue), "thermal": .string(t.thermal.rawValue), "in_meeting": .bool(t.inMeeting),
            "gpus": .array(t.gpus.map { g in
                ["utilization": Self.number(g.utilization), "memory_used_bytes": .int(g.memoryUsedBytes),
                 "memory_total_bytes": .int(g.memoryTotalBytes), "temperature_celsius": Self.number(g.temperatureCelsius)]
            }),
            "in_flight": .int(routes.scheduler.inFlight(node: n.id)),
            "loaded": .strings(hb.backends.flatMap { $0.loaded.map(\.name) }),
        ]
    }

    /// The `stats` event: totals of the last minute and now.
    func statsEvent() -> JSONValue {
        Self.statsEvent(stats: stats, routes: routes, health: health, now: now)
    }

    /// `POST /api/v1/nodes/{id}/drain|pause|resume`: with the fleet key when one is set.
    private func nodeAction(_ exchange: HTTPExchange, node id: String, action: String, body: [UInt8]) {
        if let refusal = gate.refusal(exchange, body: body) {
            var headers = Self.jsonHeaders
            headers.add("WWW-Authenticate", "Bearer realm=\"herd\"")
            var bytes: [UInt8] = []
            JSONValue.object([("error", .string(refusal))]).write(to: &bytes)
            exchange.respond(status: 401, headers: headers, body: bytes)
            return
        }
        if action == "pull" || action == "delete" {
            guard let node = registry.nodes[id] else { return notFound(exchange, "node") }
            log.info("operator: \(action) on node \(id) (from \(exchange.remoteAddress?.description ?? "?"))")
            return modelActions.perform(exchange, action: action, node: node, body: body)
        }
        let hold: Hold?
        switch action {
        case "drain": hold = .drain
        case "pause": hold = .pause
        case "resume": hold = nil
        default: return respond(exchange, 404, ["error": "no such action: drain, pause, resume, pull or delete"])
        }
        guard registry.setHold(hold, node: id) else { return notFound(exchange, "node") }
        log.info("operator: node \(id) \(hold?.label ?? "resumed") (from \(exchange.remoteAddress?.description ?? "?"))")
        onHoldChange(id, hold)
        respond(exchange, 200, ["node": .string(id), "hold": hold.map { .string($0.rawValue) } ?? .null,
                                "in_flight": .int(routes.scheduler.inFlight(node: id))])
    }

    // MARK: Models and queues

    private func models() -> JSONValue {
        let hour = stats.bySlot(minutes: 60, now: now)
        struct Place { var node: FleetNode; var onDisk: Heartbeat.Model?; var loaded: Heartbeat.LoadedModel? }
        var places: [String: [String: Place]] = [:]
        var kinds: [String: WorkKind] = [:]
        for n in registry.nodes.values {
            for b in n.heartbeat.backends {
                for m in b.models {
                    places[ModelName.canonical(m.name), default: [:]][n.id, default: Place(node: n)].onDisk = m
                    kinds[ModelName.canonical(m.name)] = kinds[ModelName.canonical(m.name)] ?? SnapshotBuilder.work(b.kind, m)
                }
                for m in b.loaded { places[ModelName.canonical(m.name), default: [:]][n.id, default: Place(node: n)].loaded = m }
            }
        }
        for key in hour.keys where key.model != RequestStats.otherModel && places[key.model] == nil { places[key.model] = [:] }
        let scheduler = routes.scheduler
        return ["models": .array(places.keys.sorted().map { model in
            var total = RequestTally()
            for (key, tally) in hour where key.model == model { total.merge(tally) }
            let nodes = (places[model] ?? [:]).values.sorted { $0.node.id < $1.node.id }.map { p -> JSONValue in
                let t = hour[SlotKey(p.node.id, model)] ?? RequestTally()
                return [
                    "node": .string(p.node.id), "status": .string(p.node.status.rawValue),
                    "on_disk": .bool(p.onDisk != nil), "loaded": .bool(p.loaded != nil),
                    "size_bytes": .int(p.onDisk?.sizeBytes ?? p.loaded?.sizeBytes ?? 0), "vram_bytes": .int(p.loaded?.vramBytes ?? 0),
                    "context_length": .int(p.loaded?.contextLength ?? 0),
                    "in_flight": .int(scheduler.inFlight(node: p.node.id, model: model)),
                    "queued": .int(scheduler.queued(node: p.node.id, model: model)),
                    "concurrency": .int(scheduler.limit(node: p.node.id, model: model)),
                    "last_hour": tallyJSON(t, seconds: 3600),
                ]
            }
            var members: [(String, JSONValue)] = [("name", .string(model)), ("kind", .string((kinds[model] ?? .chat).rawValue)),
                                                  ("nodes", .array(nodes)), ("last_hour", tallyJSON(total, seconds: 3600))]
            if let fit = routes.contextFitter.json(model) { members.append(("context_fit", fit)) }
            return .object(members)
        })]
    }

    private func queues() -> JSONValue {
        [
            "queue_length": .int(routes.scheduler.queueLength), "in_flight": .int(routes.scheduler.inFlightCount),
            "tickets_out": .int(routes.scheduler.ticketsOut),
            "slots": .array(routes.scheduler.slotSummary.map { s in
                ["node": .string(s.node), "model": .string(s.model), "in_flight": .int(s.inFlight), "limit": .int(s.limit), "queued": .int(s.queued)]
            }),
        ]
    }

    // MARK: Traces and usage (SQLite, off the loop)

    private func traces(_ exchange: HTTPExchange) {
        guard let tracePath else { return respond(exchange, 503, ["error": "traces are off"]) }
        let head = exchange.head
        func text(_ name: String) -> String? {
            head.queryValue(name).flatMap { URLQuery.decode($0) }.flatMap { $0.isEmpty || $0.utf8.count > 512 ? nil : $0 }
        }
        var filter = TraceStore.Filter()
        filter.sinceMs = text("since").flatMap { Int($0) }
        filter.untilMs = text("until").flatMap { Int($0) }
        filter.model = text("model")
        filter.node = text("node")
        filter.outcome = text("outcome")
        filter.tag = text("tag")
        filter.client = text("client")
        filter.beforeID = text("before").flatMap { Int($0) }
        filter.limit = text("limit").flatMap { Int($0) } ?? 50
        if let outcome = filter.outcome, RouteResult.Outcome(rawValue: outcome) == nil {
            return respond(exchange, 400, ["error": .string("outcome must be one of \(RouteResult.Outcome.allCases.map(\.rawValue).joined(separator: ", "))")])
        }
        let selected = filter
        loop.offload({ try TraceStore.list(path: tracePath, selected) }) { [weak self] result in
            guard let self, exchange.isOpen else { return }
            switch result {
            case let .success(page):
                self.respond(exchange, 200, ["traces": .array(page.rows), "next_before": page.next.map { .int($0) } ?? .null])
            case let .failure(error):
                self.respond(exchange, 500, ["error": .string("reading traces failed: \(error)")])
            }
        }
    }

    private func trace(_ exchange: HTTPExchange, id: Int) {
        guard let tracePath else { return respond(exchange, 503, ["error": "traces are off"]) }
        loop.offload({ try TraceStore.record(path: tracePath, id: id) }) { [weak self] result in
            guard let self, exchange.isOpen else { return }
            switch result {
            case let .success(record?): self.respond(exchange, 200, record)
            case .success(nil): self.notFound(exchange, "trace")
            case let .failure(error): self.respond(exchange, 500, ["error": .string("reading traces failed: \(error)")])
            }
        }
    }

    private func usage(_ exchange: HTTPExchange) {
        guard let tracePath else { return respond(exchange, 503, ["error": "traces are off"]) }
        let by = exchange.head.queryValue("by").map(String.init) ?? "tag"
        guard let grouping = TraceStore.UsageGrouping(rawValue: by) else { return respond(exchange, 400, ["error": "by must be tag, client or key"]) }
        let hours = min(24 * 31, max(1, exchange.head.queryValue("hours").flatMap { Int($0) } ?? 24))
        let bucketMs = hours <= 48 ? 3_600_000 : 86_400_000
        let wall = Int(clamping: EventLoop.wallClockMilliseconds())
        let since = (wall - hours * 3_600_000) / bucketMs * bucketMs
        loop.offload({ try TraceStore.usage(path: tracePath, by: grouping, sinceMs: since, bucketMs: bucketMs) }) { [weak self] result in
            guard let self, exchange.isOpen else { return }
            switch result {
            case let .success(usage):
                // The 50 busiest labels; the rest summed as "other".
                let ranked = usage.map { ($0.key, $0.value, $0.value.values.reduce(0) { $0 + $1.requests }) }.sorted { ($0.2, $1.0) > ($1.2, $0.0) }
                var shown = Array(ranked.prefix(50).map { ($0.0, $0.1) })
                if ranked.count > 50 {
                    var other: [Int: TraceStore.UsageBucket] = [:]
                    for (_, buckets, _) in ranked.dropFirst(50) { for (at, b) in buckets { other[at, default: .init()].add(b) } }
                    shown.append(("other", other))
                }
                self.respond(exchange, 200, [
                    "by": .string(by), "hours": .int(hours), "bucket_s": .int(bucketMs / 1000), "since_ms": .int(since),
                    "series": .array(shown.map { label, buckets in
                        var total = TraceStore.UsageBucket()
                        for b in buckets.values { total.add(b) }
                        return [
                            "key": .string(label), "requests": .int(total.requests), "prompt_tokens": .int(total.promptTokens),
                            "completion_tokens": .int(total.completionTokens), "errors": .int(total.errors),
                            "mean_duration_ms": Self.number(total.requests > 0 ? total.durationMsSum / Double(total.requests) : nil),
                            "buckets": .array(buckets.keys.sorted().map { at in
                                let b = buckets[at]!
                                return ["at_ms": .int(at), "requests": .int(b.requests), "prompt_tokens": .int(b.promptTokens),
                                        "completion_tokens": .int(b.completionTokens), "errors": .int(b.errors),
                                        "mean_duration_ms": Self.number(b.requests > 0 ? b.durationMsSum / Double(b.requests) : nil)]
                            }),
                        ]
                    }),
                ])
            case let .failure(error):
                self.respond(exchange, 500, ["error": .string("reading traces failed: \(error)")])
            }
        }
    }

    // MARK: Capacity, health, settings

    private func capacity() -> JSONValue {
        ["nodes": .array(sortedNodes.map { n in
            let c = n.heartbeat.capacity
            return [
                "id": .string(n.id), "status": .string(n.status.rawValue),
                "learned_hours": .int(c?.learnedHours ?? 0), "hour_learned": .bool(c?.hourLearned ?? false),
                "availability_now": Self.number(c?.availability), "memory_ceiling_bytes": c.map { .int($0.memoryCeilingBytes) } ?? .null,
                "week": c?.week.map { .array($0.map { Self.number($0) }) } ?? .null,
            ]
        })]
    }

    func healthJSON() -> JSONValue {
        let firing = health.firing.count
        return [
            "status": .string(health.firing.contains { $0.check.severity == .critical } ? "critical" : firing > 0 ? "degraded" : "ok"),
            "firing": .int(firing),
            "checks": .array(health.checks.map { check in
                let state = health.states[check.id]
                return [
                    "id": .string(check.id), "title": .string(check.title), "state": .string(state?.firing == true ? "firing" : "ok"),
                    "severity": .string(check.severity.rawValue),
                    "since": state.map { .string(Self.iso8601($0.since)) } ?? .null, "since_ms": state.map { .int($0.since) } ?? .null,
                    "message": .string(state?.message ?? ""), "condition": .string(check.condition),
                    "threshold": .string(check.threshold), "advice": .string(check.advice),
                ]
            }),
        ]
    }

    private func settings() -> JSONValue {
        let s = options.scheduler
        return [
            "version": .string(HerdVersion.current),
            "listen": ["api": .string("\(options.host):\(options.port)"), "proxy": .string("\(options.host):\(options.proxyPort)")],
            "proxies": .int(options.proxies), "data_dir": .string(options.dataDirectory), "control_socket": .string(options.socketPath),
            "fleet_key": .string(gate.isSet ? "set" : "not set"), "mdns": .bool(options.mdns), "fleet_id": .string(options.fleetID),
            "trace_retention_s": .int(Int(clamping: options.traceRetentionMilliseconds / 1000)),
            "nodes": ["degraded_after_ms": .int(Int(clamping: options.registry.degradedAfterMilliseconds)),
                      "offline_after_ms": .int(Int(clamping: options.registry.offlineAfterMilliseconds)), "max_nodes": .int(options.registry.maxNodes)],
            "scheduler": [
                "max_concurrency_per_model": s.maxConcurrencyPerModel.map { .int($0) } ?? .null,
                "initial_concurrency": .int(s.initialConcurrency), "queue_timeout_ms": .int(Int(clamping: s.queueTimeoutMilliseconds)),
                "max_queue_length": .int(s.maxQueueLength), "max_retries": .int(s.maxRetries),
                "num_ctx_policy": .string("\(s.numCtxPolicy)"), "max_in_flight_per_client": s.maxInFlightPerClient.map { .int($0) } ?? .null,
                "prewarm": .bool(s.prewarm), "route_tickets": .int(s.maxTicketsPerModel), "ticket_ttl_ms": .int(Int(clamping: s.ticketTTLMilliseconds)),
            ],
        ]
    }

    /// `2026-11-22T10:00:00Z` from ms since the epoch.
    static func iso8601(_ ms: Int) -> String { Logger.timestamp(secondsSinceEpoch: ms / 1000) }
}

/// Percent-decoding of query values (`+` is a space).
enum URLQuery {
    static func decode(_ value: Substring) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(value.utf8.count)
        var it = value.utf8.makeIterator()
        while let c = it.next() {
            switch c {
            case UInt8(ascii: "+"): bytes.append(0x20)
            case UInt8(ascii: "%"):
                guard let h = it.next(), let l = it.next(), let hi = hex(h), let lo = hex(l) else { return nil }
                bytes.append(hi << 4 | lo)
            default: bytes.append(c)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }
}
