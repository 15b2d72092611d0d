import HerdJSON
import HerdTestSupport
import Testing

/// `--num-ctx-policy fit` against a fake Ollama that reloads a model to change
/// its context: the fit is set on a cold load, hot requests keep the loaded
/// context (no reloads), and a fit that makes the first byte slower is undone
/// by itself — the lesson of the router we replace (6× TTFT for days).
@Suite(.serialized) struct ContextFitTests {
    static let chat = #"{"model":"llama3:8b","stream":true,"messages":[{"role":"user","content":"a short question"}]}"#

    struct Run {
        let fleet: TestFleet
        func fit() -> JSONValue? {
            (try? JSONValue.parse(fleet.getControl("/api/v1/models").body))?["models"]?.arrayValue?
                .first { $0["name"]?.stringValue == "llama3:8b" }?["context_fit"]
        }
        func stats() -> JSONValue? {
            try? JSONValue.parse(fleet.request("GET", "/_fake/stats", body: nil, headers: [:], port: fleet.backendPorts["A"]!).body)
        }
        func loadedContext() -> Int? {
            let ps = try? JSONValue.parse(fleet.request("GET", "/api/ps", body: nil, headers: [:], port: fleet.backendPorts["A"]!).body)
            return ps?["models"]?.arrayValue?.first?["context_length"]?.intValue
        }
        func chats(_ n: Int) {
            for _ in 0..<n { #expect(fleet.post("/api/chat", ContextFitTests.chat).status == 200) }
        }
    }

    /// Learns, unloads the model, and sends the requests that follow its next (fitted) cold load.
    static func fittedRun(_ backend: [String]) throws -> Run {
        let fleet = TestFleet(controlArguments: ["--num-ctx-policy", "fit"])
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b", "--tokens", "4", "--first-byte-delay-ms", "20"] + backend)
        try fleet.startControl()
        try fleet.addNode("a", backend: "A")
        try fleet.waitForNodes(1)
        let run = Run(fleet: fleet)
        run.chats(22)
        #expect(waitUntil(seconds: 5) { run.fit()?["phase"]?.stringValue == "trying" }, "\(String(describing: run.fit()))")
        #expect(run.fit()?["num_ctx"]?.intValue == 2048, "small prompts: at least 2,048")
        #expect(run.stats()?["reloads"]?.intValue == 0, "the model hot at its own context: no reload while learning")
        run.chats(3)
        #expect(run.stats()?["reloads"]?.intValue == 0, "a fit applies on cold loads only; hot requests keep the loaded context")
        try fleet.script("A", #"{"loaded":[]}"#)
        #expect(waitUntil(seconds: 5) {
            ((try? JSONValue.parse(fleet.getControl("/api/fleet").body))?["nodes"]?.arrayValue?.first?["backends"]?.arrayValue?.first?["loaded"]?
                .arrayValue?.isEmpty) == true
        })
        run.chats(1)
        #expect(run.stats()?["reloads"]?.intValue == 1 && run.loadedContext() == 2048, "the cold load got the fit")
        #expect(waitUntil(seconds: 5) { fleet.getControl("/api/fleet").text.contains("\"loaded\":[\"llama3:8b\"]") })
        run.chats(12)
        return run
    }

    @Test func aFitThatMakesTheFirstByteSlowerIsUndone() throws {
        let run = try Self.fittedRun(["--ttft-grows-as-context-shrinks"])
        defer { run.fleet.shutdown() }
        let fit = run.fit()
        #expect(fit?["phase"]?.stringValue == "undone", "\(String(describing: fit))")
        let before = fit?["ttft_before_ms"]?.doubleValue ?? 0, after = fit?["ttft_after_ms"]?.doubleValue ?? 0
        #expect(before >= 15 && before < 60 && after > 60, "20 ms at 8,192, 80 ms at 2,048: \(before) → \(after)")
        #expect(run.fleet.control?.output.contains("context fit: llama3:8b at num_ctx 2048 undone") == true)
        run.chats(1)
        #expect(run.stats()?["reloads"]?.intValue == 2 && run.loadedContext() == 8192, "undone: the next request reloads it at its own context")
        run.chats(3)
        #expect(run.stats()?["reloads"]?.intValue == 2, "and it stays there")
    }

    @Test func aFitThatCostsNothingIsKeptWithoutReloads() throws {
        let run = try Self.fittedRun(["--context-reloads"])
        defer { run.fleet.shutdown() }
        let fit = run.fit()
        #expect(fit?["phase"]?.stringValue == "kept", "\(String(describing: fit))")
        #expect(run.stats()?["reloads"]?.intValue == 1 && run.loadedContext() == 2048, "hot requests carry the loaded context: one load in all")
        // A client's own smaller num_ctx does not reload it either (it gets the loaded context).
        #expect(run.fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false,"messages":[],"options":{"num_ctx":1024}}"#).status == 200)
        #expect(run.stats()?["reloads"]?.intValue == 1 && run.loadedContext() == 2048)
    }
}
