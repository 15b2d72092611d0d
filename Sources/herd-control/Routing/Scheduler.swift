import HerdJSON
import HerdRuntime
import HerdWire

/// Where routing answers go: one connected proxy.
protocol RouteReplyTarget: AnyObject {
    func reply(_ type: ControlMessageType, _ body: JSONValue)
}

/// Routing decisions over time: applies `RoutePolicy`, counts the requests in
/// flight per node:model against the concurrency limit, holds requests that
/// find every node busy in a FIFO queue until a slot frees or the queue wait
/// runs out, and handles retries, results and cancellations. Loop-thread only.
final class Scheduler {
    struct Settings: Sendable {
        /// Requests in flight per node and model (Ollama's own parallelism
        /// waits inside Ollama; queuing here lets another node take them).
        var maxConcurrencyPerModel = 4
        /// How long a request may wait for a slot before a 503.
        var queueTimeoutMilliseconds: UInt64 = 30_000
        /// Requests waiting at most; more are answered 503 at once.
        var maxQueueLength = 2048
        /// Other nodes tried after a failure before giving up (502).
        var maxRetries = 2
    }

    private struct Key: Hashable {
        let link: ObjectIdentifier
        let id: UInt64
    }

    /// One request control knows about (queued or in flight).
    private final class Tracked {
        let request: RouteRequest
        weak var target: (any RouteReplyTarget)?
        var excluded: Set<String> = []
        var node: String?
        var slot: SlotKey?
        var retries = 0
        let arrivedAt: UInt64
        var timer: LoopTimer?
        init(request: RouteRequest, target: any RouteReplyTarget, arrivedAt: UInt64) {
            self.request = request
            self.target = target
            self.arrivedAt = arrivedAt
        }
    }

    let settings: Settings
    private let loop: EventLoop
    private let registry: NodeRegistry
    private var tracked: [Key: Tracked] = [:]
    private var waiting: [Key] = []
    /// A node and a model (canonical name): the unit of concurrency.
    struct SlotKey: Hashable {
        let node: String
        let model: String
    }

    private var slots: [SlotKey: Int] = [:]
    /// When each node:model was last given a request: equal candidates take turns.
    private var lastRouted: [SlotKey: UInt64] = [:]
    private var routeCounter: UInt64 = 0
    /// Requests refused by control, kept until the proxy's RESULT names them.
    private var recentlyFinished: [Key: RouteRequest] = [:]
    /// Finished requests, for the trace store and metrics.
    var onResult: ((RouteResult, RouteRequest?) -> Void)?

    init(loop: EventLoop, registry: NodeRegistry, settings: Settings = Settings()) {
        self.loop = loop
        self.registry = registry
        self.settings = settings
    }

    var queueLength: Int { waiting.count }
    var inFlightCount: Int { slots.values.reduce(0, +) }

    /// Requests in flight on `node` for `model` (canonical name).
    func inFlight(node: String, model: String) -> Int { slots[Scheduler.slotKey(node, model)] ?? 0 }

    /// Requests in flight on `node`, all models.
    func inFlight(node: String) -> Int {
        slots.filter { $0.key.node == node }.values.reduce(0, +)
    }

    private static func slotKey(_ node: String, _ model: String) -> SlotKey {
        SlotKey(node: node, model: model.contains(":") ? model : ModelName.canonical(model))
    }

    // MARK: Messages from proxies

    func route(_ request: RouteRequest, from target: any RouteReplyTarget) {
        let key = Key(link: ObjectIdentifier(target), id: request.id)
        let entry = Tracked(request: request, target: target, arrivedAt: loop.nowMilliseconds)
        tracked[key] = entry
        decide(key, entry)
    }

    func retry(_ retry: RouteRetry, from target: any RouteReplyTarget) {
        let key = Key(link: ObjectIdentifier(target), id: retry.id)
        guard let entry = tracked[key] else { return }
        release(entry)
        entry.excluded.insert(retry.node)
        entry.retries += 1
        if entry.retries > settings.maxRetries {
            finish(key, refusal: RouteRefusal(id: retry.id, code: .retriesExhausted,
                                              message: "every node tried failed (last: \(retry.node): \(retry.reason))"))
            return
        }
        decide(key, entry)
    }

    func result(_ result: RouteResult, from target: any RouteReplyTarget) {
        let key = Key(link: ObjectIdentifier(target), id: result.id)
        let entry = tracked.removeValue(forKey: key)
        if let entry { release(entry) }
        onResult?(result, entry?.request ?? recentlyFinished.removeValue(forKey: key))
        dispatchWaiting()
    }

