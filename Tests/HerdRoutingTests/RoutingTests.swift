import HerdJSON
import HerdWire
import Testing
@testable import HerdRouting

func node(_ id: String, status: NodeStatus = .online, models: [String], loaded: [String] = [], memory: Int = 8_000_000_000,
          kind: BackendKind = .ollama, port: Int = 1) -> FleetNode {
    FleetNode(heartbeat: Heartbeat(nodeID: id, memoryAvailableBytes: memory, backends: [
        Heartbeat.Backend(kind: kind, url: "", address: "127.0.0.1:\(port)", reachable: true,
                          models: models.map { Heartbeat.Model(name: $0) }, loaded: loaded.map { Heartbeat.LoadedModel(name: $0) }),
    ]), lastSeenMilliseconds: 0, firstSeenMilliseconds: 0, status: status)
}

/// A fleet of one node "a" with model m:1b.
let oneNodeFleet: [FleetNode] = [node("a", models: ["m:1b"])]

/// The scheduler in virtual time: one slot per node:model, events fed by hand.
struct SchedulerHarness {
    var scheduler: Scheduler
    var fleet = oneNodeFleet
    var now: UInt64 = 1_000
    var actions: [SchedulerAction] = []
    /// The QUEUED announcements so far (kept out of the actions `take` returns).
    var queued: [RouteQueued] = []

    init(queueTimeout: UInt64 = 30_000, maxRetries: Int = 2) {
        var settings = Scheduler.Settings.perRequest
        settings.maxConcurrencyPerModel = 1
        settings.queueTimeoutMilliseconds = queueTimeout
        settings.maxRetries = maxRetries
        scheduler = Scheduler(settings: settings)
    }

    static let p1 = ProxyKey(raw: 1)
    static let p2 = ProxyKey(raw: 2)

    mutating func route(_ id: UInt64, from proxy: ProxyKey = p1, model: String = "m:1b", stream: Bool = false) -> [SchedulerAction] {
        scheduler.route(RouteRequest(id: id, api: .ollama, path: "/api/chat", model: model, stream: stream, estimatedTokens: 100), from: proxy, fleet: fleet,
                        now: now, into: &actions)
        return take()
    }

    mutating func result(_ id: UInt64, from proxy: ProxyKey = p1) -> [SchedulerAction] {
        scheduler.result(RouteResult(id: id, node: "a", model: "m:1b", outcome: .ok, status: 200), from: proxy, fleet: fleet, now: now,
                         into: &actions)
        return take()
    }

    mutating func retry(_ id: UInt64, node: String = "a") -> [SchedulerAction] {
        scheduler.retry(RouteRetry(id: id, node: node, reason: "refused"), from: Self.p1, fleet: fleet, now: now, into: &actions)
        return take()
    }

    /// Moves virtual time on, as the driver's timer would: `expire` at each deadline passed.
    mutating func advance(by milliseconds: UInt64) -> [SchedulerAction] {
        let target = now + milliseconds
        while let deadline = scheduler.nextDeadline, deadline <= target {
            now = deadline
            scheduler.expire(now: now, fleet: fleet, into: &actions)
        }
        now = target
        return take()
    }

    mutating func take() -> [SchedulerAction] {
        defer { actions.removeAll() }
        return actions.filter {
            guard case let .queued(_, announcement) = $0 else { return true }
            queued.append(announcement)
            return false
        }
    }
}

extension SchedulerAction {
    var routedID: UInt64? { if case let .routed(_, answer) = self { answer.id } else { nil } }
    var refusal: RouteRefusal? { if case let .refused(_, refusal) = self { refusal } else { nil } }
    var prewarm: Prewarm? { if case let .prewarm(prewarm) = self { prewarm } else { nil } }
    var kind: String {
        switch self {
        case .routed: "routed"
        case .refused: "refused"
        case .finished: "finished"
        case .prewarm: "prewarm"
        case .queued: "queued"
        case .granted: "granted"
        case .revoked: "revoked"
        }
    }
}

