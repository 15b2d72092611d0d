import HerdWire
import Testing
@testable import HerdRouting

/// `herd benchmark`'s results as routing's starting point, and `X-Herd-Node`
/// pinning (how the benchmark drives one node past herd's learned limit).
@Suite struct BenchmarkPriorTests {
    static func step(_ c: Int, _ perSecond: Double, errors: Int = 0) -> BenchmarkPrior.Step {
        BenchmarkPrior.Step(concurrency: c, requests: 10, errors: errors, perSecond: perSecond, ttftMs: 50, durationMs: 1_000,
                            promptTokens: 100, outputTokens: 64)
    }

    @Test func theKneeIsWhereThroughputStopsGrowingByATenth() {
        #expect(BenchmarkPrior.knee([Self.step(1, 50), Self.step(2, 95), Self.step(4, 180), Self.step(8, 190)]) == 4)
        #expect(BenchmarkPrior.knee([Self.step(1, 50), Self.step(2, 52)]) == 1, "a one-slot server")
        #expect(BenchmarkPrior.knee([Self.step(1, 50), Self.step(2, 95), Self.step(4, 400, errors: 1)]) == 2, "a step with errors ends the climb")
        #expect(BenchmarkPrior.knee([Self.step(1, 0)]) == 1)
        #expect(BenchmarkPrior.knee([]) == 1)
    }

    @Test func outsideValuesAreNotBelieved() {
        var prior = BenchmarkPrior(node: "a", model: "m:1b", kind: .chat, knee: 2, steps: [Self.step(1, 50)], atMs: 0)
        #expect(prior.problem == nil)
        for knee in [0, -1, 1025, Int.max] {
            prior.knee = knee
            #expect(prior.problem != nil, "knee \(knee)")
        }
        prior.knee = 2
        for bad in [Double.nan, .infinity, -1, 1e14] {
            var p = prior
            p.steps[0].perSecond = bad
            #expect(p.problem != nil, "per_second \(bad)")
            p = prior
            p.steps[0].ttftMs = bad
            #expect(p.problem != nil, "ttft \(bad)")
        }
        var long = prior
        long.node = String(repeating: "n", count: 300)
        #expect(long.problem != nil)
        var many = prior
        many.steps = Array(repeating: Self.step(1, 1), count: 33)
        #expect(many.problem != nil)
    }

    @Test func aBenchmarkedSlotStartsAtItsKneeOutOfSlowStartUnderTheReportedCeiling() {
        var learning = Learning(initialConcurrency: 2)
        let slot = SlotKey("a", "m:1b")
        #expect(learning.limit(slot) == 2 && learning.inSlowStart(slot))
        learning.benchmarked(BenchmarkPrior(node: "a", model: "m:1b", kind: .chat, knee: 6, steps: [Self.step(1, 50), Self.step(8, 300)], atMs: 0))
        #expect(learning.limit(slot) == 6 && !learning.inSlowStart(slot))
        learning.learn(slot) { _ in }
        #expect(learning.limit(slot) == 6 && learning.learners[slot]?.slowStart == false, "its learner starts there")
        #expect(learning.rates.slot(slot)?.decodeSource == .benchmark)
        // A node that reports 4 slots: the knee never goes above it.
        learning.reported(node: "a", parallel: 4)
        #expect(learning.limit(slot) == 4)
        learning.learn(slot) { _ in }
        #expect(learning.learners[slot]?.reported == 4 && learning.limit(slot) == 4)
        // Another node:model keeps the setting.
        #expect(learning.limit(SlotKey("b", "m:1b")) == 2)
    }

