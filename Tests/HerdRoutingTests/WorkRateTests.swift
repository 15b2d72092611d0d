import HerdJSON
import HerdWire
import Testing
@testable import HerdRouting

/// Speech, images, embeddings and rerank are timed by their size at the rate
/// measured per unit on each node, not by tokens.
@Suite struct WorkRateTests {
    func stt(_ id: String, loaded: Bool = true) -> FleetNode {
        machine(id, models: [("whisper", 100_000_000)], loaded: loaded ? ["whisper"] : [], kind: .stt)
    }

    /// Teaches `node` a rate for `model`: jobs of `units` that took `ms`.
    func measured(_ load: inout FakeLoad, _ node: String, _ model: String = "whisper", units: Double, ms: Double) {
        for _ in 0..<3 {
            var o = LearnedRates.Observation(slot: SlotKey(node, model), ok: true, generates: false, batch: 1, promptTokens: 0,
                                             completionTokens: 0, ttftMs: ms, durationMs: ms, streamed: false)
            o.workUnits = units
            load.rates.observe(o)
        }
    }

    func transcribe(_ fleet: [FleetNode], load: FakeLoad, seconds: Double) -> (RouteDecision, ScoreCard) {
        decide(fleet, ["whisper"], load: load, api: .openai) { request in
            request.work = .stt
            request.workUnits = seconds
            request.promptTokens = 0
        }
    }

    @Test func theMeasuredRatePerUnitPicksTheFasterServer() {
        var load = FakeLoad()
        measured(&load, "slow", units: 10, ms: 5_000) // 500 ms per audio second
        measured(&load, "fast", units: 10, ms: 1_000) // 100 ms per audio second
        guard case let .route(c) = transcribe([stt("slow"), stt("fast")], load: load, seconds: 30).0 else { Issue.record("no route"); return }
        #expect(c.node == "fast")
        #expect(abs(c.breakdown.decode - 3_000) < 1, "30 s of audio × 100 ms")
        #expect(c.breakdown.prefill == 0 && c.breakdown.header.contains("work=3000") && !c.breakdown.header.contains("decode="))
        // The fast one busy with its only slot: a 30 s job waits there, so the slow one wins a short job.
        let fast = SlotKey("fast", "whisper").description
        load.limitBy[fast] = 1
        load.inFlightBy[fast] = 1
        load.soonest[fast] = 20_000
        #expect(routedNode(transcribe([stt("slow"), stt("fast")], load: load, seconds: 5)) == "slow")
    }

    @Test func beforeMeasurementThePriorAndTheFleetsFastest() {
        var inputs = CompletionTimeModel.Inputs()
        inputs.work = .tts
        inputs.workUnits = 200
        #expect(CompletionTimeModel.workMs(inputs).ms == 200 * 15)
        #expect(CompletionTimeModel.workMs(inputs).source == .prior)
        inputs.workUnits = 0
        #expect(CompletionTimeModel.workMs(inputs).ms == CompletionTimeModel.priorJobMs(.tts), "a job of unknown size")
        var slot = SlotRates()
        slot.serviceMs.add(700)
        inputs.slot = slot
        #expect(CompletionTimeModel.workMs(inputs).ms == 700, "… or the measured mean service time")
        var model = ModelRates()
        model.fastestMsPerUnit = 4
        inputs = CompletionTimeModel.Inputs()
        inputs.work = .image
        inputs.workUnits = 2
        inputs.model = model
        #expect(CompletionTimeModel.workMs(inputs) == (8, .fleet))
        for work in WorkKind.allCases where work != .chat { #expect(CompletionTimeModel.priorMsPerUnit(work) > 0) }
    }

    @Test func aJobThatWaitedInsideTeachesNoRate() {
        var rates = LearnedRates()
        var o = LearnedRates.Observation(slot: SlotKey("a", "sd"), ok: true, generates: false, batch: 1, promptTokens: 0,
                                         completionTokens: 0, ttftMs: 9_000, durationMs: 9_000, streamed: false)
        o.workUnits = 1
        o.waitedInside = true
        rates.observe(o)
        #expect(rates.slot(SlotKey("a", "sd"))?.msPerUnit.value == nil)
        o.waitedInside = false
        rates.observe(o)
        #expect(rates.slot(SlotKey("a", "sd"))?.msPerUnit.value == 9_000)
        #expect(rates.model(SlotKey("a", "sd").model)?.fastestMsPerUnit == 9_000)
    }

    @Test func anEmbeddingModelTakesNoChat() {
        var node = machine("o", models: [("nomic-embed-text", 300_000_000)], loaded: ["nomic-embed-text"])
        node.heartbeat.backends[0].models[0].capabilities = ["embedding"]
        let chat = decide([node], ["nomic-embed-text"])
        guard case .wrongWork = chat.0 else { Issue.record("\(chat.0)"); return }
        #expect(chat.1.eliminated.first?.reason.contains("the model can: embedding") == true)
        let embed = decide([node], ["nomic-embed-text"]) { request in
            request.work = .embed
            request.generates = false
        }
        #expect(routedNode(embed) == "o")
        let show = decide([node], ["nomic-embed-text"]) { $0.generates = false }
        #expect(routedNode(show) == "o", "/api/show of it still goes there")
    }
}
