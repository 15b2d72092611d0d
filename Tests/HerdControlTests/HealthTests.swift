import HerdJSON
import HerdRouting
import HerdWire
import Testing
@testable import herd_control

/// Each health check fires on the state that should fire it and clears on a
/// healthy one; time is the input's (no clock is read).
@Suite struct HealthCheckTests {
    static let now: UInt64 = 10_000_000

    /// A healthy fleet: two online nodes with a loaded model each, steady traffic.
    static func healthy() -> HealthInput {
        var input = HealthInput(now: now, wallNow: 1_800_000_000_000)
        input.nodes = ["a", "b"].map { id in
            var node = fleetNode(id, models: ["llama3:8b"], loaded: ["llama3:8b"])
            node.lastSeenMilliseconds = now - 500
            return node
        }
        var tally = RequestTally()
        tally.requests = 100; tally.ok = 100; tally.completionTokens = 5_000
        tally.decodeTokens = 5_000; tally.decodeMilliseconds = 100_000
        input.recent = [SlotKey("a", "llama3:8b"): tally]
        var hour = tally
        hour.merge(tally)
        input.hour = [SlotKey("a", "llama3:8b"): hour]
        input.diskFreeBytes = 100_000_000_000
        input.diskTotalBytes = 200_000_000_000
        input.clockSkew = ["a": 120, "b": -300]
        return input
    }

    /// What makes each check fire, from the healthy input.
    static let firing: [String: @Sendable (inout HealthInput) -> Void] = [
        "no_nodes": { $0.nodes = [] },
        "node_offline": { $0.nodes[1].status = .offline },
        "node_degraded": { $0.nodes[1].status = .degraded },
        "node_held": { $0.nodes[1].hold = .drain },
        "heartbeats_late": { $0.nodes[0].lastSeenMilliseconds = now - 4_500 },
        "clock_skew": { $0.clockSkew["b"] = -42_000 },
        "version_mismatch": { $0.nodes[0].heartbeat.agentVersion = "0.0.1" },
        "backend_unreachable": { $0.nodes[0].heartbeat.backends[0].reachable = false },
        "ollama_local_only": { $0.nodes[0].heartbeat.backends[0].reachable = false; $0.nodes[0].heartbeat.backends[0].localOnly = true },
        "direct_clients": { $0.nodes[1].heartbeat.backends[0].directClients = ["192.168.1.77"] },
        "memory_pressure": { $0.nodes[0].heartbeat.telemetry.pressure = .high },
        "swap_in_use": { $0.nodes[0].heartbeat.telemetry.swapTotalBytes = 8_000_000_000; $0.nodes[0].heartbeat.telemetry.swapFreeBytes = 2_000_000_000 },
        "thermal_throttling": { $0.nodes[0].heartbeat.telemetry.cpuThrottled = true },
        "vram_nearly_full": { $0.nodes[0].heartbeat.telemetry.gpus = [Telemetry.GPU(vendor: "nvidia", name: "RTX", memoryUsedBytes: 23_500, memoryTotalBytes: 24_000)] },
        "data_disk_space": { $0.diskFreeBytes = 500_000_000 },
        "model_thrashing": { input in
            input.modelChanges = (0..<6).map { (node: "a", model: "m\($0 % 2)", loaded: $0 % 2 == 0, at: now - UInt64($0) * 60_000) }
        },
        "model_loaded_nowhere": { $0.recent[SlotKey("b", "qwen:7b")] = RequestTally(requests: 4, ok: 4) },
        "work_served_nowhere": { $0.recentByWork[.stt] = RequestTally(requests: 2, rejected: 2) },
        "cold_loads": { $0.recent[SlotKey("a", "llama3:8b")]!.coldLoads = 3 },
        "slow_decode": { $0.recent[SlotKey("a", "llama3:8b")]!.decodeMilliseconds = 400_000 },
        "num_ctx_reloads": { $0.recent[SlotKey("a", "llama3:8b")]!.numCtxReloads = 3 },
        "context_too_small": { input in
            input.nodes[0].heartbeat.backends[0].loaded[0].contextLength = 2_048
            for _ in 0..<30 { input.hour[SlotKey("a", "llama3:8b")]!.contextUse.record(3_000) }
        },
        "context_oversized": { input in
            input.nodes[0].heartbeat.backends[0].loaded[0].contextLength = 32_768
            for _ in 0..<30 { input.hour[SlotKey("a", "llama3:8b")]!.contextUse.record(500) }
        },
        "error_rate": { $0.recent[SlotKey("a", "llama3:8b")]!.upstreamErrors = 6 },
        "retry_rate": { $0.recent[SlotKey("a", "llama3:8b")]!.retried = 11 },
        "empty_generations": { $0.recent[SlotKey("a", "llama3:8b")]!.emptyGenerations = 6 },
        "incomplete_streams": { $0.recent[SlotKey("a", "llama3:8b")]!.incompleteStreams = 3 },
        "client_disconnects": { $0.recent[SlotKey("a", "llama3:8b")]!.clientGone = 11 },
        "queue_wait": { input in for _ in 0..<10 { input.recent[SlotKey("a", "llama3:8b")]!.queueWait.record(8_000) } },
        "open_without_key": { $0.listenHosts = ["0.0.0.0"] },
        "trace_write_failures": { $0.traceProblem = "trace writes failing: disk I/O error" },
        "proxy_link_down": { $0.proxiesExpected = 2 },
        "proxy_on_snapshot": { $0.recent[SlotKey("a", "llama3:8b")]!.local = 1 },
    ]