extension Scheduler.Settings {
    /// Every request by ROUTE (no tickets): what the per-request tests take
    /// apart; `TicketTests` cover tickets.
    static var perRequest: Self {
        var settings = Self()
        settings.maxTicketsPerModel = 0
        return settings
    }
}

@Suite struct SchedulerTests {
    @Test func queuesAtTheLimitAndDispatchesWhenASlotFrees() {
        var h = SchedulerHarness()
        #expect(h.route(1).map(\.routedID) == [1])
        #expect(h.route(2).isEmpty, "the second waits: one slot")
        #expect(h.scheduler.queueLength == 1)
        let freed = h.result(1)
        #expect(freed.map(\.kind) == ["finished", "routed"])
        #expect(freed.last?.routedID == 2)
        #expect(h.scheduler.inFlight(node: "a", model: "m:1b") == 1)
        // A retry frees the slot and excludes the node: nothing else has the model.
        let retried = h.retry(2)
        #expect(retried.first?.refusal?.code == .noNode)
        #expect(h.scheduler.inFlight(node: "a", model: "m:1b") == 0)
    }

    @Test func aLateAnswerThatTheProxyDidNotWaitForTeachesNothing() {
        // Control was stopped: the proxy gave up on request 1, cancelled it and
        // routed it itself. Control, resumed, reads the ROUTE, the CANCEL and a
        // local RESULT in a row.
        var h = SchedulerHarness()
        #expect(h.route(1).map(\.routedID) == [1])
        h.scheduler.cancel(id: 1, from: SchedulerHarness.p1, fleet: h.fleet, now: h.now, into: &h.actions)
        #expect(h.scheduler.inFlight(node: "a", model: "m:1b") == 0, "the cancel frees the slot")
        h.scheduler.result(RouteResult(id: 1, node: "a", model: "m:1b", outcome: .ok, status: 200, ttftMilliseconds: 9_000,
                                       durationMilliseconds: 9_000, local: true, localReason: "control did not answer within 1000 ms"),
                           from: SchedulerHarness.p1, fleet: h.fleet, now: h.now, into: &h.actions)
        guard case let .finished(finished)? = h.actions.last else { Issue.record("not finished"); return }
        #expect(finished.decision == nil && finished.result.localReason != nil, "traced as the proxy's own decision")
        #expect(h.scheduler.rates.slot(SlotKey("a", "m:1b")) == nil, "its time is not the backend's under control's decision")
    }

    @Test func aQueuedRequestTimesOutInVirtualTime() {
        var h = SchedulerHarness(queueTimeout: 500)
        _ = h.route(1)
        #expect(h.route(2).isEmpty)
        #expect(h.queued == [RouteQueued(id: 2, timeoutMilliseconds: 500)], "the proxy is told how long it may wait")
        #expect(h.scheduler.nextDeadline == h.now + 500)
        #expect(h.advance(by: 499).isEmpty, "not a millisecond early")
        let expired = h.advance(by: 1)
        #expect(expired.first?.refusal?.code == .queueTimeout)
        #expect(expired.first?.refusal?.retryAfter != nil)
        #expect(h.scheduler.queueLength == 0)
        #expect(h.scheduler.nextDeadline == nil)
        // The first request was not disturbed, and its RESULT frees the slot.
        #expect(h.scheduler.inFlight(node: "a", model: "m:1b") == 1)
        #expect(h.result(1).map(\.kind) == ["finished"])
        #expect(h.route(3).map(\.routedID) == [3])
    }

    @Test func aRequestKeepsItsPlaceAndDeadlineWhileTheQueueMoves() {
        var h = SchedulerHarness(queueTimeout: 1_000)
        _ = h.route(1)
        _ = h.route(2)
        _ = h.advance(by: 600)
        _ = h.route(3)
        let moved = h.result(1)
        #expect(moved.last?.routedID == 2, "first in, first out")
        // 2 now holds the slot; 3 still waits with its own deadline (arrived at +600).
        #expect(h.advance(by: 999).isEmpty)
        #expect(h.advance(by: 1).first?.refusal?.code == .queueTimeout)
    }

