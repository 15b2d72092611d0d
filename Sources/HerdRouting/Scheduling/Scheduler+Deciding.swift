import HerdBounds
import HerdJSON
import HerdWire

extension Scheduler {
    /// What became of a decided entry.
    enum Decided {
        /// Routed, refused, or newly queued (appended to the queue).
        case settled
        /// An entry already queued (being re-scored) still waits: for `slot`,
        /// holding its node when `reserves`.
        case waits(SlotKey, reserves: Bool)
    }

    /// Decides for `entry` (held here, not in `entries`): routes it or queues
    /// it (then it is stored), or refuses it (then it is remembered until its
    /// RESULT). Entries move through here, never copied.
    @discardableResult
    mutating func decide(_ key: RequestKey, _ entry: consuming Entry, fleet: [FleetNode], now: UInt64,
                         into actions: inout [SchedulerAction]) -> Decided {
        var entry = entry
        let request = scoringRequest(entry)
        let (decision, card) = scorer.decide(request, fleet: fleet, load: self, now: now)
        scorings += 1
        entry.card = card
        switch decision {
        case let .route(candidate):
            let slot = occupy(candidate, &entry, now: now)
            let load = slotLoads[slot] ?? SlotLoad()
            affinities.remember(session: entry.request.session, prefix: entry.request.prefix, slot: slot)
            var strip = false
            if let numCtx = entry.request.numCtx, candidate.hot, candidate.loadedContext > 0, numCtx <= candidate.loadedContext {
                strip = settings.numCtxPolicy == .strip
                numCtxEvents[strip ? "stripped" : settings.numCtxPolicy == .warn ? "warned" : "kept", default: 0] += 1
            }
            // While the limit is learned in slow start, the request that fills it reports its first byte.
            let reportStart = settings.maxConcurrencyPerModel == nil && reportedParallel[slot.node] == nil
                && load.count >= limit(slot) && (learners[slot]?.slowStart ?? true)
            let answer = RouteAnswer(
                id: entry.request.id, node: candidate.node, upstream: candidate.address, backend: candidate.backend,
                model: candidate.model, queuedMilliseconds: Int(clamping: now - min(now, entry.arrivedAt)),
                reason: Scheduler.reason(candidate, card: card), retries: entry.retries, score: candidate.breakdown.header,
                stripNumCtx: strip, reportStart: reportStart)
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
            let slot = SlotKey(best.node, best.canonicalModel)
            considerPrewarm(best, card: card, now: now, into: &actions)
            if entry.queueDeadline != nil {
                // Re-scored while queued: keeps its place and its deadline.
                entry.waitingFor = slot
                if best.drains, reservations[best.node] == nil { reservations[best.node] = best.canonicalModel }
                queuedFor[slot, default: 0] += 1
                entries[key] = entry
                return .waits(slot, reserves: best.drains)
            }
            guard queue.count < settings.maxQueueLength else {
                refuse(key, entry, RouteRefusal(id: entry.request.id, code: .queueTimeout,
                                                message: "the queue is full (\(settings.maxQueueLength) requests)", retryAfter: 5), into: &actions)
                return .settled
            }
            feed.record(DecisionFeed.Decision(
                sequence: 0, atMilliseconds: now, requestID: entry.request.id, model: entry.request.model, client: entry.request.client,
                action: "queued", node: best.node, servedModel: best.model, score: best.breakdown.header,
                reason: Scheduler.reason(best, card: card), card: card))
            entry.waitingFor = slot
            if best.drains, reservations[best.node] == nil { reservations[best.node] = best.canonicalModel }
            // A request waits for this node:model: tickets held for it come back (the queue goes first).
            revokeTickets(slot: slot, into: &actions)
            let deadline = entry.arrivedAt.addingSaturated(settings.queueTimeoutMilliseconds)
            entry.queueDeadline = deadline
            queuedFor[slot, default: 0] += 1
            if nextRescore == nil || queue.isEmpty { nextRescore = now.addingSaturated(settings.rescoreIntervalMilliseconds) }
            queue.append(WaitQueue.Item(key: key, client: entry.request.client, deadline: deadline, slot: slot, reserves: best.drains))
            entries[key] = entry
            actions.append(.queued(key.proxy, RouteQueued(id: entry.request.id, timeoutMilliseconds: deadline > now ? deadline - now : 0)))
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
        return .settled
    }

    /// Takes a slot of `candidate`'s node:model for `entry` (a request sent
    /// now, or a ticket granted now): counts it in flight with its expected end.
    mutating func occupy(_ candidate: ScoredCandidate, _ entry: inout Entry, now: UInt64) -> SlotKey {
        let slot = SlotKey(candidate.node, candidate.canonicalModel)
        var load = slotLoads[slot] ?? SlotLoad()
        load.count += 1
        // Expected end: its own estimate without the wait (it starts now).
        let own = candidate.breakdown.load + candidate.breakdown.prefill + candidate.breakdown.decode
        entry.sentAt = now
        entry.expectedEnd = now.addingSaturated(UInt64(saturating: max(1, own.rounded())))
        load.ends.append(entry.expectedEnd)
        load.sents.append(now)
        slotLoads[slot] = load
        entry.concurrency = load.count
        nodeLoads[slot.node, default: 0] += 1
        entry.nodeBatch = nodeLoads[slot.node] ?? 1
        if candidate.temperature != .hot, loadingUntil[slot] == nil {
            loadingUntil[slot] = now.addingSaturated(UInt64(saturating: max(1, candidate.breakdown.load.rounded())))
        }
        routeCounter += 1
        routed[slot, default: RouteHistory()].last = routeCounter
        routed[slot, default: RouteHistory()].arrivals.add(at: now)
        entry.slot = slot
        entry.chosen = candidate
        return slot
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
            out.append(rounded: next.breakdown.costMs - chosen.breakdown.costMs)
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

    /// Re-scores the queued requests in serving order (`WaitQueue`: clients
    /// take turns): each goes wherever is best now, or stays queued, in its
    /// place, for its new best.
    ///
    /// `everyone`: every queued request is re-scored (time passed, the fleet
    /// changed). Else a slot freed: once a request could not start on its
    /// best node:model, the requests behind it that wait for the same
    /// node:model are kept as they are without scoring them (nothing changed
    /// for them but a slot that went to the one ahead), and the pass ends
    /// when only such requests are left: a long queue costs a few scorings
    /// per result, not one per queued request.
    mutating func dispatchWaiting(fleet: [FleetNode], now: UInt64, into actions: inout [SchedulerAction], everyone: Bool) {
        guard !queue.isEmpty else {
            nextRescore = nil
            return
        }
        if everyone {
            nextRescore = now.addingSaturated(settings.rescoreIntervalMilliseconds)
            reservations.removeAll(keepingCapacity: true)
        }
        let order = queue.fairOrder()
        let total = queue.count
        // Items not yet visited, per slot, and how many of them wait for a slot not known stuck.
        var remaining = queuedFor
        var unstuck = total
        queuedFor.removeAll(keepingCapacity: true)
        var stuck: [SlotKey] = []
        var kept: [WaitQueue.Item] = []
        var left: [WaitQueue.Item] = []
        var visited = 0
        while visited < total, everyone || unstuck > 0 {
            let item = queue.items[queue.index(visited, in: order)]
            visited += 1
            if let n = remaining[item.slot] { remaining[item.slot] = n > 1 ? n - 1 : nil }
            let known = stuck.contains(item.slot)
            if !known { unstuck -= 1 }
            if known, !everyone {
                queuedFor[item.slot, default: 0] += 1
                kept.append(item)
                continue
            }
            guard entries[item.key]?.queueDeadline != nil, let entry = entries.removeValue(forKey: item.key) else {
                left.append(item)
                continue
            }
            if !everyone, item.reserves, reservations[item.slot.node] == item.slot.model { reservations[item.slot.node] = nil }
            switch decide(item.key, entry, fleet: fleet, now: now, into: &actions) {
            case .settled:
                left.append(item)
            case let .waits(slot, reserves):
                var updated = item
                updated.slot = slot
                updated.reserves = reserves
                kept.append(updated)
                if !stuck.contains(slot) {
                    stuck.append(slot)
                    unstuck -= remaining[slot] ?? 0
                }
            }
        }
        for (slot, n) in remaining { queuedFor[slot, default: 0] += n }
        queue.finishPass(order: order, visited: visited, kept: kept, left: left)
        if queue.isEmpty { nextRescore = nil }
    }

    /// Takes a queued entry out of the queue's books.
    mutating func unqueue(_ key: RequestKey, _ entry: inout Entry) {
        guard entry.queueDeadline != nil else { return }
        if let item = queue.remove(key) { forgetQueued(item) }
        entry.waitingFor = nil
    }

    /// Drops a queue item's counts (its slot's queue length, its hold on a node).
    mutating func forgetQueued(_ item: WaitQueue.Item) {
        if let n = queuedFor[item.slot] { queuedFor[item.slot] = n > 1 ? n - 1 : nil }
        if item.reserves, reservations[item.slot.node] == item.slot.model { reservations[item.slot.node] = nil }
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
        if let i = load.sents.firstIndex(of: entry.sentAt) { load.sents.remove(at: i) }
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

    package func lastRouted(_ slot: SlotKey) -> UInt64 { routed[slot]?.last ?? 0 }

    /// A count that halves every H and gains λ per ms settles at λ·H/ln 2.
    package func arrivalsPerMs(_ slot: SlotKey, now: UInt64) -> Double {
        (routed[slot]?.arrivals.value(at: now) ?? 0) * 0.693_147_180_559_945_3 / Scheduler.arrivalHalfLifeMilliseconds
    }

    package func affinity(node: String, model: String, session: ContentHash?, prefix: ContentHash?) -> CompletionTimeModel.Affinity? {
        affinities.affinity(node: node, model: model, session: session, prefix: prefix)
    }
}
