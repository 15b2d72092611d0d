import HerdJSON
import HerdWire

extension Scheduler {
    /// Decides for `entry` (held here, not in `entries`): routes it or queues
    /// it (then it is stored), or refuses it (then it is remembered until its
    /// RESULT). Entries move through here, never copied.
    mutating func decide(_ key: RequestKey, _ entry: consuming Entry, fleet: [FleetNode], now: UInt64,
                         into actions: inout [SchedulerAction]) {
        var entry = entry
        let request = scoringRequest(entry)
        let (decision, card) = scorer.decide(request, fleet: fleet, load: self, now: now)
        entry.card = card
        switch decision {
        case let .route(candidate):
            let slot = SlotKey(candidate.node, candidate.canonicalModel)
            var load = slotLoads[slot] ?? SlotLoad()
            load.count += 1
            // Expected end: its own estimate without the wait (it starts now).
            let own = candidate.breakdown.load + candidate.breakdown.prefill + candidate.breakdown.decode
            entry.sentAt = now
            entry.expectedEnd = now + UInt64(max(1, own.rounded()))
            load.ends.append(entry.expectedEnd)
            slotLoads[slot] = load
            entry.concurrency = load.count
            nodeLoads[slot.node, default: 0] += 1
            entry.nodeBatch = nodeLoads[slot.node] ?? 1
            if candidate.temperature != .hot, loadingUntil[slot] == nil {
                loadingUntil[slot] = now + UInt64(max(1, candidate.breakdown.load.rounded()))
            }
            routeCounter += 1
            lastRoutedCounter[slot] = routeCounter
            affinities.remember(session: entry.request.session, prefix: entry.request.prefix, slot: slot)
            var strip = false
            if let numCtx = entry.request.numCtx, candidate.hot, candidate.loadedContext > 0, numCtx <= candidate.loadedContext {
                strip = settings.numCtxPolicy == .strip
                numCtxEvents[strip ? "stripped" : settings.numCtxPolicy == .warn ? "warned" : "kept", default: 0] += 1
            }
            let answer = RouteAnswer(
                id: entry.request.id, node: candidate.node, upstream: candidate.address, backend: candidate.backend,
                model: candidate.model, queuedMilliseconds: Int(now - min(now, entry.arrivedAt)),
                reason: Scheduler.reason(candidate, card: card), retries: entry.retries, score: candidate.breakdown.header,
                stripNumCtx: strip)
            entry.slot = slot
            entry.chosen = candidate
            entry.queueDeadline = nil
            entry.waitingFor = nil
            entry.decision = answer
            feed.record(DecisionFeed.Decision(
                sequence: 0, atMilliseconds: now, requestID: entry.request.id, model: entry.request.model, client: entry.request.client,
                action: "routed", node: candidate.node, servedModel: candidate.model, score: answer.score ?? "", reason: answer.reason ?? "",
                card: card))
            entries[key] = entry
            actions.append(.routed(key.proxy, answer))
        case let .queue(best):
            entry.waitingFor = SlotKey(best.node, best.canonicalModel)
            if best.drains, reservations[best.node] == nil { reservations[best.node] = best.canonicalModel }
            if entry.queueDeadline == nil {
                feed.record(DecisionFeed.Decision(
                    sequence: 0, atMilliseconds: now, requestID: entry.request.id, model: entry.request.model, client: entry.request.client,
                    action: "queued", node: best.node, servedModel: best.model, score: best.breakdown.header,
                    reason: Scheduler.reason(best, card: card), card: card))
            }
            enqueue(key, entry, now: now, into: &actions)
        case let .notFound(known):
            let names = ([entry.request.model] + entry.request.fallbacks).map { "'\($0)'" }.joined(separator: ", ")
            refuse(key, entry, RouteRefusal(id: entry.request.id, code: .modelNotFound, message: "model \(names) not found in the fleet",
                                            models: known), into: &actions)
        case .noNode:
            var message = entry.excluded.isEmpty ? "no online node can serve '\(entry.request.model)'" : "no other node can serve '\(entry.request.model)'"
            if let first = card.eliminated.first(where: { !entry.excluded.contains($0.node) }) {
                message += " (\(first.node): \(first.reason))"
            }
            refuse(key, entry, RouteRefusal(id: entry.request.id, code: .noNode, message: message, retryAfter: 5), into: &actions)
        }
    }

