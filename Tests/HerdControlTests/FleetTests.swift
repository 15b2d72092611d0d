import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdTestSupport
import HerdRouting
import HerdWire
import Testing
@testable import herd_control

func fleetNode(_ id: String, status: NodeStatus = .online, models: [String], loaded: [String] = [], memory: Int = 8_000_000_000,
          kind: BackendKind = .ollama, port: Int = 1) -> FleetNode {
    FleetNode(heartbeat: Heartbeat(nodeID: id, memoryAvailableBytes: memory, backends: [
        Heartbeat.Backend(kind: kind, url: "", address: "127.0.0.1:\(port)", reachable: true,
                          models: models.map { Heartbeat.Model(name: $0) }, loaded: loaded.map { Heartbeat.LoadedModel(name: $0) }),
    ]), lastSeenMilliseconds: 0, firstSeenMilliseconds: 0, status: status)
}

@Suite struct NodeRegistryTests {
    @Test func statusFollowsHeartbeatAge() {
        let registry = NodeRegistry(settings: .init(degradedAfterMilliseconds: 100, offlineAfterMilliseconds: 300, forgetAfterMilliseconds: 10_000))
        registry.accept(Heartbeat(nodeID: "a"), now: 1_000)
        #expect(registry.sweep(now: 1_050) == false)
        #expect(registry.sweep(now: 1_150))
        #expect(registry.nodes["a"]?.status == .degraded)
        registry.sweep(now: 1_400)
        #expect(registry.nodes["a"]?.status == .offline)
        registry.accept(Heartbeat(nodeID: "a"), now: 1_500)
        #expect(registry.nodes["a"]?.status == .online)
        registry.sweep(now: 20_000)
        #expect(registry.nodes["a"] == nil, "forgotten")
    }

    @Test func theFleetIsCappedAndAnOfflineNodeMakesRoom() {
        let registry = NodeRegistry(settings: .init(degradedAfterMilliseconds: 100, offlineAfterMilliseconds: 300, maxNodes: 2))
        #expect(registry.admit(Heartbeat(nodeID: "a"), now: 0) == .accepted(changed: true))
        #expect(registry.admit(Heartbeat(nodeID: "b"), now: 100) == .accepted(changed: true))
        #expect(registry.admit(Heartbeat(nodeID: "forged-1"), now: 200) == .fleetFull, "full of live nodes: refused")
        #expect(registry.admit(Heartbeat(nodeID: "a"), now: 200) == .accepted(changed: false), "known nodes keep beating")
        registry.sweep(now: 450) // b went quiet: offline
        #expect(registry.nodes["b"]?.status == .offline)
        #expect(registry.admit(Heartbeat(nodeID: "c"), now: 450) == .accepted(changed: true), "takes the offline node's place")
        #expect(Set(registry.nodes.keys) == ["a", "c"])
    }

    @Test func onlyRoutingChangesBumpTheVersion() {
        let registry = NodeRegistry()
        #expect(registry.accept(Heartbeat(nodeID: "a", cpuUtilization: 0.1), now: 0))
        #expect(!registry.accept(Heartbeat(nodeID: "a", cpuUtilization: 0.9), now: 1))
        #expect(registry.accept(Heartbeat(nodeID: "a", backends: [Heartbeat.Backend(kind: .ollama, url: "", address: "127.0.0.1:1", reachable: true)]), now: 2))
    }
}

@Suite struct SnapshotBuilderTests {
    /// One model name, one listing entry: `llama3` on one node and
    /// `llama3:latest` on another are the same model (`ModelName`).
    @Test func listingsHaveOneEntryPerModel() throws {
        let nodes = [fleetNode("a", models: ["llama3", "qwen:7b"], loaded: ["llama3"]), fleetNode("b", models: ["llama3:latest"], loaded: ["llama3:latest"], port: 2)]
        let snapshot = SnapshotBuilder.build(version: 1, nodes: nodes)
        #expect(snapshot.tags["models"]?.arrayValue?.count == 2)
        #expect(snapshot.ps["models"]?.arrayValue?.count == 1)
        #expect(snapshot.openAIModels["data"]?.arrayValue?.count == 2)
        #expect(snapshot.nodes.map(\.id) == ["a", "b"])
    }