    func cancel(id: UInt64, from target: any RouteReplyTarget) {
        let key = Key(link: ObjectIdentifier(target), id: id)
        guard let entry = tracked.removeValue(forKey: key) else { return }
        entry.timer?.close()
        release(entry)
        waiting.removeAll { $0 == key }
        dispatchWaiting() // the proxy's RESULT records the outcome
    }

    /// A proxy went away: its requests free their slots and leave the queue.
    func targetGone(_ target: any RouteReplyTarget) {
        let link = ObjectIdentifier(target)
        for (key, entry) in tracked where key.link == link {
            entry.timer?.close()
            release(entry)
            tracked[key] = nil
        }
        waiting.removeAll { $0.link == link }
        dispatchWaiting()
    }

    /// The fleet changed (a node came, went or loaded a model): retry the queue.
    func fleetChanged() { dispatchWaiting() }

    // MARK: Deciding

    private func decide(_ key: Key, _ entry: Tracked) {
        let request = entry.request
        var models = [request.model]
        for fallback in request.fallbacks where !models.contains(where: { ModelName.same($0, fallback) }) { models.append(fallback) }
        let decision = RoutePolicy.decide(
            api: request.api, models: models, nodes: Array(registry.nodes.values), excluded: entry.excluded,
            inFlight: { [unowned self] node, model in self.inFlight(node: node, model: model) },
            lastRouted: { [unowned self] node, model in self.lastRouted[Scheduler.slotKey(node, model)] ?? 0 },
            limit: settings.maxConcurrencyPerModel)
        switch decision {
        case let .route(candidate):
            entry.timer?.close()
            entry.timer = nil
            let slot = Scheduler.slotKey(candidate.node, candidate.model)
            slots[slot, default: 0] += 1
            routeCounter += 1
            lastRouted[slot] = routeCounter
            entry.node = candidate.node
            entry.slot = slot
            let queued = Int(loop.nowMilliseconds - entry.arrivedAt)
            entry.target?.reply(.routeOK, RouteAnswer(
                id: request.id, node: candidate.node, upstream: candidate.address, backend: candidate.backend,
                model: candidate.model, queuedMilliseconds: queued, reason: candidate.reason).json)
        case .queue:
            enqueue(key, entry)
        case let .notFound(known):
            let names = models.map { "'\($0)'" }.joined(separator: ", ")
            finish(key, refusal: RouteRefusal(id: request.id, code: .modelNotFound,
                                              message: "model \(names) not found in the fleet", models: known))
        case .noNode:
            finish(key, refusal: RouteRefusal(
                id: request.id, code: .noNode,
                message: entry.excluded.isEmpty ? "no online node can serve '\(request.model)'" : "no other node can serve '\(request.model)'",
                retryAfter: 5))
        }
    }

    private func enqueue(_ key: Key, _ entry: Tracked) {
        if entry.timer != nil {
            waiting.append(key) // still waiting: keeps its place and its deadline
            return
        }
        guard waiting.count < settings.maxQueueLength else {
            finish(key, refusal: RouteRefusal(id: entry.request.id, code: .queueTimeout,
                                              message: "the queue is full (\(settings.maxQueueLength) requests)", retryAfter: 5))
            return
        }
        waiting.append(key)
        let timer = LoopTimer(loop: loop)
        entry.timer = timer
        let waited = loop.nowMilliseconds - entry.arrivedAt
        let remaining = settings.queueTimeoutMilliseconds > waited ? settings.queueTimeoutMilliseconds - waited : 0
        timer.start(after: remaining) { [unowned self] in
            self.waiting.removeAll { $0 == key }
            self.finish(key, refusal: RouteRefusal(
                id: entry.request.id, code: .queueTimeout,
                message: "every node that has '\(entry.request.model)' stayed busy for \(self.settings.queueTimeoutMilliseconds / 1000) s",
                retryAfter: 5))
        }
    }

    /// Tries the queued requests in arrival order.
    private func dispatchWaiting() {
        guard !waiting.isEmpty else { return }
        let queue = waiting
        waiting.removeAll(keepingCapacity: true)
        for key in queue {
            guard let entry = tracked[key] else { continue }
            decide(key, entry)
        }
    }

    private func finish(_ key: Key, refusal: RouteRefusal) {
        guard let entry = tracked.removeValue(forKey: key) else { return }
        entry.timer?.close()
        entry.timer = nil
        release(entry)
        entry.target?.reply(.routeError, refusal.json) // the proxy's RESULT records the outcome
        recentlyFinished[key] = entry.request
        if recentlyFinished.count > 4096 { recentlyFinished.removeAll() }
    }

    private func release(_ entry: Tracked) {
        guard let slot = entry.slot else { return }
        entry.slot = nil
        if let count = slots[slot], count > 1 { slots[slot] = count - 1 } else { slots[slot] = nil }
    }
}
