import HerdJSON
import HerdTestSupport
import Testing
@testable import herd_control

/// `herd benchmark`: what it plans from the fleet, and the real thing —
/// load through the router pinned to each node, the table, the knee, the
/// results stored and used by the next routing decisions, after a restart too.
@Suite(.serialized) struct BenchmarkTests {
    static func fleetJSON(_ nodes: [String]) throws -> JSONValue {
        try JSONValue.parse(Array(("{\"nodes\":[" + nodes.joined(separator: ",") + "]}").utf8))
    }

    @Test func thePlanSkipsCallsBusyHoursAndServersItCannotMeasure() throws {
        let fleet = try Self.fleetJSON([
            #"{"id":"gpu","status":"online","telemetry":{},"backends":[{"kind":"ollama","models":["llama3:8b","nomic-embed-text"],"loaded":["llama3:8b"],"capabilities":{"nomic-embed-text":["embedding"],"llama3:8b":["completion"]}}]}"#,
            #"{"id":"laptop","status":"online","telemetry":{"camera_in_use":true},"backends":[{"kind":"ollama","models":["llama3:8b"],"loaded":[]}]}"#,
            #"{"id":"mini","status":"online","telemetry":{},"capacity":{"availability":0.2,"hour_learned":true},"backends":[{"kind":"openai","models":["qwen"],"loaded":["qwen"]}]}"#,
            #"{"id":"speech","status":"online","telemetry":{},"backends":[{"kind":"stt","models":["whisper"],"loaded":[]}]}"#,
            #"{"id":"gone","status":"offline","telemetry":{},"backends":[]}"#,
        ])
        let plan = BenchmarkPlan.make(fleet: fleet, models: nil, nodes: nil, kinds: [.chat, .embed], force: false)
        #expect(plan.targets.map { "\($0.node)/\($0.model)/\($0.kind.rawValue)/\($0.loaded)" } == ["gpu/llama3:8b/chat/true", "gpu/nomic-embed-text/embed/false"])
        let reasons = plan.skipped.map { "\($0.node): \($0.reason)" }.joined(separator: "\n")
        #expect(reasons.contains("laptop: its owner is in a call") && reasons.contains("mini: a busy hour: its owner leaves 20 % free")
                && reasons.contains("speech: a stt server") && reasons.contains("gone: it is offline"), "\(reasons)")
        let text = plan.describe(stepSeconds: 10, ladder: BenchmarkPlan.ladder(max: 32))
        #expect(text.contains("nomic-embed-text  embed  will be LOADED, and unloaded after") && text.contains("1, 2, 4, 8, … 32 at once"), "\(text)")