    /// Found in CI: a CPU whisper server busy with a 7 s transcription did
    /// not answer its node's probe; its model left `/v1/models`, and Ollama
    /// Herd's `/api/transcribe` (no model named: the fleet's speech-to-text
    /// model) answered 404 "no speech-to-text model in the fleet". A backend
    /// that did not answer is listed with the models its node kept for it.
    @Test func aBackendBusyPastItsProbeStaysListed() throws {
        var busy = fleetNode("stt", models: ["whisper-tiny"], loaded: ["whisper-tiny"], kind: .stt)
        busy.heartbeat.backends[0].reachable = false
        let nodes = [busy, fleetNode("chat", models: ["llama3"], port: 2)]
        let snapshot = SnapshotBuilder.build(version: 1, nodes: nodes)
        let listed = snapshot.openAIModels["data"]?.arrayValue ?? []
        #expect(listed.first { $0["id"]?.stringValue == "whisper-tiny" }?["herd_kind"]?.stringValue == "stt")
        #expect(listed.count == 2)
        // Its node knew nothing of it (never answered, or past ten minutes): nothing to list.
        busy.heartbeat.backends[0].models = []
        busy.heartbeat.backends[0].loaded = []
        #expect(SnapshotBuilder.build(version: 2, nodes: [busy]).openAIModels["data"]?.arrayValue?.isEmpty == true)
        // An offline node's models are not listed, answering or not.
        var gone = fleetNode("stt", status: .offline, models: ["whisper-tiny"], kind: .stt)
        gone.heartbeat.backends[0].reachable = false
        #expect(SnapshotBuilder.build(version: 3, nodes: [gone]).openAIModels["data"]?.arrayValue?.isEmpty == true)
    }
}

@Suite struct PrewarmerTests {
    /// Runs one pre-warm on a loop thread and waits for its outcome.
    static func prewarm(_ prewarm: Prewarm) throws -> (Bool, Double?)? {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let done = SyncFlag()
        let outcome = OutcomeBox()
        let prewarmer = try thread.sync { Prewarmer(loop: thread.loop, log: Logger(label: "test", minimum: .error)) }
        _ = try thread.sync {
            prewarmer.send(prewarm) { ok, loadMs in
                outcome.lock.withLock { outcome.value = (ok, loadMs) }
                done.set()
            }
        }
        _ = done.wait(milliseconds: 10_000)
        _ = try thread.sync { prewarmer.close() }
        return outcome.lock.withLock { outcome.value }
    }

    final class OutcomeBox: @unchecked Sendable {
        let lock = ConditionLock()
        var value: (Bool, Double?)?
    }

    /// herd-control's pre-warm is Ollama's empty generate: the model loads
    /// (the backend shows it in /api/ps) and its load_duration comes back.
    @Test func anEmptyGenerateLoadsTheModelAndReportsItsLoadTime() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        let port = try fleet.addBackend("B", arguments: ["--models", "llama3:8b"])
        let outcome = try Self.prewarm(Prewarm(node: "b", address: "127.0.0.1:\(port)", model: "llama3:8b", expectedLoadMs: 1_000))
        #expect(outcome?.0 == true && outcome?.1 == 1_250)
        let ps = try JSONValue.parse(fleet.request("GET", "/api/ps", body: nil, headers: [:], port: port).body)
        #expect(ps["models"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["llama3:8b"], "loaded now")
    }

    @Test func aNodeThatIsNotThereFailsThePrewarm() throws {
        let outcome = try Self.prewarm(Prewarm(node: "gone", address: "127.0.0.1:\(freePort())", model: "m", expectedLoadMs: 1))
        #expect(outcome?.0 == false)
    }
}