    @Test func atLeastTwentyFiveChecksEachStated() {
        #expect(HealthChecks.all.count >= 25)
        #expect(Set(HealthChecks.all.map(\.id)).count == HealthChecks.all.count, "ids are unique")
        for check in HealthChecks.all {
            #expect(!check.title.isEmpty && !check.condition.isEmpty && !check.threshold.isEmpty && check.advice.count > 20, "\(check.id)")
        }
        #expect(Set(Self.firing.keys) == Set(HealthChecks.all.map(\.id)), "every check has a firing case here")
    }

    @Test func aHealthyFleetFiresNothing() {
        let monitor = HealthMonitor()
        #expect(monitor.evaluate(Self.healthy()).isEmpty)
        #expect(monitor.firing.isEmpty, "\(monitor.firing.map { "\($0.check.id): \($0.state.message)" })")
    }

    @Test func eachCheckFiresOnItsStateAndClearsAfter() {
        for check in HealthChecks.all {
            let monitor = HealthMonitor()
            var input = Self.healthy()
            monitor.evaluate(input)
            Self.firing[check.id]?(&input)
            input.wallNow += 5_000
            let fired = monitor.evaluate(input)
            #expect(fired.contains { $0.check.id == check.id && $0.state.firing }, "\(check.id) did not fire")
            #expect(monitor.states[check.id]?.since == input.wallNow)
            #expect(monitor.states[check.id]?.message.isEmpty == false, "\(check.id) says why")
            // Only that check (and, for no_nodes, nothing beyond what an empty fleet implies).
            let others = monitor.firing.map(\.check.id).filter { $0 != check.id }
            #expect(others.allSatisfy { ["model_loaded_nowhere", "backend_unreachable"].contains($0) && check.id != $0 } || others.isEmpty,
                    "\(check.id) also fired \(others)")
            var healthy = Self.healthy()
            healthy.wallNow = input.wallNow + 5_000
            let cleared = monitor.evaluate(healthy)
            #expect(cleared.contains { $0.check.id == check.id && !$0.state.firing }, "\(check.id) did not clear")
            #expect(monitor.firing.isEmpty)
        }
    }

    @Test func workNoNodeDoesIsNamedUntilANodeDoesIt() {
        let check = HealthChecks.all.first { $0.id == "work_served_nowhere" }!
        var input = Self.healthy()
        input.recentByWork[.stt] = RequestTally(requests: 3, rejected: 3)
        input.recentByWork[.chat] = RequestTally(requests: 9, rejected: 9)
        #expect(check.evaluate(input) == "asked for, and no node does it: speech-to-text (3 refused)")
        // An Ollama model that hears does it; one that does not, does not.
        var ollama = fleetNode("c", models: ["gemma3n"])
        input.nodes.append(ollama)
        #expect(check.evaluate(input) != nil)
        ollama.heartbeat.backends[0].models[0].capabilities = ["completion", "audio"]
        input.nodes[input.nodes.count - 1] = ollama
        #expect(check.evaluate(input) == nil)
        input.nodes.removeLast()
        input.nodes.append(fleetNode("s", models: ["whisper"], kind: .stt))
        #expect(check.evaluate(input) == nil)
    }

    @Test func messagesAreBounded() {
        var input = Self.healthy()
        input.nodes = (0..<200).map { i in
            var node = fleetNode("node-\(i)", models: ["m"])
            node.status = .offline
            return node
        }
        let monitor = HealthMonitor()
        monitor.evaluate(input)
        let message = monitor.states["node_offline"]?.message ?? ""
        #expect(message.contains("and 196 more") && message.count < 200, "\(message)")
    }
}

