import HerdJSON
import HerdRuntime
import HerdWire
import Testing
@testable import herd_control

func node(_ id: String, status: NodeStatus = .online, models: [String], loaded: [String] = [], memory: Int = 8_000_000_000,
          kind: BackendKind = .ollama, port: Int = 1) -> FleetNode {
    FleetNode(heartbeat: Heartbeat(nodeID: id, memoryAvailableBytes: memory, backends: [
        Heartbeat.Backend(kind: kind, url: "", address: "127.0.0.1:\(port)", reachable: true,
                          models: models.map { Heartbeat.Model(name: $0) }, loaded: loaded.map { Heartbeat.LoadedModel(name: $0) }),
    ]), lastSeenMilliseconds: 0, firstSeenMilliseconds: 0, status: status)
}

@Suite struct RoutePolicyTests {
    func decide(_ nodes: [FleetNode], _ models: [String], api: ClientAPI = .ollama, excluded: Set<String> = [],
                inFlight: [String: Int] = [:], limit: Int = 4) -> RouteDecision {
        RoutePolicy.decide(api: api, models: models, nodes: nodes, excluded: excluded,
                           inFlight: { n, m in inFlight[n + "/" + m] ?? 0 }, limit: limit)
    }

    @Test func hotBeatsCold() {
        let nodes = [node("cold", models: ["m:1b"], memory: 99_000_000_000), node("hot", models: ["m:1b"], loaded: ["m:1b"])]
        guard case let .route(c) = decide(nodes, ["m:1b"]) else { Issue.record("no route"); return }
        #expect(c.node == "hot")
    }

    @Test func fewerInFlightThenMoreMemory() {
        let nodes = [node("a", models: ["m:1b"], loaded: ["m:1b"], memory: 1), node("b", models: ["m:1b"], loaded: ["m:1b"], memory: 2)]
        guard case let .route(c1) = decide(nodes, ["m:1b"], inFlight: ["b/m:1b": 1]) else { Issue.record("no route"); return }
        #expect(c1.node == "a")
        guard case let .route(c2) = decide(nodes, ["m:1b"]) else { Issue.record("no route"); return }
        #expect(c2.node == "b")
    }

    @Test func eliminationRules() {
        let nodes = [node("off", status: .offline, models: ["m:1b"]), node("other", models: ["x:1b"])]
        #expect(decide(nodes, ["m:1b"]) == .noNode)
        #expect(decide(nodes, ["zzz"]) == .notFound(known: ["x:1b"]))
        #expect(decide([node("a", models: ["m:1b"])], ["m:1b"], excluded: ["a"]) == .noNode)
        // An OpenAI-only backend cannot take Ollama-API requests.
        #expect(decide([node("o", models: ["m:1b"], kind: .openai)], ["m:1b"]) == .notFound(known: []))
        guard case .route = decide([node("o", models: ["m:1b"], kind: .openai)], ["m:1b"], api: .openai) else { Issue.record("no route"); return }
    }

    @Test func latestTagIsTheSameModel() {
        guard case let .route(c) = decide([node("a", models: ["llama3:latest"])], ["llama3"]) else { Issue.record("no route"); return }
        #expect(c.model == "llama3:latest")
    }

    @Test func fallbacksInOrderPreferringHot() {
        let nodes = [node("a", models: ["big:70b", "small:1b"], loaded: ["small:1b"]), node("b", models: ["mid:8b"])]
        guard case let .route(c) = decide(nodes, ["gone", "mid:8b", "small:1b"]) else { Issue.record("no route"); return }
        #expect(c.model == "small:1b", "the first hot fallback wins over a cold earlier one")
        guard case let .route(d) = decide(nodes, ["gone", "mid:8b"]) else { Issue.record("no route"); return }
        #expect(d.model == "mid:8b")
    }

