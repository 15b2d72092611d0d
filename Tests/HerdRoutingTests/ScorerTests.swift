import HerdJSON
import HerdWire
import Testing
@testable import HerdRouting

/// A machine of the fleet for scoring tests: models with sizes, loaded ones
/// with their context, memory, GPUs and telemetry.
func machine(_ id: String, status: NodeStatus = .online, models: [(String, Int)] = [("m:8b", 4_000_000_000)], loaded: [String] = [],
             context: Int = 8192, memory: Int = 16_000_000_000, gpuFree: Int? = nil, kind: BackendKind = .ollama,
             telemetry: (inout Telemetry) -> Void = { _ in }) -> FleetNode {
    var t = Telemetry()
    if let gpuFree { t.gpus = [Telemetry.GPU(vendor: "nvidia", name: "gpu", memoryUsedBytes: 0, memoryTotalBytes: gpuFree)] }
    telemetry(&t)
    let sizes = Dictionary(uniqueKeysWithValues: models)
    return FleetNode(heartbeat: Heartbeat(nodeID: id, memoryAvailableBytes: memory, backends: [
        Heartbeat.Backend(kind: kind, url: "", address: "127.0.0.1:1", reachable: true,
                          models: models.map { Heartbeat.Model(name: $0.0, sizeBytes: $0.1) },
                          loaded: loaded.map { Heartbeat.LoadedModel(name: $0, sizeBytes: sizes[$0] ?? 0, contextLength: context) }),
    ], telemetry: t), lastSeenMilliseconds: 0, firstSeenMilliseconds: 0, status: status)
}

/// The live load as the scorer sees it, set by hand.
struct FakeLoad: RoutingLoad {
    var inFlightBy: [String: Int] = [:]
    var limitBy: [String: Int] = [:]
    var defaultLimit = 4
    var soonest: [String: Double] = [:]
    var ahead: [String: Int] = [:]
    var loading: [String: Double] = [:]
    var affinityBy: [String: CompletionTimeModel.Affinity] = [:]
    var routed: [String: UInt64] = [:]
    var rates = LearnedRates()
    var drain: [String: Double] = [:]
    var reserved: [String: String] = [:]
    var arrivals: [String: Double] = [:]

    func arrivalsPerMs(_ slot: SlotKey, now: UInt64) -> Double { arrivals[slot.description] ?? 0 }
    func inFlight(_ slot: SlotKey) -> Int { inFlightBy[slot.description] ?? 0 }
    func nodeInFlight(_ node: String) -> Int { inFlightBy.filter { $0.key.hasPrefix(node + "/") }.values.reduce(0, +) }
    func drainMs(node: String, except model: String?, now: UInt64) -> Double { drain[node] ?? 0 }
    func reservedModel(node: String) -> String? { reserved[node] }
    func limit(_ slot: SlotKey) -> Int { limitBy[slot.description] ?? defaultLimit }
    func soonestEndMs(_ slot: SlotKey, now: UInt64) -> Double { soonest[slot.description] ?? 0 }
    func queuedAhead(_ slot: SlotKey) -> Int { ahead[slot.description] ?? 0 }
    func loadingRemainingMs(_ slot: SlotKey, now: UInt64) -> Double? { loading[slot.description] }
    func loadingModels(node: String) -> [String] { loading.keys.filter { $0.hasPrefix(node + "/") }.map { String($0.dropFirst(node.count + 1)) } }
    func lastRouted(_ slot: SlotKey) -> UInt64 { routed[slot.description] ?? 0 }
    func affinity(node: String, model: String, session: ContentHash?, prefix: ContentHash?) -> CompletionTimeModel.Affinity? {
        affinityBy[node + "/" + model]
    }
    func nodeSoonestEndMs(_ node: String, now: UInt64) -> Double { soonest.filter { $0.key.hasPrefix(node + "/") }.values.min() ?? 0 }

    /// Teaches `node` a decode speed for `model` (ms per token at batch 1) and a prefill speed.
    mutating func measured(_ node: String, _ model: String = "m:8b", msPerToken: Double, prefillMsPerToken: Double = 0.5, tokens: Int = 100) {
        for _ in 0..<3 {
            rates.observe(LearnedRates.Observation(
                slot: SlotKey(node, model), ok: true, generates: true, batch: 1, promptTokens: 100, completionTokens: tokens,
                ttftMs: 50, durationMs: 50 + msPerToken * Double(tokens), streamed: true, backendPromptMs: prefillMsPerToken * 100,
                backendDecodeMs: msPerToken * Double(tokens)))
        }
    }
}

func decide(_ fleet: [FleetNode], _ models: [String] = ["m:8b"], load: FakeLoad = FakeLoad(), api: ClientAPI = .ollama,
            settings: Scorer.Settings = Scorer.Settings(), now: UInt64 = 1_000_000,
            _ shape: (inout ScoringRequest) -> Void = { _ in }) -> (RouteDecision, ScoreCard) {
    var request = ScoringRequest(api: api, models: models)
    request.promptTokens = 100
    shape(&request)
    return Scorer(settings: settings).decide(request, fleet: fleet, load: load, now: now)
}

func routedNode(_ result: (RouteDecision, ScoreCard)) -> String? {
    if case let .route(c) = result.0 { c.node } else { nil }
}

/// Each signal of the completion-time model moves the choice the way it should.
@Suite struct ScorerSignalTests {
    @Test func hotBeatsColdByTheLoadTerm() {
        let (decision, card) = decide([machine("cold", memory: 99_000_000_000), machine("hot", loaded: ["m:8b"])])
        guard case let .route(c) = decision else { Issue.record("no route"); return }
        #expect(c.node == "hot" && c.breakdown.load == 0)
        // With the hot one full, the cold one competes: its load is 1 s + 1 s/GB (prior) = 5 s.
        var busy = FakeLoad()
        busy.limitBy["hot/m:8b"] = 1
        busy.inFlightBy["hot/m:8b"] = 1
        busy.soonest["hot/m:8b"] = 200
        guard case let .queue(q) = decide([machine("cold", memory: 99_000_000_000), machine("hot", loaded: ["m:8b"])], load: busy).0 else {
            Issue.record("a 200 ms wait beats a 5 s load"); return
        }
        #expect(q.node == "hot" && q.breakdown.wait == 200)
        #expect(card.candidates.map(\.node) == ["hot", "cold"], "the card lists every candidate, the winner first")
    }