    @Test func answersCarryTheQueueWaitAndTheRetryCount() {
        var h = SchedulerHarness()
        var two = h.fleet[0]
        two.heartbeat.nodeID = "b"
        h.fleet.append(two)
        guard case let .routed(_, first)? = h.route(1).first else { Issue.record("not routed"); return }
        #expect(first.retries == 0 && first.queuedMilliseconds == 0)
        guard case let .routed(_, second)? = h.retry(1, node: first.node).first else { Issue.record("not rerouted"); return }
        #expect(second.retries == 1)
        #expect(second.node != first.node)
        #expect(h.retry(1, node: second.node).first?.refusal?.code == .noNode)
    }

    @Test func theRetryBudgetIsControls() {
        var h = SchedulerHarness(maxRetries: 0)
        var two = h.fleet[0]
        two.heartbeat.nodeID = "b"
        h.fleet.append(two)
        _ = h.route(1)
        #expect(h.retry(1).first?.refusal?.code == .retriesExhausted)
    }

    @Test func aProxyThatGoesAwayReleasesEverything() {
        var h = SchedulerHarness()
        _ = h.route(1, from: SchedulerHarness.p1)
        #expect(h.route(1, from: SchedulerHarness.p2).isEmpty)
        h.scheduler.proxyGone(SchedulerHarness.p1, fleet: h.fleet, now: h.now, into: &h.actions)
        #expect(h.actions.map(\.routedID) == [1], "the waiting request got the freed slot")
    }

    @Test func resultsNameTheRequestAndTheDecision() {
        var h = SchedulerHarness()
        _ = h.route(1)
        guard case let .finished(finished)? = h.result(1).first else { Issue.record("no finished"); return }
        #expect(finished.result.id == 1)
        #expect(finished.request?.model == "m:1b")
        #expect(finished.decision?.reason.contains("only candidate") == true)
        #expect(finished.decision?.score.hasPrefix("ect_ms=") == true)
        #expect(finished.card?.candidates.map(\.node) == ["a"])
        // A refused request is still traced with what it asked.
        _ = h.route(2, model: "nope")
        guard case let .finished(refused)? = h.result(2).first else { Issue.record("no finished"); return }
        #expect(refused.request?.model == "nope")
    }
}

@Suite struct DrainTests {
    static let gb = 1_000_000_000
    static let node = FleetNode(heartbeat: Heartbeat(nodeID: "a", memoryAvailableBytes: 16 * gb, backends: [
        Heartbeat.Backend(kind: .ollama, url: "", address: "127.0.0.1:1", reachable: true,
                          models: [Heartbeat.Model(name: "small:1b", sizeBytes: 4 * gb), Heartbeat.Model(name: "big:27b", sizeBytes: 17 * gb)],
                          loaded: [Heartbeat.LoadedModel(name: "small:1b", sizeBytes: 4 * gb)]),
    ]), lastSeenMilliseconds: 0, firstSeenMilliseconds: 0, status: .online)

    struct Harness {
        var scheduler: Scheduler
        var actions: [SchedulerAction] = []

        init(holdAfter: UInt64) {
            var settings = Scheduler.Settings.perRequest
            settings.maxConcurrencyPerModel = 4
            settings.holdAfterMilliseconds = holdAfter
            scheduler = Scheduler(settings: settings)
        }

        mutating func route(_ id: UInt64, _ model: String, at now: UInt64) {
            scheduler.route(RouteRequest(id: id, api: .ollama, path: "/api/chat", model: model, stream: true), from: SchedulerHarness.p1,
                            fleet: [DrainTests.node], now: now, into: &actions)
        }