        let forced = BenchmarkPlan.make(fleet: fleet, models: ["llama3:8b", "qwen"], nodes: nil, kinds: [.chat], force: true)
        #expect(forced.targets.map(\.node) == ["gpu", "laptop", "mini"], "--force runs in calls and busy hours; --models and --kinds filter")
        #expect(forced.targets.first { $0.node == "mini" }?.unloadable == false, "only Ollama is unloaded")
        #expect(BenchmarkPlan.make(fleet: fleet, models: nil, nodes: ["mini"], kinds: [.chat], force: false).targets.isEmpty)
    }

    @Test func durationsAndLadders() {
        #expect(BenchmarkCommand.milliseconds("60s") == 60_000 && BenchmarkCommand.milliseconds("2m") == 120_000)
        #expect(BenchmarkCommand.milliseconds("90") == 90_000 && BenchmarkCommand.milliseconds("1h") == 3_600_000)
        #expect(BenchmarkCommand.milliseconds("1e14s") == nil && BenchmarkCommand.milliseconds("-5s") == nil && BenchmarkCommand.milliseconds("x") == nil)
        #expect(BenchmarkPlan.ladder(max: 1) == [1] && BenchmarkPlan.ladder(max: 6) == [1, 2, 4, 6] && BenchmarkPlan.ladder(max: 8) == [1, 2, 4, 8])
        let bad = ProcessRunner.run(ProcessRunner.executable("herd"), ["benchmark", "--duration", "1e14s"])
        #expect(bad.status != 0 && bad.output.contains("--duration"), "\(bad.output)")
    }

    /// Node a: a server with 2 slots that says nothing of them; node b: a
    /// model not loaded. The benchmark finds a's knee, loads and unloads b's
    /// model, stores both, and routing starts from them — after a restart too.
    @Test func itMeasuresStoresAndRoutingUsesTheFigures() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b", "--slots", "2", "--no-props", "--tokens", "16", "--token-delay-ms", "15"])
        try fleet.addBackend("B", arguments: ["--models", "phi3:mini", "--loaded", "none", "--tokens", "16", "--token-delay-ms", "15"])
        try fleet.startControl()
        try fleet.addNode("a", backend: "A")
        try fleet.addNode("b", backend: "B")
        try fleet.waitForNodes(2)
        let herd = ProcessRunner.executable("herd")
        let connection = ["--port", String(fleet.controlPort), "--router-port", String(fleet.proxyPort)]

        let dry = ProcessRunner.run(herd, ["benchmark", "--dry-run"] + connection)
        #expect(dry.status == 0 && dry.output.contains("b  phi3:mini  chat  will be LOADED") && dry.output.contains("a  llama3:8b  chat  loaded"), "\(dry.output)")
        #expect(fleet.backendRequests("A") == 0 && fleet.backendRequests("B") == 0, "a dry run sends nothing")

        let run = ProcessRunner.run(herd, ["benchmark", "--duration", "6s", "--max-concurrency", "4"] + connection)
        #expect(run.status == 0, "\(run.output)\n\(fleet.logs)")
        #expect(run.output.contains("tokens/s") && run.output.contains("knee: 2 at once"), "a's two slots: \(run.output)")
        #expect(run.output.contains("unloaded (it was not loaded before)") && run.output.contains("stored 2 results"), "\(run.output)")
        let stats = try JSONValue.parse(fleet.request("GET", "/_fake/stats", body: nil, headers: [:], port: fleet.backendPorts["B"]!).body)
        #expect(stats["unloads"]?.intValue == 1)

        let stored = try JSONValue.parse(fleet.getControl("/api/v1/benchmarks").body)
        let results = stored["benchmarks"]?.arrayValue ?? []
        let a = results.first { $0["node"]?.stringValue == "a" }
        #expect(results.count == 2 && a?["knee"]?.intValue == 2 && (a?["steps"]?.arrayValue?.count ?? 0) >= 3, "\(stored.serialized())")
        let one = a?["steps"]?.arrayValue?.first
        #expect((one?["per_second"]?.doubleValue ?? 0) > 20 && (one?["per_second"]?.doubleValue ?? 0) < 80, "about 1000/15 tokens/s alone: \(stored.serialized())")

        func limit() -> Int? {
            (try? JSONValue.parse(fleet.getControl("/api/fleet").body))?["nodes"]?.arrayValue?
                .first { $0["id"]?.stringValue == "a" }?["concurrency"]?["llama3:8b"]?.intValue
        }
        #expect(limit() == 2, "the learner starts at the knee")
        let next = fleet.post("/api/chat", #"{"model":"phi3:mini","messages":[{"role":"user","content":"hi"}],"stream":false}"#)
        #expect(next.status == 200 && (next.header("X-Herd-Score") ?? "").contains("rates=benchmark"), "\(next.headers)")

        try fleet.restartControl(onNewPort: false)
        try fleet.waitForNodes(2)
        #expect(limit() == 2, "after a restart too: \(fleet.getControl("/api/fleet").text)")
    }

    /// A restart does not send a node:model back to slow start: control saves
    /// the limits it learned when it stops (and every minute) and starts its
    /// learners there — unless a newer benchmark says otherwise.
    @Test func aLearnedLimitOutlivesARestart() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b", "--slots", "8", "--no-props"])
        try fleet.startControl()
        try fleet.addNode("a", backend: "A")
        try fleet.waitForNodes(1)
        func limit() -> Int? {
            (try? JSONValue.parse(fleet.getControl("/api/fleet").body))?["nodes"]?.arrayValue?
                .first { $0["id"]?.stringValue == "a" }?["concurrency"]?["llama3:8b"]?.intValue
        }
        #expect(limit() == nil, "nothing learned yet")
        // A benchmark puts the learner out of slow start at 3 (a request makes
        // it); stopping control saves it.
        let body = #"{"results":[{"node":"a","model":"llama3:8b","knee":3,"steps":[{"concurrency":1,"requests":4,"per_second":50},{"concurrency":4,"requests":8,"per_second":150}]}]}"#
        #expect(fleet.request("POST", "/api/v1/benchmarks", body: body, headers: [:], port: fleet.controlPort).status == 201)
        let chat = fleet.post("/api/chat", #"{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}],"stream":false}"#)
        #expect(chat.status == 200)
        #expect(limit() == 3)
        #expect(fleet.control?.stop(seconds: 20) == true)
        let store = try LearnedLimitStore(path: fleet.dataDirectory + "/herd.db")
        let saved = try store.load(sinceMs: 0)
        #expect(saved.map { "\($0.node) \($0.model) \($0.limit)" } == ["a llama3:8b 3"], "\(saved)")
        let savedAt = try #require(saved.first?.atMs)

        // Learned since (newer than the benchmark): the learner starts there; a row out of range is not believed.
        try store.save([("a", "llama3:8b", 6)], atMs: savedAt + 1)
        try store.save([("a", "phi3:mini", 1025), ("a\u{1}", "llama3:8b", 4)], atMs: savedAt + 1)
        try fleet.startControl()
        try fleet.waitForNodes(1)
        #expect(limit() == 6, "after a restart: \(fleet.getControl("/api/fleet").text)")
        #expect(fleet.logs.contains("learned concurrency restored for 1 node:models"), "\(fleet.logs)")

        // Older than the benchmark: the benchmark's knee stands.
        #expect(fleet.control?.stop(seconds: 20) == true)
        try store.save([("a", "llama3:8b", 5)], atMs: 1)
        try fleet.startControl()
        try fleet.waitForNodes(1)
        #expect(limit() == 3, "\(fleet.getControl("/api/fleet").text)")
    }

    @Test func storingNeedsTheFleetKeyAndSaneFigures() throws {
        let fleet = TestFleet(controlArguments: ["--fleet-key", "a-fleet-key-of-enough-length"])
        defer { fleet.shutdown() }
        try fleet.startControl()
        func post(_ body: String, key: Bool = true) -> RawResponse {
            fleet.request("POST", "/api/v1/benchmarks", body: body, headers: key ? ["Authorization": "Bearer a-fleet-key-of-enough-length"] : [:],
                          port: fleet.controlPort)
        }
        let good = #"{"results":[{"node":"a","model":"m:1b","knee":2,"steps":[{"concurrency":1,"requests":4,"per_second":50},{"concurrency":2,"requests":8,"per_second":99}]}]}"#
        #expect(post(good, key: false).status == 401)
        #expect(post(good).status == 201)
        for bad in [
            #"{"results":[{"node":"a","model":"m:1b","knee":1e14,"steps":[{"concurrency":1,"requests":4,"per_second":50}]}]}"#,
            #"{"results":[{"node":"a","model":"m:1b","knee":1.5,"steps":[{"concurrency":1,"requests":4,"per_second":50}]}]}"#,
            #"{"results":[{"node":"a","model":"m:1b","steps":[{"concurrency":1,"requests":4,"per_second":1e300}]}]}"#,
            #"{"results":[{"node":"a","model":"m:1b","steps":[{"concurrency":0,"requests":4,"per_second":5}]}]}"#,
            #"{"results":[{"node":"a","model":"m:1b","steps":"many"}]}"#,
            #"{"results":[{"node":"","model":"m:1b","steps":[]}]}"#,
            #"{"results":[{"node":"a","model":"m\u0001","steps":[]}]}"#,
            #"{"results":[]}"#, #"[1]"#, "nope",
        ] {
            let response = post(bad)
            #expect(response.status == 400 && response.text.count < 400, "\(bad): \(response.status) \(response.text)")
        }
        let huge = post(#"{"results":[{"node":""# + String(repeating: "n", count: 5_000_000) + #"","model":"m","steps":[]}]}"#)
        #expect(huge.status == 413 || huge.status == 400, "\(huge.status)")
        let listed = try JSONValue.parse(fleet.getControl("/api/v1/benchmarks").body)
        #expect(listed["benchmarks"]?.arrayValue?.count == 1, "only the good one: \(listed.serialized())")
    }

    /// `X-Herd-Node` on an inference request: that node or a clear error.
    @Test func pinnedRequestsThroughTheProxy() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b"])
        try fleet.addBackend("B", arguments: ["--models", "llama3:8b"])
        try fleet.startControl()
        try fleet.addNode("a", backend: "A")
        try fleet.addNode("b", backend: "B")
        try fleet.waitForNodes(2)
        let body = #"{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}],"stream":false}"#
        for _ in 0..<6 {
            let response = fleet.post("/api/chat", body, headers: ["X-Herd-Node": "b"])
            #expect(response.status == 200 && response.header("X-Herd-Node") == "b")
        }
        #expect(fleet.backendRequests("B") == 6 && fleet.backendRequests("A") == 0)
        let unknown = fleet.post("/api/chat", body, headers: ["X-Herd-Node": "c"])
        #expect(unknown.status == 404 && unknown.text.contains("no node 'c' in the fleet"), "\(unknown.text)")
        let long = fleet.post("/v1/chat/completions", body, headers: ["X-Herd-Node": String(repeating: "x", count: 300)])
        #expect(long.status == 400 && long.text.contains("X-Herd-Node") && long.text.count < 400, "\(long.text)")
    }
}