    @Test func aLongWaitLosesToALoad() {
        var busy = FakeLoad()
        busy.limitBy["hot/m:8b"] = 1
        busy.inFlightBy["hot/m:8b"] = 1
        busy.soonest["hot/m:8b"] = 20_000
        let (decision, _) = decide([machine("cold", memory: 99_000_000_000), machine("hot", loaded: ["m:8b"])], load: busy)
        guard case let .route(c) = decision else { Issue.record("a 20 s wait loses to a 5 s load"); return }
        #expect(c.node == "cold" && c.temperature == .cold && c.breakdown.load == 5_000)
    }

    @Test func aNodeThatAnsweredNothingTakesOneAtATimeWhileOthersHaveAnswered() {
        // "fast" has answered for the model (10 ms a token) and is full for
        // 20 s; "fresh" has answered nothing and serves one request already:
        // its speed is only a guess (the fastest node's figures), so it takes
        // no second one until that one comes back.
        var load = FakeLoad()
        load.measured("fast", msPerToken: 10)
        load.inFlightBy["fast/m:8b"] = 4
        load.soonest["fast/m:8b"] = 20_000
        load.inFlightBy["fresh/m:8b"] = 1
        let fleet = [machine("fast", loaded: ["m:8b"]), machine("fresh", loaded: ["m:8b"])]
        let (held, card) = decide(fleet, load: load)
        guard case .queue = held else { Issue.record("a guess must not take a second request: \(held)"); return }
        #expect(card.candidates.first { $0.node == "fresh" }.map { !$0.canStart } == true)
        // Its first answer measures it: then it takes more, up to its limit.
        var answered = load
        answered.measured("fresh", msPerToken: 12)
        #expect(routedNode(decide(fleet, load: answered)) == "fresh")
        // A fresh fleet, nothing measured anywhere, is not held: every node is a guess alike.
        var fresh = FakeLoad()
        fresh.inFlightBy["fresh/m:8b"] = 1
        #expect(routedNode(decide([machine("fresh", loaded: ["m:8b"])], load: fresh)) == "fresh")
        // X-Herd-Node still sends it there.
        #expect(routedNode(decide(fleet, load: load) { $0.pinned = "fresh" }) == "fresh")
    }

    @Test func theWaitCountsTheQueueAhead() {
        var load = FakeLoad()
        load.inFlightBy["a/m:8b"] = 4
        load.soonest["a/m:8b"] = 100
        load.ahead["a/m:8b"] = 8
        load.rates.observe(LearnedRates.Observation(slot: SlotKey("a", "m:8b"), ok: true, generates: true, batch: 4, promptTokens: 0,
                                                    completionTokens: 0, ttftMs: 0, durationMs: 2_000, streamed: false))
        let (decision, _) = decide([machine("a", loaded: ["m:8b"])], load: load)
        guard case let .queue(c) = decision else { Issue.record("must wait"); return }
        #expect(c.breakdown.wait == 100 + 8 * 2_000 / 4, "soonest end + ahead × service ÷ limit")
    }

    @Test func crowdingIsWhatAQueuedRequestCostsTheOnesAfterIt() {
        #expect(CompletionTimeModel.crowdMs(perSlot: 400, utilisation: 0) == 0)
        #expect(abs(CompletionTimeModel.crowdMs(perSlot: 400, utilisation: 0.5) - 400) < 1e-9, "ρ ÷ (1 − ρ) = 1 later request delayed a slot's share")
        #expect(abs(CompletionTimeModel.crowdMs(perSlot: 400, utilisation: 0.8) - 1_600) < 1e-9)
        #expect(abs(CompletionTimeModel.crowdMs(perSlot: 400, utilisation: 1e14) - 3_600) < 1e-6, "ρ capped at 0.9: 9 later requests at most")
        #expect(CompletionTimeModel.crowdMs(perSlot: 0, utilisation: 0.8) == 0)
        #expect(CompletionTimeModel.crowdMs(perSlot: 400, utilisation: -.infinity) == 0)
        #expect(CompletionTimeModel.crowdMs(perSlot: 400, utilisation: .nan) == 0)
    }

    /// A fast machine, full, 500 ms from a free slot; a slower one with room. Queued on the fast one the request
    /// finishes sooner, but it delays the ones after it there by at least its own time: a hot replica with room that
    /// finishes it within twice that takes it; one slower still does not.
    @Test func aQueuedRequestRanksAtTwiceItsTime() {
        func load(slowMsPerToken: Double) -> FakeLoad {
            var load = FakeLoad()
            load.measured("fast", msPerToken: 16)
            load.measured("slow", msPerToken: slowMsPerToken)
            load.inFlightBy["fast/m:8b"] = 4
            load.limitBy["fast/m:8b"] = 4
            load.soonest["fast/m:8b"] = 500
            return load
        }
        let fleet = [machine("fast", loaded: ["m:8b"]), machine("slow", loaded: ["m:8b"])]
        // (CPU machines: a full batch of 4 costs the fast one's requests +50 % per stream, 40 ms per token.)
        let (decision, card) = decide(fleet, load: load(slowMsPerToken: 60))
        guard case let .route(r) = decision else { Issue.record("the slower one with room"); return }
        #expect(r.node == "slow")
        let fast = card.candidates.first { $0.node == "fast" }
        #expect(fast.map { $0.ectMs < r.ectMs && r.ectMs < 2 * $0.ectMs } == true, "faster for itself, within twice for the slow one")
        #expect(fast.map { $0.breakdown.crowd == $0.ectMs && $0.breakdown.costMs == 2 * $0.ectMs } == true)
        #expect(fast?.breakdown.header.contains(" crowd=") == true)
        // Three times slower than queueing: the request queues for the fast one.
        guard case let .queue(q) = decide(fleet, load: load(slowMsPerToken: 120)).0 else { Issue.record("queue for the fast one"); return }
        #expect(q.node == "fast" && q.breakdown.crowd == q.ectMs)
    }