        mutating func finish(_ id: UInt64, at now: UInt64) {
            scheduler.result(RouteResult(id: id, node: "a", model: "small:1b", outcome: .ok, status: 200), from: SchedulerHarness.p1,
                             fleet: [DrainTests.node], now: now, into: &actions)
        }
    }

    /// A 27 GB model fits on "a" only once its busy small model drains: the
    /// request waits for that in herd's queue, and (holding at once) holds the
    /// node meanwhile — requests for the small model (hot there, with room)
    /// wait behind it instead of keeping the node busy forever.
    @Test func aBigModelWaitsForTheNodeToDrainAndHoldsIt() {
        var h = Harness(holdAfter: 0)
        h.route(1, "small:1b", at: 1_000)
        #expect(h.actions.map(\.routedID) == [1])
        h.actions.removeAll()
        h.route(2, "big:27b", at: 1_100)
        #expect(h.actions.map(\.kind) == ["queued"] && h.scheduler.queueLength == 1, "big waits for small:1b to finish")
        h.actions.removeAll()
        h.route(3, "small:1b", at: 1_200)
        #expect(h.actions.map(\.kind) == ["queued"] && h.scheduler.queueLength == 2, "the node is held for big: small waits though it has room")
        h.finish(1, at: 5_000)
        #expect(h.actions.compactMap(\.routedID).first == 2, "drained: big goes first")
    }

    /// By default the hold comes only after the waiting request has waited
    /// `holdAfterMilliseconds`: until then the small model's requests keep
    /// being served there; after, they wait behind the big one, which goes
    /// first once the node drains.
    @Test func theHoldComesAfterAWait() {
        var h = Harness(holdAfter: Scheduler.Settings().holdAfterMilliseconds)
        #expect(Scheduler.Settings().holdAfterMilliseconds == 15_000)
        h.route(1, "small:1b", at: 1_000)
        h.route(2, "big:27b", at: 1_100)
        h.actions.removeAll()
        h.route(3, "small:1b", at: 1_200)
        #expect(h.actions.map(\.routedID) == [3], "not held yet: the hot model keeps serving")
        h.actions.removeAll()
        // Big has waited 15 s: re-scored, it now holds the node.
        h.scheduler.expire(now: 16_200, fleet: [DrainTests.node], into: &h.actions)
        h.actions.removeAll()
        h.route(4, "small:1b", at: 16_300)
        #expect(h.actions.map(\.kind) == ["queued"], "held: small waits though it has room")
        h.actions.removeAll()
        h.finish(1, at: 17_000)
        #expect(h.actions.compactMap(\.routedID).isEmpty, "small:1b still busy (request 3): no drain yet")
        h.finish(3, at: 18_000)
        #expect(h.actions.compactMap(\.routedID).first == 2, "drained: big goes first")
    }
}

@Suite struct FairnessTests {
    static func request(_ id: UInt64, _ client: String) -> RouteRequest {
        RouteRequest(id: id, api: .ollama, path: "/api/chat", model: "m:1b", stream: false, client: client)
    }

    /// One slot; "burst" queues three, then "quiet" one: quiet's goes second, not fourth.
    @Test func clientsTakeTurnsInTheQueue() {
        let h = SchedulerHarness()
        var scheduler = h.scheduler
        var actions: [SchedulerAction] = []
        var routed: [UInt64] = []
        func take() { routed += actions.compactMap(\.routedID); actions.removeAll() }
        scheduler.route(Self.request(1, "burst"), from: SchedulerHarness.p1, fleet: h.fleet, now: h.now, into: &actions)
        for id in UInt64(2)...4 { scheduler.route(Self.request(id, "burst"), from: SchedulerHarness.p1, fleet: h.fleet, now: h.now, into: &actions) }
        scheduler.route(Self.request(5, "quiet"), from: SchedulerHarness.p1, fleet: h.fleet, now: h.now, into: &actions)
        take()
        #expect(routed == [1] && scheduler.queueLength == 4)
        for id in [UInt64(1), 2, 5, 3] {
            scheduler.result(RouteResult(id: id, node: "a", model: "m:1b", outcome: .ok, status: 200), from: SchedulerHarness.p1,
                             fleet: h.fleet, now: h.now, into: &actions)
            take()
        }
        #expect(routed == [1, 2, 5, 3, 4], "burst's first, then quiet's, then burst's others")
    }

