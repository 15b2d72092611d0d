import HerdRouting
import HerdWire
import Testing
@testable import herd_control

/// The context fitter's rules, request by request: what counts as a first
/// byte, when a fit is tried, and when it is kept or undone.
@Suite struct ContextFitterTests {
    static func finished(ttft: Double, numCtx: Int? = nil, stream: Bool = true, load: Double? = nil, prompt: Int = 100, clientCtx: Int? = nil,
                         backend: BackendKind = .ollama) -> FinishedRequest {
        var request = RouteRequest(id: 1, api: .ollama, path: "/api/chat", model: "m:7b", stream: stream)
        request.numCtx = clientCtx
        return FinishedRequest(
            result: RouteResult(id: 1, node: "a", model: "m:7b", outcome: .ok, status: 200, promptTokens: prompt, completionTokens: 50,
                                backendLoadMilliseconds: load, upstreamTtftMilliseconds: ttft),
            request: request, decision: RouteAnswer(id: 1, node: "a", upstream: "127.0.0.1:1", backend: backend, model: "m:7b", numCtx: numCtx))
    }

    @Test func aFitIsTriedOnlyWithEnoughUseAndFirstBytes() {
        var fitter = ContextFitter()
        for _ in 0..<30 { #expect(fitter.observe(Self.finished(ttft: 40, stream: false)) == nil) }
        #expect(fitter.fits.isEmpty, "non-streamed answers teach use, not first bytes")
        for _ in 0..<9 { _ = fitter.observe(Self.finished(ttft: 40, load: 3_000)) }
        #expect(fitter.fits.isEmpty, "a first byte that loaded the model is not one")
        for _ in 0..<9 { _ = fitter.observe(Self.finished(ttft: 40, backend: .openai)) }
        for _ in 0..<9 { _ = fitter.observe(Self.finished(ttft: 40, clientCtx: 4096)) }
        #expect(fitter.fits.isEmpty, "other servers and a client's own context say nothing")
        for _ in 0..<9 { #expect(fitter.observe(Self.finished(ttft: 40)) == nil) }
        #expect(fitter.observe(Self.finished(ttft: 40)) == .trying(model: "m:7b", fit: 2048, p99: 150, ttftBefore: 40))
        #expect(fitter.fits == ["m:7b": 2048])
    }

    @Test func theFitGrowsWithUseAndIsJudgedByFirstBytes() {
        var fitter = ContextFitter()
        for _ in 0..<20 { _ = fitter.observe(Self.finished(ttft: 100, prompt: 6_000)) }
        #expect(fitter.fits == ["m:7b": 9_216], "p99 6,050 × 1.5 = 9,075, rounded up to 256")
        for _ in 0..<20 { _ = fitter.observe(Self.finished(ttft: 500, numCtx: 8_192)) }
        #expect(fitter.models["m:7b"]?.phase == .trying, "requests at another context are not the fit's")
        for i in 0..<9 { #expect(fitter.observe(Self.finished(ttft: 110 + Double(i), numCtx: 9_216)) == nil) }
        #expect(fitter.observe(Self.finished(ttft: 110, numCtx: 9_216)) == .kept(model: "m:7b", fit: 9_216, ttftBefore: 100, ttftAfter: 113))
        for _ in 0..<19 { _ = fitter.observe(Self.finished(ttft: 400, numCtx: 9_216)) }
        let change = fitter.observe(Self.finished(ttft: 400, numCtx: 9_216))
        #expect(change == .undone(model: "m:7b", fit: 9_216, ttftBefore: 100, ttftAfter: 400), "judged again every 10, on the last 20: worse now")
        #expect(fitter.fits.isEmpty)
        for _ in 0..<40 { _ = fitter.observe(Self.finished(ttft: 100)) }
        #expect(fitter.fits.isEmpty, "not tried again")
    }
}