    /// A one-slot fast machine given requests faster than it serves them: each queued there delays about nine after it
    /// by a whole service, far more than its own time; a machine with room five times slower takes it.
    @Test func aCrowdedQueueSendsTheRequestToAHotReplicaWithRoom() {
        var load = FakeLoad()
        load.measured("fast", msPerToken: 16)
        load.measured("slow", msPerToken: 100)
        load.inFlightBy["fast/m:8b"] = 1
        load.limitBy["fast/m:8b"] = 1
        load.soonest["fast/m:8b"] = 500
        let fleet = [machine("fast", loaded: ["m:8b"]), machine("slow", loaded: ["m:8b"])]
        guard case let .queue(q) = decide(fleet, load: load).0 else { Issue.record("calm: queue for the fast one"); return }
        #expect(q.node == "fast" && q.breakdown.crowd == q.ectMs)
        // Given 2 requests a second, each holding the slot 1.65 s: ρ capped at 0.9, nine later requests each start 1.65 s later.
        load.arrivals["fast/m:8b"] = 0.002
        let (decision, card) = decide(fleet, load: load)
        guard case let .route(r) = decision else { Issue.record("crowded: the slower one with room"); return }
        #expect(r.node == "slow")
        let fast = card.candidates.first { $0.node == "fast" }
        #expect(fast.map { abs($0.breakdown.crowd - 9 * 1_650) < 1 && $0.ectMs < r.ectMs } == true, "faster for itself, dearer for the rest")
    }

    @Test func crowdingNeverBuysAColdLoad() {
        var load = FakeLoad()
        load.inFlightBy["hot/m:8b"] = 1
        load.limitBy["hot/m:8b"] = 1
        load.soonest["hot/m:8b"] = 2_000
        load.arrivals["hot/m:8b"] = 1
        guard case let .queue(q) = decide([machine("cold", memory: 99_000_000_000), machine("hot", loaded: ["m:8b"])], load: load).0 else {
            Issue.record("a 2 s wait beats a 5 s load, however crowded"); return
        }
        #expect(q.node == "hot" && q.breakdown.crowd > 0)
    }

    /// Each model's limit does not bound a node's sum: a slow CPU box given
    /// one request of each of five models ran every one five to ten times
    /// slower than expected. A node runs at most twice the requests it has
    /// shown it runs at once (a fresh one is not held); more wait here for
    /// its soonest end, or go where there is room.
    @Test func aNodeRunsAtMostTwiceWhatItHasShownItRunsAtOnce() {
        var load = FakeLoad()
        load.measured("cpu", msPerToken: 100) // its answers so far ran alone: one at once shown
        load.inFlightBy["cpu/other:1b"] = 1
        load.inFlightBy["cpu/third:1b"] = 1
        load.soonest["cpu/other:1b"] = 3_000
        load.soonest["cpu/third:1b"] = 9_000
        let models = [("m:8b", 4_000_000_000), ("other:1b", 1_000_000_000), ("third:1b", 1_000_000_000)]
        let fleet = [machine("cpu", models: models, loaded: ["m:8b", "other:1b", "third:1b"])]
        guard case let .queue(q) = decide(fleet, load: load).0 else { Issue.record("two in flight, one shown: it waits"); return }
        #expect(q.node == "cpu" && q.breakdown.wait == 3_000, "for the node's soonest end")
        #expect(q.inFlight == 0 && q.limit == 0)
        load.inFlightBy["cpu/third:1b"] = nil
        #expect(routedNode(decide(fleet, load: load)) == "cpu", "one beside it: within twice what it has shown")
        load.inFlightBy["cpu/third:1b"] = 1
        var fixed = Scorer.Settings()
        fixed.capsNodes = false
        #expect(routedNode(decide(fleet, load: load, settings: fixed)) == "cpu", "limits the operator fixed are not capped")
        var fresh = FakeLoad()
        fresh.inFlightBy = load.inFlightBy
        #expect(routedNode(decide(fleet, load: fresh)) == "cpu", "a node that has answered nothing is not held")
        // Shown three at once: six.
        var o = LearnedRates.Observation(slot: SlotKey("cpu", "m:8b"), ok: true, generates: true, batch: 1, promptTokens: 100,
                                         completionTokens: 100, ttftMs: 50, durationMs: 10_050, streamed: true)
        o.meanBatch = 3
        load.rates.observe(o)
        load.inFlightBy["cpu/other:1b"] = 4
        #expect(routedNode(decide(fleet, load: load)) == "cpu", "five beside it")
        load.inFlightBy["cpu/other:1b"] = 5
        #expect(routedNode(decide(fleet, load: load)) == nil, "six")
    }

    @Test func measuredDecodeSpeedPicksTheFasterMachine() {
        var load = FakeLoad()
        load.measured("slow", msPerToken: 100)
        load.measured("fast", msPerToken: 10)
        let fleet = [machine("slow", loaded: ["m:8b"]), machine("fast", loaded: ["m:8b"])]
        guard case let .route(c) = decide(fleet, load: load).0 else { Issue.record("no route"); return }
        #expect(c.node == "fast")
        #expect(abs(c.breakdown.decode - 100 * 10) < 1, "the measured mean output (100 tokens) × 10 ms")
        // Joining a batch of 8 on the fast one (it has run 8 at once before) costs more per token (the prior shape on a CPU: +50 % per stream) …
        var eight = LearnedRates.Observation(slot: SlotKey("fast", "other:1b"), ok: true, generates: true, batch: 8, promptTokens: 100,
                                             completionTokens: 100, ttftMs: 50, durationMs: 2_000, streamed: true)
        eight.meanBatch = 8
        load.rates.observe(eight)
        load.inFlightBy["fast/m:8b"] = 7
        load.limitBy["fast/m:8b"] = 16
        guard case let .route(d) = decide(fleet, load: load).0 else { Issue.record("no route"); return }
        #expect(d.node == "fast" && abs(d.breakdown.decode - 100 * 10 * (1 + 0.5 * 7)) < 1, "still 2.2× better than the slow one")
        // … +25 % on a GPU that holds the model.
        var gpu = machine("fast", loaded: ["m:8b"])
        gpu.heartbeat.backends[0].loaded[0].vramBytes = 4_000_000_000
        let gpus = [machine("slow", loaded: ["m:8b"]), gpu]
        guard case let .route(g) = decide(gpus, load: load).0 else { Issue.record("no route"); return }
        #expect(g.node == "fast" && abs(g.breakdown.decode - 100 * 10 * (1 + 0.25 * 7)) < 1)
        load.limitBy["fast/m:8b"] = 64
        load.inFlightBy["fast/m:8b"] = 40
        #expect(routedNode(decide(fleet, load: load)) == "slow", "… until the batch makes it slower than the idle machine")
    }