    @Test func aClientOverItsCapIsAnswered429() {
        var settings = Scheduler.Settings.perRequest
        settings.maxInFlightPerClient = 2
        settings.maxConcurrencyPerModel = 100
        var scheduler = Scheduler(settings: settings)
        var actions: [SchedulerAction] = []
        for id in UInt64(1)...3 {
            scheduler.route(Self.request(id, "greedy"), from: SchedulerHarness.p1, fleet: oneNodeFleet, now: 0, into: &actions)
        }
        #expect(actions.compactMap(\.routedID) == [1, 2])
        #expect(actions.compactMap(\.refusal).map(\.code) == [.clientLimit])
        #expect(actions.compactMap(\.refusal).first?.retryAfter == 1)
        actions.removeAll()
        scheduler.route(Self.request(4, "other"), from: SchedulerHarness.p1, fleet: oneNodeFleet, now: 0, into: &actions)
        #expect(actions.compactMap(\.routedID) == [4], "another client is not capped by greedy's requests")
        actions.removeAll()
        scheduler.result(RouteResult(id: 1, node: "a", model: "m:1b", outcome: .ok, status: 200), from: SchedulerHarness.p1,
                         fleet: oneNodeFleet, now: 1, into: &actions)
        scheduler.route(Self.request(5, "greedy"), from: SchedulerHarness.p1, fleet: oneNodeFleet, now: 1, into: &actions)
        #expect(actions.compactMap(\.routedID) == [5], "one finished: room again")
    }
}

@Suite struct DecisionFeedTests {
    @Test func theRingKeepsTheNewestAndStaysBounded() throws {
        var feed = DecisionFeed(capacity: 3)
        for id in UInt64(1)...5 {
            feed.record(DecisionFeed.Decision(sequence: 0, atMilliseconds: id, requestID: id, model: "m\"\n", client: "c", action: "routed",
                                              node: "a", servedModel: "m", score: "", reason: "", card: ScoreCard()))
        }
        #expect(feed.decisions.map(\.requestID) == [3, 4, 5])
        let json = try JSONValue.parse(feed.json(since: 3))
        #expect(json["decisions"]?.arrayValue?.map { $0["request_id"]?.intValue } == [4, 5], "since seq 3")
        #expect(json["decisions"]?.arrayValue?.first?["model"]?.stringValue == "m\"\n", "client strings are escaped")
    }
}

/// A long queue re-scored on every freed slot must not cost a scoring per queued request.
@Suite struct LongQueueTests {
    @Test func aFreedSlotCostsAFewScoringsNotOnePerQueuedRequest() {
        var h = SchedulerHarness()
        for id in UInt64(1)...1_000 { _ = h.route(id) }
        #expect(h.scheduler.queueLength == 999)
        let before = h.scheduler.scorings
        #expect(h.result(1).compactMap(\.routedID) == [2])
        #expect(h.scheduler.scorings - before <= 2, "the head routes and the next is found stuck: \(h.scheduler.scorings - before) scorings")
        #expect(h.result(2).compactMap(\.routedID) == [3], "the queue keeps its order")
        #expect(h.scheduler.queueLength == 997)
        let timer = h.scheduler.scorings
        _ = h.advance(by: 1_000)
        #expect(h.scheduler.scorings - timer == 997, "each second the whole queue is re-scored (estimates change with time)")
        #expect(h.result(3).compactMap(\.routedID) == [4], "order kept after a whole pass")
    }

