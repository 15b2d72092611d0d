import Glibc
import HerdJSON
import HerdRuntime
import HerdSecurity
import HerdWire
import HerdTestSupport
import Testing

/// `/api/v1/…` against a fleet of real nodes in front of fake backends.
@Suite(.serialized) struct FleetAPITests {
    static func json(_ fleet: TestFleet, _ path: String) throws -> JSONValue {
        let response = fleet.getControl(path)
        #expect(response.status == 200, "\(path) → \(response.status) \(response.text)")
        #expect(response.header("Content-Type")?.hasPrefix("application/json") == true)
        return try JSONValue.parse(response.body)
    }

    @Test func everyViewAnswersFromTheLiveFleet() throws {
        let fleet = try RouterTests.twoNodeFleet()
        defer { fleet.shutdown() }
        for i in 0..<6 {
            let response = fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false,"messages":[]}"#,
                                      headers: ["X-Herd-Tags": i % 2 == 0 ? "app-one" : "app-two"])
            #expect(response.status == 200)
        }
        #expect(fleet.post("/api/chat", #"{"model":"nope:1b"}"#).status == 404)

        let summary = try Self.json(fleet, "/api/v1/fleet")
        #expect(summary["nodes"]?["online"]?.intValue == 2)
        #expect(summary["router"]?["fleet_key"] == .bool(false))
        #expect(summary["models_loaded"]?.intValue == 2)

        let nodes = try Self.json(fleet, "/api/v1/nodes")["nodes"]?.arrayValue ?? []
        #expect(nodes.compactMap { $0["id"]?.stringValue } == ["node-a", "node-b"])
        let b = try Self.json(fleet, "/api/v1/nodes/node-b")
        #expect(b["backends"]?.arrayValue?.first?["loaded"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["llama3:8b", "mistral:7b"])
        #expect(b["memory"]?["total_bytes"]?.intValue ?? 0 > 0)
        #expect(fleet.getControl("/api/v1/nodes/nobody").status == 404)

        // Requests are counted within the minute they finish.
        #expect(waitUntil(seconds: 5) {
            let models = (try? Self.json(fleet, "/api/v1/models"))?["models"]?.arrayValue ?? []
            let llama = models.first { $0["name"]?.stringValue == "llama3:8b" }
            return llama?["last_hour"]?["requests"]?.intValue == 6
        })
        let models = try Self.json(fleet, "/api/v1/models")["models"]?.arrayValue ?? []
        #expect(Set(models.compactMap { $0["name"]?.stringValue }) == ["llama3:8b", "mistral:7b", "qwen:7b"])
        let qwen = models.first { $0["name"]?.stringValue == "qwen:7b" }
        #expect(qwen?["nodes"]?.arrayValue?.map { $0["node"]?.stringValue } == ["node-a"])
        #expect(qwen?["nodes"]?.arrayValue?.first?["loaded"] == .bool(false) && qwen?["nodes"]?.arrayValue?.first?["on_disk"] == .bool(true))

        #expect(try Self.json(fleet, "/api/v1/queues")["queue_length"]?.intValue == 0)
        #expect(try Self.json(fleet, "/api/v1/decisions?limit=5")["decisions"]?.arrayValue != nil)

        // Traces: newest first, filtered, paged, and one whole.
        #expect(waitUntil(seconds: 5) { ((try? Self.json(fleet, "/api/v1/traces"))?["traces"]?.arrayValue?.count ?? 0) >= 7 })
        let tagged = try Self.json(fleet, "/api/v1/traces?tag=app-one")["traces"]?.arrayValue ?? []
        #expect(tagged.count == 3 && tagged.allSatisfy { $0["tags"] == .strings(["app-one"]) })
        let rejected = try Self.json(fleet, "/api/v1/traces?outcome=rejected")["traces"]?.arrayValue ?? []
        #expect(rejected.count == 1 && rejected.first?["model"]?.stringValue == "nope:1b")
        let page = try Self.json(fleet, "/api/v1/traces?limit=4")
        #expect(page["traces"]?.arrayValue?.count == 4)
        let next = try #require(page["next_before"]?.intValue)
        let rest = try Self.json(fleet, "/api/v1/traces?limit=4&before=\(next)")["traces"]?.arrayValue ?? []
        #expect(rest.count == 3 && rest.allSatisfy { ($0["id"]?.intValue ?? .max) < next })
        let id = try #require(tagged.first?["id"]?.intValue)
        let record = try Self.json(fleet, "/api/v1/traces/\(id)")
        #expect(record["candidates"]?["candidates"] != nil || record["candidates"]?.arrayValue != nil || record["candidates"] != nil)
        #expect(record["node_id"]?.stringValue?.hasPrefix("node-") == true)
        #expect(fleet.getControl("/api/v1/traces/999999").status == 404)
        #expect(fleet.getControl("/api/v1/traces?outcome=bogus").status == 400)

        let usage = try Self.json(fleet, "/api/v1/usage?by=tag&hours=24")
        let series = usage["series"]?.arrayValue ?? []
        #expect(series.first { $0["key"]?.stringValue == "app-one" }?["requests"]?.intValue == 3)
        #expect(series.first { $0["key"]?.stringValue == "untagged" }?["requests"]?.intValue == 1)
        #expect(try Self.json(fleet, "/api/v1/usage?by=client")["series"]?.arrayValue?.first?["key"]?.stringValue == "127.0.0.1")
        #expect(fleet.getControl("/api/v1/usage?by=planet").status == 400)

        #expect(try Self.json(fleet, "/api/v1/capacity")["nodes"]?.arrayValue?.count == 2)
        let settings = try Self.json(fleet, "/api/v1/settings")
        #expect(settings["fleet_key"]?.stringValue == "not set" && settings["scheduler"]?["queue_timeout_ms"]?.intValue == 30_000)

        let health = try Self.json(fleet, "/api/v1/health")
        let checks = health["checks"]?.arrayValue ?? []
        #expect(checks.count >= 25)
        for check in checks {
            #expect(check["id"]?.stringValue != nil && check["state"]?.stringValue != nil && check["severity"]?.stringValue != nil
                && check["message"] != nil && check["advice"]?.stringValue?.isEmpty == false && check["since"] != nil)
        }

        #expect(fleet.getControl("/api/v1/nothing").status == 404)
        #expect(fleet.request("POST", "/api/v1/fleet", body: "{}", headers: [:], port: fleet.controlPort).status == 405)
    }

    /// `/metrics` by the book: `promtool check metrics` finds nothing, units
    /// are base units, and the fleet's state is there.
    @Test func metricsPassPromtool() throws {
        let fleet = try RouterTests.twoNodeFleet()
        defer { fleet.shutdown() }
        for _ in 0..<4 { #expect(fleet.post("/api/chat", #"{"model":"mistral:7b","stream":false}"#).status == 200) }
        #expect(fleet.post("/v1/chat/completions", #"{"model":"llama3:8b","messages":[]}"#).status == 200)
        #expect(fleet.post("/api/chat", #"{"model":"nope:1b"}"#).status == 404)
        #expect(waitUntil(seconds: 5) { fleet.getControl("/metrics").text.contains(#"outcome="rejected""#) })
        // Health states are in /metrics once evaluated.
        #expect(waitUntil(seconds: 10) { fleet.getControl("/metrics").text.contains(#"herd_health_check_firing{check="node_offline""#) })
        let text = fleet.getControl("/metrics").text
        let check = ProcessRunner.run("/bin/sh", ["-c", "curl -sf http://127.0.0.1:\(fleet.controlPort)/metrics | promtool check metrics"])
        #expect(check.status == 0 && check.output.isEmpty, "promtool: \(check.output)")
        for line in [#"herd_requests_total{api="ollama",node="node-b",model="mistral:7b",outcome="ok"} 4"#,
                     #"herd_requests_total{api="openai","#, #"herd_node_up{node="node-a"} 1"#, #"herd_model_loaded{node="node-b",model="mistral:7b"} 1"#,
                     "herd_request_duration_seconds_count 5", "herd_router_overhead_seconds_count 5", "herd_time_to_first_token_seconds_bucket",
                     #"herd_route_tickets_total{event="granted"}"#, "herd_queue_wait_seconds_bucket", #"herd_node_memory_total_bytes{node="node-a"}"#] {
            #expect(text.contains(line), "missing: \(line)")
        }
        #expect(!text.contains("_ms"), "base units only")
    }

    /// The event stream: a heartbeat reaches an open stream within a second,
    /// as a small `node` event (and `fleet` when the node is new).
    @Test func theEventStreamDeliversAHeartbeatWithinASecond() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        try fleet.startControl()
        let stream = try RawClient(port: fleet.controlPort, timeoutSeconds: 1)
        stream.send("GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        func read(until text: String, seconds: Double) -> Bool {
            let deadline = monotonicSeconds() + seconds
            while monotonicSeconds() < deadline {
                if String(decoding: stream.buffered, as: UTF8.self).contains(text) { return true }
                stream.fill()
            }
            return String(decoding: stream.buffered, as: UTF8.self).contains(text)
        }
        #expect(read(until: "event: hello", seconds: 5))
        let head = String(decoding: stream.buffered, as: UTF8.self)
        #expect(head.hasPrefix("HTTP/1.1 200") && head.lowercased().contains("content-type: text/event-stream"))
        let beat = #"{"schema":1,"node_id":"n9","memory":{"total_bytes":1000,"available_bytes":500},"backends":[{"kind":"ollama","address":"127.0.0.1:9","models":[{"name":"m"}],"loaded":[{"name":"m"}]}]}"#
        let sent = monotonicSeconds()
        #expect(fleet.request("POST", "/heartbeat", body: beat, headers: [:], port: fleet.controlPort).status == 200)
        #expect(read(until: #""id":"n9""#, seconds: 1), "no node event within a second: \(String(decoding: stream.buffered, as: UTF8.self))")
        #expect(monotonicSeconds() - sent < 1)
        let text = String(decoding: stream.buffered, as: UTF8.self)
        #expect(text.contains("event: fleet") && text.contains(#""change":"joined""#))
        #expect(text.contains("event: node") && text.contains(#""loaded":["m"]"#))
        // Totals follow about once a second.
        #expect(read(until: "event: stats", seconds: 3))
    }

    /// The event stream is bounded: at most 64 at once (then 503), and a
    /// client that stops reading is cut off instead of growing control.
    @Test func eventStreamsAreBounded() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        try fleet.startControl()
        let request = "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        // A reader that never reads, with a small receive buffer.
        let slow = try RawClient(port: fleet.controlPort, timeoutSeconds: 2, receiveBuffer: 4096)
        slow.send(request)
        var open: [RawClient] = []
        for _ in 0..<63 {
            let client = try RawClient(port: fleet.controlPort, timeoutSeconds: 5)
            client.send(request)
            #expect(client.fill() && String(decoding: client.buffered, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            open.append(client)
        }
        let extra = try RawClient(port: fleet.controlPort, timeoutSeconds: 5)
        extra.send(request)
        #expect(try extra.readResponse().status == 503, "the 65th stream is refused")
        open.removeAll() // the 63 readers go away: their streams end
        // Heartbeats of many nodes make events; the slow reader falls 512 KiB behind and is dropped.
        var beats = 0
        let dropped = waitUntil(seconds: 60) {
            for _ in 0..<200 {
                beats += 1
                // Big events (16 GPUs with names of the longest allowed) fill the slow reader's backlog fast.
                let gpus = Array(repeating: #"{"name":"\#(String(repeating: "g", count: 250))"}"#, count: 16).joined(separator: ",")
                let beat = #"{"schema":1,"node_id":"n\#(beats % 200)","telemetry":{"gpus":[\#(gpus)]},"backends":[{"kind":"ollama","address":"127.0.0.1:9","models":[{"name":"m"}],"loaded":[{"name":"m"}]}]}"#
                _ = fleet.request("POST", "/heartbeat", body: beat, headers: [:], port: fleet.controlPort)
            }
            return fleet.control!.output.contains("dropped: it stopped reading")
        }
        #expect(dropped, "after \(beats) heartbeats")
        #expect(slow.isClosedByPeer(), "the slow stream was closed")
        // The API still answers.
        #expect(fleet.getControl("/api/v1/fleet").status == 200)
    }

    /// Drain / pause / resume a node: refused without the fleet key when one
    /// is set; a drained node takes no new request until resumed.
    @Test func nodeActionsNeedTheFleetKeyAndHoldTheNode() throws {
        let key = "test-fleet-key-0123456789"
        let fleet = TestFleet(controlArguments: ["--fleet-key", key])
        defer { fleet.shutdown() }
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        try fleet.addBackend("B", arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A", extra: ["--fleet-key", key])
        try fleet.addNode("node-b", backend: "B", extra: ["--fleet-key", key])
        try fleet.waitForNodes(2)
        func post(_ path: String, _ headers: [String: String] = [:]) -> RawResponse {
            fleet.request("POST", path, body: "", headers: headers, port: fleet.controlPort)
        }
        #expect(post("/api/v1/nodes/node-a/drain").status == 401)
        #expect(post("/api/v1/nodes/node-a/drain", ["Authorization": "Bearer not-the-key-at-all-x"]).status == 401)
        let bearer = ["Authorization": "Bearer " + key]
        #expect(post("/api/v1/nodes/nobody/drain", bearer).status == 404)
        #expect(post("/api/v1/nodes/node-a/explode", bearer).status == 404)
        let drained = post("/api/v1/nodes/node-a/drain", bearer)
        #expect(try drained.status == 200 && JSONValue.parse(drained.body)["hold"]?.stringValue == "drain")
        #expect(try Self.json(fleet, "/api/v1/nodes/node-a")["hold"]?.stringValue == "drain")
        // The proxies hear of it (snapshot, tickets revoked): nothing new reaches A.
        let before = fleet.backendRequests("A")
        for _ in 0..<8 { #expect(fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false}"#).status == 200) }
        #expect(fleet.backendRequests("A") == before, "a drained node took new requests")
        #expect(waitUntil(seconds: 10) {
            (try? Self.json(fleet, "/api/v1/health"))?["checks"]?.arrayValue?.first { $0["id"]?.stringValue == "node_held" }?["state"]?.stringValue == "firing"
        })
        #expect(fleet.control!.output.contains("operator: node node-a drained"))
        // A hold outlives a restart of herd-control.
        try fleet.restartControl(onNewPort: false)
        try fleet.waitForNodes(2)
        #expect(try Self.json(fleet, "/api/v1/nodes/node-a")["hold"]?.stringValue == "drain")
        let afterRestart = fleet.backendRequests("A")
        for _ in 0..<4 { #expect(fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false}"#).status == 200) }
        #expect(fleet.backendRequests("A") == afterRestart, "still drained after the restart")
        // Signed the way herd-node signs works too.
        let signed = FleetKey(key)!.headers(method: "POST", path: "/api/v1/nodes/node-a/resume", body: [], now: Int(EventLoop.wallClockMilliseconds()))
        #expect(post("/api/v1/nodes/node-a/resume", Dictionary(uniqueKeysWithValues: signed.map { ($0.name, $0.value) })).status == 200)
        #expect(try Self.json(fleet, "/api/v1/nodes/node-a")["hold"] == .null)
        #expect(waitUntil(seconds: 10) {
            _ = fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false}"#)
            return fleet.backendRequests("A") > afterRestart
        }, "a resumed node is routed to again")
    }

    /// A node that stops beating: node_offline fires (the API and the log
    /// say so), and clears when it is back.
    @Test func aHealthCheckFiresAndClearsOnALiveFleet() throws {
        let fleet = try RouterTests.twoNodeFleet(control: ["--degraded-after", "0.6", "--offline-after", "1.2"], node: ["--interval", "0.2"])
        defer { fleet.shutdown() }
        func state(_ id: String) -> String? {
            (try? JSONValue.parse(fleet.getControl("/api/v1/health").body))?["checks"]?.arrayValue?
                .first { $0["id"]?.stringValue == id }?["state"]?.stringValue
        }
        #expect(waitUntil(seconds: 10) { state("node_offline") == "ok" })
        fleet.nodes["node-b"]!.kill(signal: SIGSTOP)
        #expect(waitUntil(seconds: 15) { state("node_offline") == "firing" })
        #expect(fleet.control!.waitForOutput("health: node_offline (critical): offline: node-b"))
        fleet.nodes["node-b"]!.kill(signal: SIGCONT)
        #expect(waitUntil(seconds: 15) { state("node_offline") == "ok" })
        #expect(fleet.control!.waitForOutput("health: node_offline cleared"))
    }
}