    @Test func anUnmeasuredNodeIsAssumedAsFastAsTheFastestMeasured() {
        var load = FakeLoad()
        load.measured("a", msPerToken: 10)
        let fleet = [machine("a", loaded: ["m:8b"]), machine("b", loaded: ["m:8b"])]
        load.routed["a/m:8b"] = 1
        #expect(routedNode(decide(fleet, load: load)) == "b", "b gets its turn, and so its measurement")
    }

    @Test func prefillUsesTheMeasuredRateAndThePromptEstimate() {
        var load = FakeLoad()
        load.measured("a", msPerToken: 10, prefillMsPerToken: 2)
        guard case let .route(c) = decide([machine("a", loaded: ["m:8b"])], load: load, { $0.promptTokens = 3_000 }).0 else {
            Issue.record("no route"); return
        }
        #expect(abs(c.breakdown.prefill - 6_000) < 0.01)
    }

    @Test func warmAndLoadingCostLessThanCold() {
        var fleet = [machine("warm", memory: 99_000_000_000), machine("cold", memory: 99_000_000_000)]
        fleet[0].recentlyUnloaded["m:8b"] = 999_000
        guard case let .route(c) = decide(fleet).0 else { Issue.record("no route"); return }
        #expect(c.node == "warm" && c.temperature == .warm && c.breakdown.load == 5_000 * 0.4)
        var load = FakeLoad()
        load.loading["cold/m:8b"] = 300
        guard case let .route(d) = decide(fleet, load: load).0 else { Issue.record("no route"); return }
        #expect(d.node == "cold" && d.temperature == .loading(remainingMs: 300) && d.breakdown.load == 300)
        // Warmth fades after 30 minutes.
        guard case let .route(e) = decide(fleet, now: 999_000 + 30 * 60_000).0 else { Issue.record("no route"); return }
        #expect(e.temperature == .cold)
    }

    @Test func expectedOutputTokens() {
        let fleet = [machine("a", models: [("m:8b", 4_000_000_000), ("deepseek-r1:8b", 4_000_000_000), ("embed:1b", 0)], loaded: ["m:8b", "deepseek-r1:8b", "embed:1b"])]
        func decode(_ model: String, _ shape: (inout ScoringRequest) -> Void = { _ in }) -> Double {
            guard case let .route(c) = decide(fleet, [model], shape).0 else { return -1 }
            return c.breakdown.decode
        }
        let plain = decode("m:8b")
        #expect(abs(plain - 256 * 4_000_000_000 / 40e9 * 1000) < 1, "prior: 256 tokens at weights ÷ 40 GB/s")
        #expect(abs(decode("deepseek-r1:8b") - 4 * plain) < 1, "a thinking model: × 4 until measured")
        #expect(abs(decode("deepseek-r1:8b") { $0.think = false } - plain) < 1, "unless the client turned thinking off")
        #expect(abs(decode("m:8b") { $0.maxOutputTokens = 64 } - plain / 4) < 1, "the client's own limit caps it")
        #expect(decode("embed:1b") { $0.generates = false } == 0, "embeddings generate nothing")
    }

    @Test func aGPUThatHoldsTheModelIsFasterThanACPUByPrior() {
        let fleet = [machine("cpu", memory: 99_000_000_000), machine("gpu", memory: 8_000_000_000, gpuFree: 24_000_000_000)]
        guard case let .route(c) = decide(fleet).0 else { Issue.record("no route"); return }
        #expect(c.node == "gpu")
    }

    /// A model not measured on a node that measured another is expected at
    /// the node's measured speed, its prompt too: a prior prefill beside a
    /// measured decode made a cold model on a fast machine seconds dearer
    /// than waiting for a slow one.
    @Test func anUnmeasuredModelReadsItsPromptAtTheNodesMeasuredSpeed() {
        var load = FakeLoad()
        for _ in 0..<3 {
            // 4 GB decoded at 10 ms per token (400 MB per ms, 12× the CPU prior); no prompt time measured.
            load.rates.observe(LearnedRates.Observation(slot: SlotKey("a", "m:8b"), ok: true, generates: true, batch: 1, promptTokens: 100,
                                                        completionTokens: 100, ttftMs: 1_000, durationMs: 1_000, streamed: false,
                                                        backendDecodeMs: 1_000, modelBytes: 4_000_000_000))
        }
        let fleet = [machine("a", models: [("m:8b", 4_000_000_000), ("q:3b", 3_000_000_000)], loaded: ["m:8b"], memory: 99_000_000_000)]
        guard case let .route(c) = decide(fleet, ["q:3b"], load: load).0 else { Issue.record("no route"); return }
        #expect(c.temperature == .cold && c.breakdown.rates == .node)
        #expect(abs(c.breakdown.prefill - 100 * 7.5 / 8) < 0.01, "3 GB at 400 MB per ms: 7.5 ms per token decoded, ÷ 8 (a CPU) per prompt token")
    }

    @Test func penaltiesMultiplyTheTime() {
        let calm = machine("calm", loaded: ["m:8b"])
        let hot = machine("hot", loaded: ["m:8b"]) { $0.thermal = .critical }
        let throttled = machine("throttled", loaded: ["m:8b"]) { $0.cpuThrottled = true }
        let pressed = machine("pressed", loaded: ["m:8b"]) { $0.pressure = .high }
        let meeting = machine("meeting", loaded: ["m:8b"]) { $0.cameraInUse = true }
        let late = machine("late", status: .degraded, loaded: ["m:8b"])
        let (_, card) = decide([calm, hot, throttled, pressed, meeting, late])
        let factors = Dictionary(uniqueKeysWithValues: card.candidates.map { ($0.node, $0.breakdown.factor) })
        #expect(factors == ["calm": 1, "hot": 3, "throttled": 1.5, "pressed": 1.5, "meeting": 4, "late": 2])
        #expect(card.candidates.first?.node == "calm")
        #expect(card.candidates.first { $0.node == "meeting" }?.penalties == ["in a meeting"])
        // Alone, a strained node still serves.
        #expect(routedNode(decide([meeting])) == "meeting")
    }

    @Test func recentErrorsWeighAndFade() {
        var load = FakeLoad()
        load.rates.failed(node: "flaky", at: 1_000_000)
        load.rates.failed(node: "flaky", at: 1_000_000)
        let fleet = [machine("flaky", loaded: ["m:8b"]), machine("steady", loaded: ["m:8b"])]
        let (_, card) = decide(fleet, load: load)
        #expect(card.candidates.first { $0.node == "flaky" }?.breakdown.factor == 3, "two fresh failures: × (1 + 2)")
        #expect(card.candidates.first?.node == "steady")
        let (_, later) = decide(fleet, load: load, now: 1_000_000 + 60_000)
        #expect(later.candidates.first { $0.node == "flaky" }?.breakdown.factor == 2, "a minute later they count half")
    }

