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
            affinities.remember(session: entry.request.session, prefix: entry.request.prefix, slot: slot)
            var strip = false
            let fitted = fittedContext(candidate, entry.request)
            if let numCtx = entry.request.numCtx, candidate.hot, candidate.loadedContext > 0, numCtx <= candidate.loadedContext {
                strip = settings.numCtxPolicy == .strip || (settings.numCtxPolicy == .fit && fitted == nil)
                numCtxEvents[fitted != nil ? "fitted" : strip ? "stripped" : settings.numCtxPolicy == .warn ? "warned" : "kept", default: 0] += 1
            }
            // While the limit is learned in slow start, the request that fills it reports its first byte.
            let reportStart = settings.maxConcurrencyPerModel == nil && learning.inSlowStart(slot) && occupancy.inFlight(slot) >= limit(slot)
            let answer = RouteAnswer(
                id: entry.request.id, node: candidate.node, upstream: candidate.address, backend: candidate.backend,
                model: candidate.model, queuedMilliseconds: Int(clamping: now - min(now, entry.arrivedAt)),
                reason: Scheduler.reason(candidate, card: card), retries: entry.retries, score: candidate.breakdown.header,
                stripNumCtx: strip, reportStart: reportStart, numCtx: fitted)
            entry.queueDeadline = nil
            entry.waitingFor = nil
            entry.decision = answer
            feed.record(DecisionFeed.Decision(
                sequence: 0, atMilliseconds: now, requestID: entry.request.id, model: entry.request.model, client: entry.request.client,
                action: "routed", node: candidate.node, servedModel: candidate.model, score: answer.score ?? "", reason: answer.reason ?? "",
                card: card))
            entries[key] = entry
            actions.append(.routed(key.proxy, answer))
        case var .queue(best):
            let slot = SlotKey(best.node, best.canonicalModel)
            considerPrewarm(best, card: card, now: now, into: &actions)
            // A request that waits for a drain holds the node (other models start
            // nothing there) only once it has waited `holdAfterMilliseconds`:
            // until then the node's hot models keep serving, and the hold stays
            // the guard against a load starved by a stream of small requests.
            if best.drains, now < entry.arrivedAt.addingSaturated(settings.holdAfterMilliseconds) { best.drains = false }
            if entry.queueDeadline != nil {
                // Re-scored while queued: keeps its place and its deadline.
                entry.waitingFor = slot
                waiting.waits(for: slot, reserves: best.drains)
                entries[key] = entry
                return .waits(slot, reserves: best.drains)
            }
            guard waiting.queue.count < settings.maxQueueLength else {
                refuse(key, entry, RouteRefusal(id: entry.request.id, code: .queueTimeout,
                                                message: "the queue is full (\(settings.maxQueueLength) requests)", retryAfter: 5), into: &actions)
                return .settled
            }
            feed.record(DecisionFeed.Decision(
                sequence: 0, atMilliseconds: now, requestID: entry.request.id, model: entry.request.model, client: entry.request.client,
                action: "queued", node: best.node, servedModel: best.model, score: best.breakdown.header,
                reason: Scheduler.reason(best, card: card), card: card))
            entry.waitingFor = slot
            // A request waits for this node:model: tickets held for it come back (the queue goes first).
            revokeTickets(slot: slot, into: &actions)
            let deadline = entry.arrivedAt.addingSaturated(entry.queueTimeout ?? settings.queueTimeoutMilliseconds)
            entry.queueDeadline = deadline
            waiting.waits(for: slot, reserves: best.drains)
            if waiting.nextRescore == nil || waiting.queue.isEmpty { waiting.nextRescore = now.addingSaturated(settings.rescoreIntervalMilliseconds) }
            waiting.queue.append(WaitQueue.Item(key: key, client: entry.request.client, deadline: deadline, slot: slot, reserves: best.drains))
            entries[key] = entry
            actions.append(.queued(key.proxy, RouteQueued(id: entry.request.id, timeoutMilliseconds: deadline > now ? deadline - now : 0)))
        case .notFound where entry.pinned != nil:
            let pin = entry.pinned ?? ""
            let message = fleet.contains(where: { $0.id == pin })
                ? "model '\(entry.request.model)' is not on node '\(pin)' (X-Herd-Node)"
                : "X-Herd-Node: no node '\(pin)' in the fleet"
            refuse(key, entry, RouteRefusal(id: entry.request.id, code: .modelNotFound, message: message), into: &actions)
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
        case .cannotSee:
            let names = ([entry.request.model] + entry.request.fallbacks).map { "'\($0)'" }.joined(separator: ", ")
            refuse(key, entry, RouteRefusal(id: entry.request.id, code: .incapable,
                                            message: "the request carries images and no model it names can see them (\(names): no vision capability)"),
                   into: &actions)
        case .wrongWork:
            let names = ([entry.request.model] + entry.request.fallbacks).map { "'\($0)'" }.joined(separator: ", ")
            let work = WorkKind(path: entry.request.path)
            let served = Set(card.eliminated.map { $0.reason }).sorted().prefix(3).joined(separator: "; ")
            refuse(key, entry, RouteRefusal(id: entry.request.id, code: .incapable,
                                            message: "no node serves \(names) for \(work.label) (\(entry.request.path)): \(served)"),
                   into: &actions)
        }
        return .settled
    }

    /// `--num-ctx-policy fit`: the `num_ctx` to send `candidate` (an Ollama
    /// node, a model control has a fit for): the loaded context when hot (no
    /// reload), else the fit, never below what the request needs (its
    /// prompt and output) nor below the client's own `num_ctx`.
    func fittedContext(_ candidate: ScoredCandidate, _ request: RouteRequest) -> Int? {
        guard settings.numCtxPolicy == .fit, candidate.backend == .ollama, request.api == .ollama,
              let fit = contextFit[candidate.canonicalModel] else { return nil }
        if candidate.hot, candidate.loadedContext > 0 {
            if let asked = request.numCtx, asked > candidate.loadedContext { return nil } // the client's larger context reloads it
            return candidate.loadedContext
        }
        let needs = request.estimatedTokens.addingSaturated(request.maxTokens ?? Int(saturating: CompletionTimeModel.Priors.outputTokens))
        return min(RequestLimits.numCtx.upperBound, max(fit, needs, request.numCtx ?? 0))
    }

    /// Takes a slot of `candidate`'s node:model for `entry` (a request sent
    /// now, or a ticket granted now): counts it in flight with its expected end.
    mutating func occupy(_ candidate: ScoredCandidate, _ entry: inout Entry, now: UInt64) -> SlotKey {
        let slot = SlotKey(candidate.node, candidate.canonicalModel)
        // Expected end: its own estimate without the wait (it starts now).
        let own = candidate.breakdown.load + candidate.breakdown.prefill + candidate.breakdown.decode
        entry.sentAt = now
        entry.expectedEnd = now.addingSaturated(UInt64(saturating: max(1, own.rounded())))
        entry.limitAtSend = learning.limit(slot)
        (entry.concurrency, entry.nodeBatch) = occupancy.occupy(slot, now: now, expectedEnd: entry.expectedEnd)
        entry.nodeAreaAtSend = occupancy.area(node: slot.node, now: now)
        entry.otherSendsAtSend = occupancy.otherModelSends(slot)
        if candidate.temperature != .hot { loads.started(slot, expectedMs: candidate.breakdown.load, now: now) }
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

    /// Whether a request to `path` generates tokens (not embeddings, rerank,
    /// speech, images, token counts or `/api/show`).
    package static func generates(path: String) -> Bool {
        switch path {
        case "/api/show", "/v1/messages/count_tokens": false
        default: WorkKind(path: path) == .chat
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
        request.vision = entry.request.vision
        request.work = WorkKind(path: entry.request.path)
        request.workUnits = entry.request.workUnits
        request.pinned = entry.pinned
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
        guard !waiting.queue.isEmpty else {
            waiting.nextRescore = nil
            return
        }
        if everyone {
            waiting.nextRescore = now.addingSaturated(settings.rescoreIntervalMilliseconds)
            waiting.reservations.removeAll(keepingCapacity: true)
        }
        let order = waiting.queue.fairOrder()
        let total = waiting.queue.count
        // Items not yet visited, per slot, and how many of them wait for a slot not known stuck.
        var remaining = waiting.perSlot
        var unstuck = total
        waiting.perSlot.removeAll(keepingCapacity: true)
        var stuck: [SlotKey] = []
        var kept: [WaitQueue.Item] = []
        var left: [WaitQueue.Item] = []
        var visited = 0
        while visited < total, everyone || unstuck > 0 {
            let item = waiting.queue.items[waiting.queue.index(visited, in: order)]
            visited += 1
            if let n = remaining[item.slot] { remaining[item.slot] = n > 1 ? n - 1 : nil }
            let known = stuck.contains(item.slot)
            if !known { unstuck -= 1 }
            if known, !everyone {
                waiting.perSlot[item.slot, default: 0] += 1
                kept.append(item)
                continue
            }
            guard entries[item.key]?.queueDeadline != nil, let entry = entries.removeValue(forKey: item.key) else {
                left.append(item)
                continue
            }
            if !everyone { waiting.releaseHold(item) }
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
        for (slot, n) in remaining { waiting.perSlot[slot, default: 0] += n }
        waiting.queue.finishPass(order: order, visited: visited, kept: kept, left: left)
        if waiting.queue.isEmpty { waiting.nextRescore = nil }
    }

    /// Takes a queued entry out of the queue's books.
    mutating func unqueue(_ key: RequestKey, _ entry: inout Entry) {
        guard entry.queueDeadline != nil else { return }
        if let item = waiting.queue.remove(key) { waiting.forget(item) }
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

    /// `1.5 s`, `30 s`: a wait said in a message.
    static func seconds(_ milliseconds: UInt64) -> String {
        milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(Double(milliseconds) / 1000) s"
    }

    mutating func trimRecentlyRefused() {
        if recentlyRefused.count > 4096 { recentlyRefused.removeAll() }
    }

    /// Frees the entry's slot.
    mutating func release(_ entry: inout Entry, now: UInt64? = nil) {
        guard let slot = entry.slot else { return }
        entry.slot = nil
        occupancy.release(slot, sentAt: entry.sentAt, expectedEnd: entry.expectedEnd, now: now)
    }

    package func limit(_ slot: SlotKey) -> Int {
        settings.maxConcurrencyPerModel ?? learning.limit(slot)
    }
}

extension Scheduler: RoutingLoad {
    package func inFlight(_ slot: SlotKey) -> Int { occupancy.inFlight(slot) }

    package func soonestEndMs(_ slot: SlotKey, now: UInt64) -> Double {
        guard let soonest = occupancy.soonestEnd(slot) else { return 0 }
        if soonest > now { return Double(soonest - now) }
        // Overdue: durations are heavy-tailed — a request that has run this much
        // past its estimate likely runs as much again (at least a quarter of a service time).
        return max(Double(now - soonest), (rates.slot(slot)?.serviceMs.value ?? 1_000) / 4)
    }

    package func queuedAhead(_ slot: SlotKey) -> Int { waiting.perSlot[slot] ?? 0 }

    package func nodeInFlight(_ node: String) -> Int { occupancy.inFlight(node: node) }

    package func largestLimit(node: String) -> Int {
        var largest = 0
        for (slot, learner) in learning.learners where slot.node == node { largest = max(largest, learner.limit) }
        return largest
    }

    package func nodeSoonestEndMs(_ node: String, now: UInt64) -> Double {
        var soonest = Double.infinity
        for slot in occupancy.slots.keys where slot.node == node { soonest = min(soonest, soonestEndMs(slot, now: now)) }
        return soonest.isFinite ? soonest : 0
    }

    package func drainMs(node: String, except model: String?, now: UInt64) -> Double {
        var latest = 0.0
        for (slot, last) in occupancy.lastEnds(node: node, except: model) {
            let remaining = last > now ? Double(last - now) : max(Double(now - last), (rates.slot(slot)?.serviceMs.value ?? 1_000) / 4)
            latest = max(latest, remaining)
        }
        return latest
    }

    package func reservedModel(node: String) -> String? { waiting.reservations[node] }

    package func loadingRemainingMs(_ slot: SlotKey, now: UInt64) -> Double? {
        loads.remainingMs(slot, now: now)
    }

    package func loadingModels(node: String) -> [String] { loads.models(on: node) }

    package func lastRouted(_ slot: SlotKey) -> UInt64 { occupancy.lastRouted(slot) }

    package func arrivalsPerMs(_ slot: SlotKey, now: UInt64) -> Double { occupancy.arrivalsPerMs(slot, now: now) }

    package func affinity(node: String, model: String, session: ContentHash?, prefix: ContentHash?) -> CompletionTimeModel.Affinity? {
        affinities.affinity(node: node, model: model, session: session, prefix: prefix)
    }
}