    /// `X-Herd-Reason`: the winner's state, how many competed, the runner-up's distance.
    static func reason(_ chosen: ScoredCandidate, card: ScoreCard) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        out.append(contentsOf: chosen.temperature.label.utf8)
        if chosen.drains { out.append(literal: "; waits for the node to drain") }
        if let affinity = chosen.affinity {
            out.append(literal: "; ")
            out.append(contentsOf: affinity.rawValue.utf8)
            out.append(literal: " affinity")
        }
        for penalty in chosen.penalties {
            out.append(literal: "; ")
            out.append(contentsOf: penalty.utf8)
        }
        var others = 0
        var next: ScoredCandidate?
        for c in card.candidates where !(c.node == chosen.node && c.model == chosen.model) {
            others += 1
            if next == nil { next = c }
        }
        if let next {
            out.append(literal: "; best of ")
            out.append(decimal: others + 1)
            out.append(literal: ", next ")
            out.append(contentsOf: next.node.utf8)
            out.append(literal: " +")
            out.append(rounded: next.ectMs - chosen.ectMs)
            out.append(literal: "ms")
        } else {
            out.append(literal: "; only candidate")
        }
        if !card.eliminated.isEmpty {
            out.append(literal: "; ")
            out.append(decimal: card.eliminated.count)
            out.append(literal: " eliminated")
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether a request to `path` generates tokens (not embeddings, not `/api/show`).
    package static func generates(path: String) -> Bool {
        switch path {
        case "/api/embed", "/api/embeddings", "/v1/embeddings", "/api/show": false
        default: true
        }
    }

    /// What the scorer is told about a request.
    func scoringRequest(_ entry: Entry) -> ScoringRequest {
        var models = [entry.request.model]
        if !entry.request.fallbacks.isEmpty {
            for fallback in entry.request.fallbacks where !models.contains(where: { ModelName.same($0, fallback) }) { models.append(fallback) }
        }
        var request = ScoringRequest(api: entry.request.api, models: models)
        request.generates = Scheduler.generates(path: entry.request.path)
        request.promptTokens = entry.request.estimatedTokens
        request.numCtx = entry.request.numCtx
        request.maxOutputTokens = entry.request.maxTokens
        request.think = entry.request.think
        request.session = entry.request.session
        request.prefix = entry.request.prefix
        request.excluded = entry.excluded
        return request
    }

    mutating func enqueue(_ key: RequestKey, _ entry: consuming Entry, now: UInt64, into actions: inout [SchedulerAction]) {
        var entry = entry
        if entry.queueDeadline == nil {
            guard waiting.count < settings.maxQueueLength else {
                refuse(key, entry, RouteRefusal(id: entry.request.id, code: .queueTimeout,
                                                message: "the queue is full (\(settings.maxQueueLength) requests)", retryAfter: 5), into: &actions)
                return
            }
            entry.queueDeadline = entry.arrivedAt + settings.queueTimeoutMilliseconds
        }
        if let slot = entry.waitingFor { queuedFor[slot, default: 0] += 1 }
        if nextRescore == nil || waiting.isEmpty { nextRescore = now + settings.rescoreIntervalMilliseconds }
        // Still waiting: keeps its place (`dispatchWaiting` goes in order) and its deadline.
        entries[key] = entry
        waiting.append(key)
    }

    /// Re-scores the queued requests, clients taking turns (each client's
    /// requests in arrival order; the client whose oldest request came first
    /// goes first): each goes wherever is best now, or stays queued (in its
    /// place) for its new best.
    mutating func dispatchWaiting(fleet: [FleetNode], now: UInt64, into actions: inout [SchedulerAction]) {
        guard !waiting.isEmpty else {
            nextRescore = nil
            return
        }
        let queue = fairOrder(waiting)
        waiting.removeAll(keepingCapacity: true)
        queuedFor.removeAll(keepingCapacity: true)
        reservations.removeAll(keepingCapacity: true)
        nextRescore = now + settings.rescoreIntervalMilliseconds
        for key in queue {
            guard let entry = entries.removeValue(forKey: key) else { continue }
            decide(key, entry, fleet: fleet, now: now, into: &actions)
        }
        if waiting.isEmpty { nextRescore = nil }
    }

    /// `keys` (in arrival order) with clients taking turns: the first request
    /// of each client, then the second of each, … A client that sends a
    /// burst of 100 does not hold back one that sends 1.
    func fairOrder(_ keys: [RequestKey]) -> [RequestKey] {
        var byClient: [String: [RequestKey]] = [:]
        var clients: [String] = []
        for key in keys {
            let client = entries[key]?.request.client ?? ""
            if byClient[client] == nil { clients.append(client) }
            byClient[client, default: []].append(key)
        }
        guard clients.count > 1 else { return keys }
        var order: [RequestKey] = []
        order.reserveCapacity(keys.count)
        var round = 0
        while order.count < keys.count {
            for client in clients {
                if let mine = byClient[client], round < mine.count { order.append(mine[round]) }
            }
            round += 1
        }
        return order
    }

    /// Takes a queued entry out of the queue's books.
    mutating func unqueue(_ key: RequestKey, _ entry: inout Entry) {
        guard entry.queueDeadline != nil else { return }
        waiting.removeAll { $0 == key }
        if let slot = entry.waitingFor, let n = queuedFor[slot] { queuedFor[slot] = n > 1 ? n - 1 : nil }
        entry.waitingFor = nil
    }

    /// Answers ROUTE_ERROR; the request is remembered until its RESULT.
    mutating func refuse(_ key: RequestKey, _ entry: consuming Entry, _ refusal: RouteRefusal, into actions: inout [SchedulerAction]) {
        var entry = entry
        release(&entry)
        actions.append(.refused(key.proxy, refusal))
        recentlyRefused[key] = entry
        trimRecentlyRefused()
    }

    mutating func trimRecentlyRefused() {
        if recentlyRefused.count > 4096 { recentlyRefused.removeAll() }
    }

    /// Frees the entry's slot.
    mutating func release(_ entry: inout Entry) {
        guard let slot = entry.slot else { return }
        entry.slot = nil
        guard var load = slotLoads[slot] else { return }
        load.count -= 1
        if let i = load.ends.firstIndex(of: entry.expectedEnd) { load.ends.remove(at: i) }
        slotLoads[slot] = load.count > 0 ? load : nil
        if let n = nodeLoads[slot.node] { nodeLoads[slot.node] = n > 1 ? n - 1 : nil }
    }

    package func limit(_ slot: SlotKey) -> Int {
        settings.maxConcurrencyPerModel ?? learners[slot]?.limit ?? prior(slot.node)
    }

    /// Where a node:model's learned concurrency starts: what the node reports, else the setting.
    func prior(_ node: String) -> Int { reportedParallel[node] ?? settings.initialConcurrency }
}

extension Scheduler: RoutingLoad {
    package func inFlight(_ slot: SlotKey) -> Int { slotLoads[slot]?.count ?? 0 }