    @Test func sessionAffinityPullsTowardTheCacheAndFadesWithTheQueue() {
        var load = FakeLoad()
        load.measured("a", msPerToken: 10, prefillMsPerToken: 5)
        load.measured("b", msPerToken: 10, prefillMsPerToken: 5)
        load.affinityBy["b/m:8b"] = .session
        load.routed["b/m:8b"] = 9
        let fleet = [machine("a", loaded: ["m:8b"]), machine("b", loaded: ["m:8b"])]
        guard case let .route(c) = decide(fleet, load: load, { $0.promptTokens = 2_000 }).0 else { Issue.record("no route"); return }
        #expect(c.node == "b" && c.affinity == .session)
        #expect(abs(c.breakdown.affinityGain - 10_000 * 0.8) < 0.01, "80 % of a 10 s prefill saved")
        load.inFlightBy["b/m:8b"] = 3
        guard case let .route(d) = decide(fleet, load: load, { $0.promptTokens = 2_000 }).0 else { Issue.record("no route"); return }
        #expect(abs(d.breakdown.affinityGain - 8_000 / 2.5) < 0.01 || d.node == "a", "the gain divides by 1 + in flight ÷ 2")
    }
}

/// Each elimination, with the reason it leaves in the card.
@Suite struct ScorerEliminationTests {
    func reasons(_ card: ScoreCard) -> [String: String] {
        Dictionary(uniqueKeysWithValues: card.eliminated.map { ($0.node, $0.reason) })
    }

    @Test func offlineTriedAndUnreachable() {
        var unreachable = machine("down", loaded: ["m:8b"])
        unreachable.heartbeat.backends[0].reachable = false
        let fleet = [machine("off", status: .offline, loaded: ["m:8b"]), machine("tried", loaded: ["m:8b"]), unreachable]
        let (decision, card) = decide(fleet) { $0.excluded = ["tried"] }
        #expect(decision == .noNode)
        #expect(reasons(card) == ["off": "offline", "tried": "already tried", "down": "backend unreachable"])
    }