@Suite struct RequestStatsTests {
    static func finished(node: String, model: String, outcome: RouteResult.Outcome = .ok, status: Int = 200, tokens: Int = 10,
                         durationMs: Double = 100, upstreamMs: Double? = 99.5, tags: [String] = [], client: String = "127.0.0.1") -> FinishedRequest {
        FinishedRequest(
            result: RouteResult(id: 1, node: node, model: model, outcome: outcome, status: status, ttftMilliseconds: 20,
                                durationMilliseconds: durationMs, completionTokens: tokens, backendDecodeMilliseconds: 50,
                                upstreamMilliseconds: upstreamMs),
            request: RouteRequest(id: 1, api: .ollama, path: "/api/chat", model: model, stream: false, tags: tags, client: client),
            decision: RouteAnswer(id: 1, node: node, upstream: "127.0.0.1:1", backend: .ollama, model: model))
    }

    @Test func minutesRollOffAndWindowsSum() {
        let stats = RequestStats()
        let t0: UInt64 = 3_600_000 * 10
        stats.record(Self.finished(node: "a", model: "m"), now: t0)
        stats.record(Self.finished(node: "a", model: "m", outcome: .upstreamError), now: t0 + 30_000)
        stats.record(Self.finished(node: "b", model: "m", tokens: 0), now: t0 + 4 * 60_000)
        #expect(stats.total(minutes: 5, now: t0 + 4 * 60_000).requests == 3)
        #expect(stats.total(minutes: 1, now: t0 + 4 * 60_000).requests == 1)
        let bySlot = stats.bySlot(minutes: 5, now: t0 + 4 * 60_000)
        #expect(bySlot[SlotKey("a", "m")]?.errors == 1 && bySlot[SlotKey("b", "m")]?.emptyGenerations == 1)
        #expect(stats.total(minutes: 60, now: t0 + 70 * 60_000).requests == 0, "an hour later: gone")
        // Overhead: duration minus the backend's time.
        let overhead = stats.total(minutes: 5, now: t0 + 4 * 60_000).overhead
        #expect(overhead.count == 2 && overhead.quantile(0.5)! <= 0.5)
    }

    @Test func labelsAreBounded() {
        let stats = RequestStats()
        for i in 0..<1_000 { stats.record(Self.finished(node: "a", model: "m", tags: ["app-\(i)"], client: "10.0.0.\(i)"), now: 1_000) }
        let tags = stats.byLabel(clients: false, minutes: 5, now: 1_000)
        #expect(tags.count == RequestStats.maxKeys + 1 && tags["other"]?.requests == 1_000 - RequestStats.maxKeys)
        #expect(stats.byLabel(clients: true, minutes: 5, now: 1_000).count == RequestStats.maxKeys + 1)
    }

    @Test func histogramQuantiles() {
        var h = Histogram(bounds: Histogram.latencyBounds)
        #expect(h.quantile(0.5) == nil)
        for v in 1...100 { h.record(Double(v)) }
        let p50 = h.quantile(0.5)!, p95 = h.quantile(0.95)!
        #expect(p50 > 25 && p50 <= 50 && p95 > 50 && p95 <= 100, "\(p50) \(p95)")
        #expect(h.cumulative.last == 100 && h.sum == 5050)
        h.record(.nan)
        #expect(h.count == 100)
    }
}