    @Test func meetingsHeatAndPressureDeprioritise() {
        var meeting = node("meeting", models: ["m:1b"], loaded: ["m:1b"], memory: 99_000_000_000)
        meeting.heartbeat.telemetry.cameraInUse = true
        var hotBox = node("hot", models: ["m:1b"], loaded: ["m:1b"], memory: 99_000_000_000)
        hotBox.heartbeat.telemetry.thermal = .critical
        let calm = node("calm", models: ["m:1b"], loaded: ["m:1b"], memory: 1)
        guard case let .route(c) = decide([meeting, hotBox, calm], ["m:1b"]) else { Issue.record("no route"); return }
        #expect(c.node == "calm")
        guard case let .route(d) = decide([meeting], ["m:1b"]) else { Issue.record("a strained node still serves when alone"); return }
        #expect(d.strained && d.reason.contains("strained"))
        var starving = node("starving", models: ["m:1b", "big:70b"], loaded: ["m:1b"])
        starving.heartbeat.telemetry.pressure = .critical
        guard case .route = decide([starving], ["m:1b"]) else { Issue.record("a loaded model still serves"); return }
        #expect(decide([starving], ["big:70b"]) == .noNode, "no cold load under critical pressure")
    }

    @Test func everyoneBusyQueues() {
        let nodes = [node("a", models: ["m:1b"], loaded: ["m:1b"])]
        #expect(decide(nodes, ["m:1b"], inFlight: ["a/m:1b": 2], limit: 2) == .queue(model: "m:1b"))
    }
}

/// Records what the scheduler answers.
final class RecordingTarget: RouteReplyTarget {
    var replies: [(ControlMessageType, JSONValue)] = []
    func reply(_ type: ControlMessageType, _ body: JSONValue) { replies.append((type, body)) }
}

/// A scheduler over one node "a" with model m:1b and one slot per node:model.
func oneNodeScheduler(_ loop: EventLoop) -> Scheduler {
    let registry = NodeRegistry()
    registry.accept(Heartbeat(nodeID: "a", backends: [Heartbeat.Backend(kind: .ollama, url: "", address: "127.0.0.1:1", reachable: true,
                                                                      models: [Heartbeat.Model(name: "m:1b")])]), now: 0)
    var settings = Scheduler.Settings()
    settings.maxConcurrencyPerModel = 1
    return Scheduler(loop: loop, registry: registry, settings: settings)
}

@Suite struct SchedulerTests {
    @Test func queuesAtTheLimitAndDispatchesWhenASlotFrees() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        try thread.sync {
            let scheduler = oneNodeScheduler(thread.loop)
            let target = RecordingTarget()
            scheduler.route(RouteRequest(id: 1, api: .ollama, path: "/api/chat", model: "m:1b", stream: false), from: target)
            scheduler.route(RouteRequest(id: 2, api: .ollama, path: "/api/chat", model: "m:1b", stream: false), from: target)
            #expect(target.replies.map(\.0) == [.routeOK])
            #expect(scheduler.queueLength == 1)
            scheduler.result(RouteResult(id: 1, node: "a", model: "m:1b", outcome: .ok, status: 200), from: target)
            #expect(target.replies.map(\.0) == [.routeOK, .routeOK])
            #expect(target.replies[1].1["id"]?.intValue == 2)
            #expect(scheduler.inFlight(node: "a", model: "m:1b") == 1)
            // A retry frees the slot and excludes the node: nothing else has the model.
            scheduler.retry(RouteRetry(id: 2, node: "a", reason: "refused"), from: target)
            #expect(target.replies.last?.0 == .routeError)
            #expect(scheduler.inFlight(node: "a", model: "m:1b") == 0)
        }
    }

    @Test func aProxyThatGoesAwayReleasesEverything() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        try thread.sync {
            let scheduler = oneNodeScheduler(thread.loop)
            let gone = RecordingTarget()
            let other = RecordingTarget()
            scheduler.route(RouteRequest(id: 1, api: .ollama, path: "/api/chat", model: "m:1b", stream: false), from: gone)
            scheduler.route(RouteRequest(id: 1, api: .ollama, path: "/api/chat", model: "m:1b", stream: false), from: other)
            #expect(other.replies.isEmpty)
            scheduler.targetGone(gone)
            #expect(other.replies.map(\.0) == [.routeOK], "the waiting request got the freed slot")
        }
    }
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

    @Test func onlyRoutingChangesBumpTheVersion() {
        let registry = NodeRegistry()
        #expect(registry.accept(Heartbeat(nodeID: "a", cpuUtilization: 0.1), now: 0))
        #expect(!registry.accept(Heartbeat(nodeID: "a", cpuUtilization: 0.9), now: 1))
        #expect(registry.accept(Heartbeat(nodeID: "a", backends: [Heartbeat.Backend(kind: .ollama, url: "", address: "127.0.0.1:1", reachable: true)]), now: 2))
    }
}