    /// Images go only to a model that can see: a blind fallback is skipped,
    /// a model whose capabilities are unknown is not refused, and a request
    /// only blind models could take is a 400, not a wait.
    @Test func imagesGoOnlyToModelsThatSee() {
        func seeing(_ id: String, _ model: String, _ capabilities: [String]) -> FleetNode {
            var node = machine(id, models: [(model, 4_000_000_000)], loaded: [model])
            node.heartbeat.backends[0].models[0].capabilities = capabilities
            return node
        }
        let fleet = [seeing("text", "llama3:8b", ["completion", "tools"]), seeing("eyes", "llava:7b", ["completion", "vision"])]
        let (decision, card) = decide(fleet, ["llama3:8b", "llava:7b"]) { $0.vision = true }
        #expect(routedNode((decision, card)) == "eyes", "the blind first choice is skipped for the fallback that sees")
        #expect(reasons(card)["text"] == Scorer.blind)
        #expect(routedNode(decide(fleet, ["llama3:8b", "llava:7b"])) == "text", "without images the first choice stands")
        #expect(decide([fleet[0]], ["llama3:8b"]) { $0.vision = true }.0 == .cannotSee)
        #expect(routedNode(decide([seeing("unknown", "llama3:8b", [])], ["llama3:8b"]) { $0.vision = true }) == "unknown",
                "capabilities not known: not a no")
        var offline = seeing("off", "llava:7b", ["vision"])
        offline.status = .offline
        #expect(decide([fleet[0], offline], ["llama3:8b", "llava:7b"]) { $0.vision = true }.0 == .noNode, "a seeing node exists, offline: 503")
    }

    @Test func modelNowhereIsNotFoundWithTheModelsThatExist() {
        #expect(decide([machine("a")], ["zzz"]).0 == .notFound(known: ["m:8b"]))
        // An OpenAI-only backend takes Ollama-API requests too (the proxy translates them).
        #expect(routedNode(decide([machine("o", kind: .openai)])) == "o")
        #expect(routedNode(decide([machine("o", kind: .openai)], api: .openai)) == "o")
        #expect(routedNode(decide([machine("a", models: [("llama3:latest", 1)])], ["llama3"])) == "a", "llama3 is llama3:latest")
    }

    @Test func meetingPolicyPause() {
        var settings = Scorer.Settings()
        settings.meetingPolicy = .pause
        let meeting = machine("meeting", loaded: ["m:8b"]) { $0.microphoneInUse = true }
        let (decision, card) = decide([meeting], settings: settings)
        #expect(decision == .noNode && reasons(card)["meeting"] == "paused: in a meeting")
        settings.meetingPolicy = .ignore
        #expect(decide([meeting], settings: settings).1.candidates.first?.breakdown.factor == 1)
    }

    @Test func aColdLoadMustFitWeightsAndKVCache() {
        // 4 GB of weights + KV at 4096 tokens (prior: weights ÷ 32768 per token = 0.5 GB) = 4.5 GB.
        let small = machine("small", memory: 4_400_000_000)
        let (decision, card) = decide([small])
        #expect(decision == .noNode)
        #expect(reasons(card)["small"] == "does not fit: needs 4.5 GB at 4096 context, 4.4 GB usable")
        #expect(routedNode(decide([machine("small", memory: 4_600_000_000)])) == "small")
        // A larger num_ctx needs more KV cache.
        #expect(decide([machine("small", memory: 4_600_000_000)]) { $0.numCtx = 32_768 }.0 == .noNode)
        // Idle loaded models count as memory (Ollama evicts them); busy ones only once they drain.
        let crowded = machine("crowded", models: [("m:8b", 4_000_000_000), ("other:8b", 4_000_000_000)], loaded: ["other:8b"], memory: 1_000_000_000)
        #expect(routedNode(decide([crowded])) == "crowded")
        var load = FakeLoad()
        load.inFlightBy["crowded/other:8b"] = 1
        load.drain["crowded"] = 7_000
        guard case let .queue(waiting) = decide([crowded], load: load).0 else { Issue.record("should wait for the drain"); return }
        #expect(waiting.drains && !waiting.canStart && waiting.breakdown.wait == 7_000)
        // Memory that even a drained node lacks eliminates.
        let tiny = machine("tiny", models: [("m:8b", 4_000_000_000), ("other:8b", 1_000_000_000)], loaded: ["other:8b"], memory: 1_000_000_000)
        load.inFlightBy = ["tiny/other:8b": 1]
        #expect(decide([tiny], load: load).0 == .noNode)
        // A model herd started loading that no heartbeat lists yet holds memory like a busy one:
        // the node fits m:8b once it drains, it is not eliminated.
        let loadingThere = machine("loadingThere", models: [("m:8b", 4_000_000_000), ("big:27b", 17_000_000_000)], memory: 1_000_000_000)
        #expect(decide([loadingThere]).0 == .noNode, "no load known: 1 GB usable")
        var loadingLoad = FakeLoad()
        loadingLoad.loading["loadingThere/big:27b"] = 3_000
        loadingLoad.drain["loadingThere"] = 9_000
        guard case let .queue(afterLoad) = decide([loadingThere], load: loadingLoad).0 else { Issue.record("should wait for the drain"); return }
        #expect(afterLoad.drains && afterLoad.breakdown.wait == 9_000)
        // A measured KV cache replaces the prior.
        load = FakeLoad()
        load.rates.observeLoaded(model: "m:8b", loadedBytes: 6_000_000_000, weightBytes: 4_000_000_000, contextLength: 4096)
        #expect(decide([machine("small", memory: 5_000_000_000)], load: load).0 == .noNode, "2 GB of KV at 4096 measured")
    }

    @Test func aNodeDrainingForABigModelStartsNothingElse() {
        // "big" fits on the workstation only once "m:8b" drains; the slow box has it hot but is 20× slower.
        let gb = 1_000_000_000
        let workstation = machine("ws", models: [("m:8b", 4 * gb), ("big:27b", 17 * gb)], loaded: ["m:8b"], memory: 16 * gb)
        let slow = machine("slow", models: [("big:27b", 17 * gb)], loaded: ["big:27b"], memory: 64 * gb)
        var load = FakeLoad()
        load.measured("ws", "big:27b", msPerToken: 20, tokens: 500)
        load.measured("slow", "big:27b", msPerToken: 400, tokens: 500)
        load.measured("ws", msPerToken: 10)
        load.inFlightBy["ws/m:8b"] = 1
        load.drain["ws"] = 5_000
        guard case let .queue(best) = decide([workstation, slow], ["big:27b"], load: load).0 else {
            Issue.record("waiting for the drain beats a 20× slower hot node"); return
        }
        #expect(best.node == "ws" && best.drains)
        // While it waits, the node is held: m:8b (hot there, with room) waits for the drain too.
        load.reserved["ws"] = "big:27b"
        let (decision, card) = decide([workstation], ["m:8b"], load: load)
        guard case let .queue(held) = decision else { Issue.record("a held node starts nothing else"); return }
        #expect(held.node == "ws" && held.breakdown.wait == 5_000)
        #expect(Scheduler.reason(held, card: card).contains("waits for the node to drain"))
        load.reserved["ws"] = "m:8b"
        #expect(routedNode(decide([workstation], ["m:8b"], load: load)) == "ws", "held for its own model")
    }

    @Test func decodeJoinsTheWholeNodesBatch() {
        var load = FakeLoad()
        load.measured("a", msPerToken: 10)
        let one = decide([machine("a", loaded: ["m:8b"])], load: load).1.candidates[0].breakdown.decode
        load.inFlightBy["a/other:8b"] = 3
        let shared = decide([machine("a", models: [("m:8b", 1), ("other:8b", 1)], loaded: ["m:8b", "other:8b"])], load: load).1.candidates[0].breakdown.decode
        #expect(shared > one, "three requests of another model share the node: \(shared) vs \(one)")
    }

    @Test func learnedCapacityPausesPenalisesAndCapsMemory() {
        var busy = machine("owned", loaded: ["m:8b"])
        busy.heartbeat.capacity = Heartbeat.Capacity(availability: 0.05, memoryCeilingBytes: 16_000_000_000)
        #expect(routedNode(decide([busy])) == "owned", "busy now, but this hour was never learned: penalised, not paused")
        busy.heartbeat.capacity?.hourLearned = true
        let (decision, card) = decide([busy])
        #expect(decision == .noNode && reasons(card)["owned"] == "paused: its owner is using it (availability 5 %)")
        busy.heartbeat.capacity?.availability = 0.5
        let penalised = decide([busy]).1.candidates[0]
        #expect(penalised.breakdown.factor == 2 && penalised.penalties == ["availability 50 %"])
        // 16 GB free, but the owner uses all but 3 GB at this hour: a 4.5 GB load does not fit.
        var small = machine("small", memory: 16_000_000_000)
        small.heartbeat.capacity = Heartbeat.Capacity(availability: 1, memoryCeilingBytes: 3_000_000_000)
        #expect(decide([small]).0 == .noNode)
        small.heartbeat.capacity?.memoryCeilingBytes = 6_000_000_000
        #expect(routedNode(decide([small])) == "small")
    }

    @Test func criticalPressureAllowsNoColdLoad() {
        let starving = machine("starving", models: [("m:8b", 1), ("big:70b", 1)], loaded: ["m:8b"], memory: 99_000_000_000) { $0.pressure = .critical }
        #expect(routedNode(decide([starving])) == "starving", "a loaded model still serves")
        let (decision, card) = decide([starving], ["big:70b"])
        #expect(decision == .noNode && reasons(card)["starving"] == "memory pressure critical: no cold load")
    }

    @Test func aLoadedContextShorterThanThePrompt() {
        let short = machine("short", loaded: ["m:8b"], context: 2048)
        let long = machine("long", loaded: ["m:8b"], context: 32_768)
        let (_, card) = decide([short, long]) { $0.promptTokens = 5_000 }
        #expect(card.candidates.first?.node == "long")
        #expect(card.candidates.first { $0.node == "short" }?.penalties == ["context 2048 < prompt 5000"])
        // With a num_ctx that fits, the short one reloads at the larger context: cold.
        let (_, reload) = decide([short]) { $0.promptTokens = 5_000; $0.numCtx = 8_192 }
        #expect(reload.candidates.first?.temperature == .cold)
    }
}