    @Test func aFreedSlotReachesAnotherModelBehindALongQueue() {
        var h = SchedulerHarness()
        h.fleet = [node("a", models: ["m:1b", "n:1b"], loaded: ["m:1b", "n:1b"])]
        #expect(h.route(1).compactMap(\.routedID) == [1])
        #expect(h.route(2, model: "n:1b").compactMap(\.routedID) == [2])
        for id in UInt64(3)...52 { #expect(h.route(id).isEmpty) }
        #expect(h.route(53, model: "n:1b").isEmpty)
        let before = h.scheduler.scorings
        h.scheduler.result(RouteResult(id: 2, node: "a", model: "n:1b", outcome: .ok, status: 200), from: SchedulerHarness.p1,
                           fleet: h.fleet, now: h.now, into: &h.actions)
        #expect(h.actions.compactMap(\.routedID) == [53], "n's freed slot goes to n's request at once, behind 50 of m")
        #expect(h.scheduler.scorings - before <= 2)
        h.actions.removeAll()
        #expect(h.result(1).compactMap(\.routedID) == [3])
    }

    @Test func deadlinesStillExpireInOrderWithAHint() {
        var h = SchedulerHarness(queueTimeout: 5_000)
        _ = h.route(1)
        _ = h.route(2)
        h.now += 2_000
        _ = h.route(3)
        let first = h.advance(by: 3_000)
        #expect(first.compactMap(\.refusal).map(\.id) == [2], "2 waited 5 s; 3 only 3 s")
        let second = h.advance(by: 2_000)
        #expect(second.compactMap(\.refusal).map(\.id) == [3])
        #expect(h.scheduler.queueLength == 0 && h.scheduler.nextDeadline == nil)
    }
}

@Suite struct PrewarmTests {
    static let gb = 1_000_000_000
    /// "fast" has m:8b hot (one slot); "slow" has it on disk, with memory to spare.
    static func fleet(slowMemory: Int = 32 * gb, slowKind: BackendKind = .ollama) -> [FleetNode] {
        [machine("fast", models: [("m:8b", 4 * gb)], loaded: ["m:8b"], memory: 32 * gb),
         machine("slow", models: [("m:8b", 4 * gb)], memory: slowMemory, kind: slowKind)]
    }

    /// Learned: m:8b answers 500 tokens, at 10 ms/token on fast and 100 on slow (measured there before).
    static func scheduler(prewarm: Bool = true) -> Scheduler {
        var settings = Scheduler.Settings.perRequest
        settings.maxConcurrencyPerModel = 1
        settings.prewarm = prewarm
        var scheduler = Scheduler(settings: settings)
        var observations: [LearnedRates.Observation] = []
        for (node, decodeMs) in [("fast", 5_000.0), ("slow", 50_000)] {
            for _ in 0..<8 {
                observations.append(LearnedRates.Observation(
                    slot: SlotKey(node, "m:8b"), ok: true, generates: true, batch: 1, promptTokens: 10, completionTokens: 500, ttftMs: 20,
                    durationMs: decodeMs, streamed: true, backendPromptMs: 10, backendDecodeMs: decodeMs, backendLoadMs: nil, modelBytes: 0,
                    weightBytes: 4 * gb))
            }
        }
        scheduler.restore(observations)
        return scheduler
    }

    static func route(_ scheduler: inout Scheduler, _ ids: ClosedRange<UInt64>, fleet: [FleetNode], now: UInt64 = 1_000) -> [SchedulerAction] {
        var actions: [SchedulerAction] = []
        for id in ids {
            scheduler.route(RouteRequest(id: id, api: .ollama, path: "/api/chat", model: "m:8b", stream: true), from: SchedulerHarness.p1,
                            fleet: fleet, now: now, into: &actions)
        }
        return actions
    }