    package func soonestEndMs(_ slot: SlotKey, now: UInt64) -> Double {
        guard let soonest = slotLoads[slot]?.ends.min() else { return 0 }
        if soonest > now { return Double(soonest - now) }
        // Overdue: durations are heavy-tailed — a request that has run this much
        // past its estimate likely runs as much again (at least a quarter of a service time).
        return max(Double(now - soonest), (rates.slot(slot)?.serviceMs.value ?? 1_000) / 4)
    }

    package func queuedAhead(_ slot: SlotKey) -> Int { queuedFor[slot] ?? 0 }

    package func nodeInFlight(_ node: String) -> Int { nodeLoads[node] ?? 0 }

    package func drainMs(node: String, except model: String?, now: UInt64) -> Double {
        var latest = 0.0
        for (slot, load) in slotLoads where slot.node == node && slot.model != model {
            guard let last = load.ends.max() else { continue }
            let remaining = last > now ? Double(last - now) : max(Double(now - last), (rates.slot(slot)?.serviceMs.value ?? 1_000) / 4)
            latest = max(latest, remaining)
        }
        return latest
    }

    package func reservedModel(node: String) -> String? { reservations[node] }

    package func loadingRemainingMs(_ slot: SlotKey, now: UInt64) -> Double? {
        guard let until = loadingUntil[slot] else { return nil }
        return until > now ? Double(until - now) : 0
    }

    package func lastRouted(_ slot: SlotKey) -> UInt64 { lastRoutedCounter[slot] ?? 0 }

    package func affinity(node: String, model: String, session: ContentHash?, prefix: ContentHash?) -> CompletionTimeModel.Affinity? {
        affinities.affinity(node: node, model: model, session: session, prefix: prefix)
    }
}