/// Which model and node win when several could.
@Suite struct ScorerChoiceTests {
    @Test func fallbacksInOrderPreferringHot() {
        let fleet = [machine("a", models: [("big:70b", 1), ("small:1b", 1)], loaded: ["small:1b"]), machine("b", models: [("mid:8b", 1)])]
        guard case let .route(c) = decide(fleet, ["gone", "mid:8b", "small:1b"]).0 else { Issue.record("no route"); return }
        #expect(c.model == "small:1b", "the first hot fallback wins over a cold earlier one")
        guard case let .route(d) = decide(fleet, ["gone", "mid:8b"]).0 else { Issue.record("no route"); return }
        #expect(d.model == "mid:8b")
    }

    @Test func noColdLoadWhileAHotReplicaHasRoom() {
        var load = FakeLoad()
        load.measured("cpu", msPerToken: 50, tokens: 500)
        load.measured("gpu", msPerToken: 20, tokens: 500)
        // The cold GPU box would finish sooner (5 s load + 10 s) than the hot CPU box (25 s), not twice as soon: the hot one serves.
        let fleet = [machine("cpu", loaded: ["m:8b"]), machine("gpu", memory: 8_000_000_000, gpuFree: 24_000_000_000)]
        let (decision, card) = decide(fleet, load: load)
        #expect(card.candidates.first { $0.node == "gpu" }!.ectMs < card.candidates.first { $0.node == "cpu" }!.ectMs)
        #expect(routedNode((decision, card)) == "cpu")
        // 50 s on the CPU box: a load with room to spare is worth it.
        load = FakeLoad()
        load.measured("cpu", msPerToken: 100, tokens: 500)
        load.measured("gpu", msPerToken: 20, tokens: 500)
        #expect(routedNode(decide(fleet, load: load)) == "gpu")
        // Not if it must evict what the GPU box holds (then it must win 4×; 15 s vs 50 s is 3.3×): the evicted would reload.
        let full = [machine("cpu", loaded: ["m:8b"]),
                    machine("gpu", models: [("m:8b", 4_000_000_000), ("other:8b", 4_000_000_000)], loaded: ["other:8b"], memory: 1_000_000_000)]
        #expect(routedNode(decide(full, load: load)) == "cpu")
    }

    @Test func equalCandidatesTakeTurns() {
        var load = FakeLoad()
        let fleet = [machine("a", loaded: ["m:8b"]), machine("b", loaded: ["m:8b"])]
        load.routed["a/m:8b"] = 2
        load.routed["b/m:8b"] = 1
        #expect(routedNode(decide(fleet, load: load)) == "b")
        load.routed["b/m:8b"] = 3
        #expect(routedNode(decide(fleet, load: load)) == "a")
    }

    @Test func everyoneBusyQueuesForTheSoonest() {
        var load = FakeLoad()
        load.inFlightBy = ["a/m:8b": 4, "b/m:8b": 4]
        load.soonest = ["a/m:8b": 20_000, "b/m:8b": 100]
        guard case let .queue(c) = decide([machine("a", loaded: ["m:8b"]), machine("b", loaded: ["m:8b"])], load: load).0 else {
            Issue.record("must queue"); return
        }
        #expect(c.node == "b")
    }

    @Test func theScoreHeaderNamesEveryTerm() {
        let breakdown = ScoreBreakdown(wait: 300, load: 0, prefill: 12.4, decode: 500, factor: 1)
        #expect(breakdown.header == "ect_ms=812 wait=300 load=0 prefill=12 decode=500 rates=prior")
        let penalised = ScoreBreakdown(wait: 0, load: 0, prefill: 0, decode: 100, factor: 1.5, affinityGain: 20)
        #expect(penalised.header == "ect_ms=130 wait=0 load=0 prefill=0 decode=100 factor=1.50 affinity=-20 rates=prior")
    }

    @Test func theCardListsCandidatesAndEliminations() throws {
        let (_, card) = decide([machine("a", loaded: ["m:8b"]), machine("off", status: .offline, loaded: ["m:8b"])])
        let items = try #require(card.json.arrayValue)
        #expect(items.count == 2)
        #expect(items[0]["node"] == "a" && items[0]["state"] == "hot" && items[0]["ect_ms"]?.doubleValue != nil)
        #expect(items[1]["node"] == "off" && items[1]["eliminated"] == "offline")
    }
}

/// The learned rates behind the model's terms.
@Suite struct LearnedRatesTests {
    @Test func theDecodeLineFitsBatchSlowdown() {
        var curve = DecodeCurve(priorSlopeRatio: 0.25)
        #expect(curve.line == nil)
        curve.add(msPerToken: 20, batch: 1)
        #expect(curve.msPerToken(batch: 1) == 20)
        #expect(curve.msPerToken(batch: 5) == 40, "one batch size seen: the prior's shape (+25 % per stream)")
        for _ in 0..<20 {
            curve.add(msPerToken: 20, batch: 1)
            curve.add(msPerToken: 20, batch: 4)
        }
        let line = try? #require(curve.line)
        #expect(abs((line?.slope ?? 1)) < 0.01, "a backend whose speed does not depend on the batch: flat line")
        for _ in 0..<100 {
            curve.add(msPerToken: 10, batch: 1)
            curve.add(msPerToken: 40, batch: 4)
        }
        #expect(abs((curve.line?.intercept ?? 0) - 10) < 0.5 && abs((curve.line?.slope ?? 0) - 10) < 0.5, "old samples are forgotten")
    }

    @Test func observationsTeachEveryTerm() {
        var rates = LearnedRates()
        let slot = SlotKey("a", "m:8b")
        rates.observe(LearnedRates.Observation(slot: slot, ok: true, generates: true, batch: 1, promptTokens: 100, completionTokens: 50,
                                               ttftMs: 3_000, durationMs: 3_500, streamed: true, backendPromptMs: 200, backendDecodeMs: 500,
                                               backendLoadMs: 2_800, modelBytes: 4_000_000_000))
        #expect(rates.slot(slot)?.prefillMsPerToken.value == 2)
        #expect(rates.slot(slot)?.decode.msPerToken(batch: 1) == 10)
        #expect(rates.slot(slot)?.lastLoadMs == 2_800)
        #expect(rates.node("a")?.loadMsPerGB.value == 700)
        #expect(rates.model("m:8b")?.outputTokens.value == 50)
        // Without the backend's figures: the stream's own timing (minus a load it reported).
        let b = SlotKey("b", "m:8b")
        rates.observe(LearnedRates.Observation(slot: b, ok: true, generates: true, batch: 2, promptTokens: 100, completionTokens: 11,
                                               ttftMs: 100, durationMs: 300, streamed: true))
        #expect(rates.slot(b)?.prefillMsPerToken.value == 1)
        #expect(rates.slot(b)?.decode.msPerToken(batch: 2) == 20)
        // Failed requests teach no rate.
        rates.observe(LearnedRates.Observation(slot: SlotKey("c", "m:8b"), ok: false, generates: true, batch: 1, promptTokens: 100,
                                               completionTokens: 10, ttftMs: 1, durationMs: 2, streamed: true))
        #expect(rates.slot(SlotKey("c", "m:8b")) == nil)
        #expect(rates.model("m:8b")?.fastestDecode?.intercept == 10)
    }