    /// Request 3 would wait 10 s for fast, longer than slow's ~5 s load; it
    /// still waits for fast (slow would take 50 s to answer it), but slow
    /// starts loading the model, once.
    @Test func aLongQueueOnTheHotNodeWarmsTheModelOnANodeWithRoom() {
        var scheduler = Self.scheduler()
        let actions = Self.route(&scheduler, 1...6, fleet: Self.fleet())
        #expect(actions.compactMap(\.routedID) == [1])
        #expect(scheduler.queueLength == 5)
        let prewarms = actions.compactMap(\.prewarm)
        #expect(prewarms.map(\.node) == ["slow"] && prewarms.first?.model == "m:8b", "one pre-warm, on slow: \(actions.map(\.kind))")
        #expect(scheduler.feed.decisions.contains { $0.action == "prewarm" && $0.node == "slow" })
        #expect(scheduler.prewarmCount == 1)
    }

    @Test func aWarmedNodeCountsAsLoadedUntilAHeartbeatSaysOtherwise() {
        var scheduler = Self.scheduler()
        _ = Self.route(&scheduler, 1...6, fleet: Self.fleet())
        var actions: [SchedulerAction] = []
        scheduler.prewarmFinished(node: "slow", model: "m:8b", ok: true, loadMs: 4_200, fleet: Self.fleet(), now: 6_000, into: &actions)
        #expect(scheduler.rates.slot(SlotKey("slow", "m:8b"))?.lastLoadMs == 4_200, "the load time is learned")
        #expect(scheduler.loadingRemainingMs(SlotKey("slow", "m:8b"), now: 6_000) == 0, "as good as hot")
        // No heartbeat shows it loaded within the trust window: it is cold again.
        scheduler.fleetChanged(fleet: Self.fleet(), now: 6_000 + LoadsUnderWay.prewarmTrustMilliseconds, into: &actions)
        #expect(scheduler.loadingRemainingMs(SlotKey("slow", "m:8b"), now: 17_000) == nil)
    }

    @Test func aFailedPrewarmIsNotRetriedWithinTheCooldown() {
        var scheduler = Self.scheduler()
        _ = Self.route(&scheduler, 1...3, fleet: Self.fleet())
        var actions: [SchedulerAction] = []
        scheduler.prewarmFinished(node: "slow", model: "m:8b", ok: false, loadMs: nil, fleet: Self.fleet(), now: 2_000, into: &actions)
        #expect(scheduler.loadingRemainingMs(SlotKey("slow", "m:8b"), now: 2_000) == nil)
        let again = Self.route(&scheduler, 4...8, fleet: Self.fleet(), now: 3_000)
        #expect(again.compactMap(\.prewarm).isEmpty, "cooldown")
        // Later: the queue has timed out and fast is free again; a new queue forms.
        scheduler.expire(now: 40_000, fleet: Self.fleet(), into: &actions)
        scheduler.result(RouteResult(id: 1, node: "fast", model: "m:8b", outcome: .ok, status: 200), from: SchedulerHarness.p1,
                         fleet: Self.fleet(), now: 40_000, into: &actions)
        let later = Self.route(&scheduler, 9...11, fleet: Self.fleet(), now: 2_000 + scheduler.settings.prewarmCooldownMilliseconds)
        #expect(later.compactMap(\.prewarm).map(\.node) == ["slow"], "after the cooldown")
    }

    @Test func noPrewarmThatWouldEvictOrOnAnotherBackendOrWhenOff() {
        var tight = Self.scheduler()
        #expect(Self.route(&tight, 1...6, fleet: Self.fleet(slowMemory: 3 * Self.gb)).compactMap(\.prewarm).isEmpty, "does not fit")
        var llama = Self.scheduler()
        #expect(Self.route(&llama, 1...6, fleet: Self.fleet(slowKind: .openai)).compactMap(\.prewarm).isEmpty, "not Ollama")
        var off = Self.scheduler(prewarm: false)
        #expect(Self.route(&off, 1...6, fleet: Self.fleet()).compactMap(\.prewarm).isEmpty, "--no-prewarm")
    }
}