@Suite struct ControlMetricsTests {
    @Test func labelCombinationsAreCappedAndTheRestCountAsOther() {
        let metrics = ControlMetrics()
        for i in 0..<(ControlMetrics.maxSeries + 50) {
            // Locally routed results name their node and model (from the snapshot).
            metrics.record(FinishedRequest(result: RouteResult(id: UInt64(i), node: "n\(i)", model: "m\(i)", outcome: .ok, status: 200,
                                                               completionTokens: 1, local: true)))
        }
        let text = metrics.text(MetricsState())
        #expect(text.contains(#"herd_requests_total{api="unknown",node="other",model="other",outcome="ok"} 50"#))
        #expect(text.contains(#"herd_completion_tokens_total{model="other"} 50"#))
        #expect(!text.contains("n\(ControlMetrics.maxSeries + 1)\""))
    }
}

/// The heartbeat interval has one owner, the node: control judges lateness by it.
@Suite struct HeartbeatIntervalTests {
    @Test func aSlowBeatingNodeIsNotLateByControlsClock() {
        let registry = NodeRegistry(settings: .init(degradedAfterMilliseconds: 6_000, offlineAfterMilliseconds: 15_000))
        var slow = Heartbeat(nodeID: "slow")
        slow.intervalMilliseconds = 6_000
        registry.accept(slow, now: 0)
        registry.accept(Heartbeat(nodeID: "old"), now: 0)
        registry.sweep(now: 7_000)
        #expect(registry.nodes["slow"]?.status == .online, "6 s beats: not degraded before 18 s")
        #expect(registry.nodes["old"]?.status == .degraded, "an agent that says nothing: control's setting")
        registry.sweep(now: 19_000)
        #expect(registry.nodes["slow"]?.status == .degraded)
        registry.sweep(now: 46_000)
        #expect(registry.nodes["slow"]?.status == .offline)
    }
}

/// Host and cross-site checks in front of control's HTTP API.
@Suite struct RequestGuardTests {
    let guardian = RequestGuard(names: ["router", "router.local", "herd.example.org"])

    func headers(_ pairs: [(String, String)]) -> HTTPHeaders {
        var h = HTTPHeaders()
        for (name, value) in pairs { h.add(name, value) }
        return h
    }

    @Test func dnsRebindingReadsNothing() {
        #expect(guardian.refusal(method: "GET", headers: headers([("Host", "evil.example.com:11436")]))?.status == 421)
        #expect(guardian.refusal(method: "GET", headers: headers([("Host", "router.evil.example.com")]))?.status == 421)
        for host in ["127.0.0.1:11436", "192.168.1.10:11436", "[::1]:11436", "localhost:11436", "router:11436", "ROUTER.local", "herd.example.org"] {
            #expect(guardian.refusal(method: "GET", headers: headers([("Host", host)])) == nil, "\(host)")
        }
        #expect(RequestGuard(names: ["*"]).refusal(method: "GET", headers: headers([("Host", "anything")])) == nil)
    }

    @Test func crossSiteRequestsCannotChangeTheFleet() {
        let host = ("Host", "192.168.1.10:11436")
        // A form post from another page: no JSON type, or a foreign Origin / Sec-Fetch-Site.
        #expect(guardian.refusal(method: "POST", headers: headers([host, ("Content-Type", "application/x-www-form-urlencoded")]))?.status == 415)
        #expect(guardian.refusal(method: "POST", headers: headers([host, ("Content-Type", "text/plain")]))?.status == 415)
        #expect(guardian.refusal(method: "POST", headers: headers([host, ("Content-Type", "application/json"), ("Origin", "http://evil.example.com")]))?.status == 403)
        #expect(guardian.refusal(method: "POST", headers: headers([host, ("Content-Type", "application/json"), ("Sec-Fetch-Site", "cross-site")]))?.status == 403)
        // The dashboard from its own origin, herd-node's signed heartbeat, a script with the fleet key.
        #expect(guardian.refusal(method: "POST", headers: headers([host, ("Content-Type", "application/json"), ("Origin", "http://192.168.1.10:11436"),
                                                                    ("Sec-Fetch-Site", "same-origin")])) == nil)
        #expect(guardian.refusal(method: "POST", headers: headers([host, ("X-Herd-Signature", "ab")])) == nil)
        #expect(guardian.refusal(method: "POST", headers: headers([host, ("Authorization", "Bearer k")])) == nil)
    }
}