    /// A backend queues a request before its first token, never after: the
    /// time after a stream's first byte is decoding even when it waited for a
    /// slot (a slow CPU box whose batch slowdown the learner took for waits
    /// never learned that slowdown, and stayed at the prior's).
    @Test func aStreamThatWaitedForASlotStillTeachesItsDecode() {
        var rates = LearnedRates()
        let slot = SlotKey("a", "m:8b")
        var waited = LearnedRates.Observation(slot: slot, ok: true, generates: true, batch: 2, promptTokens: 100, completionTokens: 101,
                                              ttftMs: 5_000, durationMs: 7_000, streamed: true)
        waited.waitedInside = true
        rates.observe(waited)
        #expect(rates.slot(slot)?.decode.samples == 1)
        #expect(rates.slot(slot)?.decode.msPerToken(batch: 2) == 20)
        #expect(rates.slot(slot)?.prefillMsPerToken.value == nil, "its first byte includes the wait: no prefill rate from it")
        // A whole answer that waited: its time cannot be split, nothing is learned of its decode.
        let b = SlotKey("b", "m:8b")
        var whole = LearnedRates.Observation(slot: b, ok: true, generates: true, batch: 2, promptTokens: 100, completionTokens: 100,
                                             ttftMs: 7_000, durationMs: 7_000, streamed: false)
        whole.waitedInside = true
        rates.observe(whole)
        #expect((rates.slot(b)?.decode.samples ?? 0) == 0)
    }

    /// The node's line shape (what a model it has not run yet is expected to
    /// lose per request beside it) comes from a slope fitted over batch sizes,
    /// not from the prior's shape a single batch size keeps.
    @Test func aNodesLineShapeIsLearnedOnlyFromAFittedSlope() {
        var rates = LearnedRates()
        let slot = SlotKey("a", "m:8b")
        func observe(msPerToken: Double, batch: Double) {
            var o = LearnedRates.Observation(slot: slot, ok: true, generates: true, batch: 1, promptTokens: 100, completionTokens: 100,
                                             ttftMs: 100, durationMs: 100 + msPerToken * 100, streamed: true, backendDecodeMs: msPerToken * 100,
                                             weightBytes: 4_000_000_000)
            o.meanBatch = batch
            rates.observe(o)
        }
        observe(msPerToken: 10, batch: 1)
        #expect(rates.node("a")?.decodeBytesPerMs.value == 400_000_000, "its speed is measured")
        #expect(rates.node("a")?.slopeRatio.value == nil, "its shape is not: one batch size")
        observe(msPerToken: 30, batch: 3)
        let ratio = try? #require(rates.node("a")?.slopeRatio.value)
        #expect(abs((ratio ?? 0) - 1) < 0.01, "10 ms alone, 30 at three: each request beside it adds 10 ms, the whole single-stream cost")
    }

    /// A request shares its decode with every request on its node while it
    /// runs, those sent after it included: the batch it is learned at is
    /// the mean over its time, not the count when it was sent.
    @Test func aDecodeIsLearnedAtTheMeanBatchOverItsTime() {
        var h = SchedulerHarness()
        var settings = Scheduler.Settings.perRequest
        settings.maxConcurrencyPerModel = 2
        h.scheduler = Scheduler(settings: settings)
        #expect(h.route(1).map(\.routedID) == [1])
        _ = h.advance(by: 1_000)
        #expect(h.route(2).map(\.routedID) == [2])
        _ = h.advance(by: 1_000)
        // Request 1 ran 2 s: alone for one, beside request 2 for the other — a mean batch of 1.5.
        h.scheduler.result(RouteResult(id: 1, node: "a", model: "m:1b", outcome: .ok, status: 200, ttftMilliseconds: 500,
                                       durationMilliseconds: 2_000, promptTokens: 100, completionTokens: 50,
                                       backendPromptMilliseconds: 500, backendDecodeMilliseconds: 1_500,
                                       upstreamTtftMilliseconds: 500, upstreamMilliseconds: 2_000),
                           from: SchedulerHarness.p1, fleet: h.fleet, now: h.now, into: &h.actions)
        let line = h.scheduler.rates.slot(SlotKey("a", "m:1b"))?.decode.line
        // 30 ms per token at batch 1.5, in the prior's shape (+25 % per stream): 30 ÷ 1.125 alone.
        #expect(abs((line?.intercept ?? 0) - 30 / 1.125) < 0.01, "learned at batch 1 it would be 30")
        var occupancy = Occupancy()
        _ = occupancy.occupy(SlotKey("n", "m"), now: 0, expectedEnd: 10)
        _ = occupancy.occupy(SlotKey("n", "other"), now: 500, expectedEnd: 10)
        #expect(occupancy.area(node: "n", now: 1_000) == 1_500)
        occupancy.release(SlotKey("n", "m"), sentAt: 0, expectedEnd: 10, now: 1_000)
        #expect(occupancy.area(node: "n", now: 2_000) == 2_500)
        occupancy.release(SlotKey("n", "other"), sentAt: 500, expectedEnd: 10, now: 2_000)
        #expect(occupancy.area(node: "n", now: 3_000) == 0, "an idle node keeps no reading")
    }

    @Test func failuresDecayWithAHalfLife() {
        var count = DecayingCount(halfLifeMilliseconds: 1_000)
        count.add(at: 0)
        count.add(at: 0)
        #expect(count.value(at: 0) == 2)
        #expect(abs(count.value(at: 1_000) - 1) < 1e-9)
        #expect(abs(count.value(at: 3_000) - 0.25) < 1e-9)
    }
}