    @Test func aLimitLearnedBeforeARestartIsWhereTheLearnerStarts() {
        var learning = Learning(initialConcurrency: 2)
        let slot = SlotKey("a", "m:1b")
        // A learner out of slow start is what is kept; one still in slow start is not.
        learning.learn(slot) { $0.observe(.init(concurrency: 2, ok: false, busy: true, ttftMs: 0, durationMs: 0)) }
        learning.learn(SlotKey("b", "m:1b")) { _ in }
        #expect(learning.settled.map { "\($0.0)=\($0.1)" } == ["\(slot)=1"])

        var restarted = Learning(initialConcurrency: 2)
        restarted.remember(slot, limit: 5)
        for bad in [0, -3, 1025, Int.max] { restarted.remember(SlotKey("c", "m:1b"), limit: bad) }
        #expect(restarted.limit(slot) == 5 && !restarted.inSlowStart(slot))
        #expect(restarted.limit(SlotKey("c", "m:1b")) == 2 && restarted.inSlowStart(SlotKey("c", "m:1b")), "a limit out of range is not believed")
        restarted.learn(slot) { _ in }
        #expect(restarted.learners[slot]?.slowStart == false && restarted.limit(slot) == 5, "its learner starts there")
        // Under what the node reports, and a newer benchmark replaces it.
        restarted.reported(node: "a", parallel: 3)
        #expect(restarted.limit(slot) == 3)
        restarted.benchmarked(BenchmarkPrior(node: "a", model: "m:1b", kind: .chat, knee: 2, steps: [Self.step(1, 50)], atMs: 0))
        #expect(restarted.limit(slot) == 2 && restarted.remembered[slot] == nil)
    }

    @Test func seededRatesFollowTheMeasuredLine() throws {
        var rates = LearnedRates()
        // 20 ms per token alone, 25 ms at 4 (per stream); the first byte after 50 ms of a 100-token prompt.
        let steps = [
            BenchmarkPrior.Step(concurrency: 1, requests: 5, perSecond: 50, ttftMs: 50, durationMs: 50 + 63 * 20, promptTokens: 100, outputTokens: 64),
            BenchmarkPrior.Step(concurrency: 4, requests: 20, perSecond: 160, ttftMs: 50, durationMs: 50 + 63 * 25, promptTokens: 100, outputTokens: 64),
        ]
        rates.seed(BenchmarkPrior(node: "a", model: "m:1b", kind: .chat, knee: 4, steps: steps, atMs: 0))
        let slot = try #require(rates.slot(SlotKey("a", "m:1b")))
        #expect(abs((slot.decode.msPerToken(batch: 1) ?? 0) - 20) < 0.5)
        #expect(abs((slot.decode.msPerToken(batch: 4) ?? 0) - 25) < 0.5)
        #expect(abs((slot.prefillMsPerToken.value ?? 0) - 0.5) < 0.01)
        #expect(rates.model("m:1b")?.fastestDecode != nil, "a node not yet measured is expected as fast")
        var embed = LearnedRates()
        embed.seed(BenchmarkPrior(node: "a", model: "e", kind: .embed, knee: 1,
                                  steps: [BenchmarkPrior.Step(concurrency: 1, requests: 10, perSecond: 40, ttftMs: 25, durationMs: 25)], atMs: 0))
        #expect(abs((embed.slot(SlotKey("a", "e"))?.msPerUnit.value ?? 0) - 25) < 0.01)
    }

    /// `X-Herd-Node`: only the named node, and herd's limit does not hold it back.
    @Test func aPinnedRequestGoesToItsNodeAtOnce() {
        var h = SchedulerHarness()
        h.fleet = [node("a", models: ["m:1b"], loaded: ["m:1b"], port: 1), node("b", models: ["m:1b"], loaded: ["m:1b"], port: 2)]
        func pinned(_ id: UInt64, _ to: String, model: String = "m:1b") -> [SchedulerAction] {
            var actions: [SchedulerAction] = []
            h.scheduler.route(RouteRequest(id: id, api: .ollama, path: "/api/chat", model: model, stream: false), from: SchedulerHarness.p1,
                              fleet: h.fleet, now: h.now, pinned: to, into: &actions)
            return actions.filter { $0.kind != "queued" }
        }
        for id in UInt64(1)...3 {
            let actions = pinned(id, "b")
            guard case let .routed(_, answer)? = actions.first else {
                Issue.record("request \(id): \(actions.map(\.kind))")
                continue
            }
            #expect(answer.node == "b", "limit 1, yet each goes to b now")
        }
        #expect(h.scheduler.inFlight(node: "b") == 3 && h.scheduler.inFlight(node: "a") == 0)
        // An unpinned request still respects the limit: a has room.
        #expect(h.route(4).compactMap(\.routedID) == [4] && h.scheduler.inFlight(node: "a") == 1)
        #expect(pinned(5, "nowhere").compactMap(\.refusal).first?.message == "X-Herd-Node: no node 'nowhere' in the fleet")
        #expect(pinned(6, "a", model: "x:1b").compactMap(\.refusal).first?.message == "model 'x:1b' is not on node 'a' (X-Herd-Node)")
    }
}
