import Glibc
import HerdJSON
import HerdTestSupport
import Testing

/// Attacks that were found to hurt, tried again the way they were found.
@Suite(.serialized) struct AbuseTests {
    /// Resident memory of `pid` in MiB, from /proc.
    static func rssMiB(_ pid: Int32) -> Double {
        guard let file = fopen("/proc/\(pid)/status", "r") else { return -1 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, 256, file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasPrefix("VmRSS:") {
                return Double(text.split(separator: " ").dropFirst().first.flatMap { Double($0) } ?? -1) / 1024
            }
        }
        return -1
    }

    /// Found: unsigned heartbeats from 3,000 forged node ids took control to
    /// 239 MB in 20 s (a full snapshot of every node to every proxy per new node).
    static func flood(_ fleet: TestFleet, nodes: Int) throws -> (accepted: Int, full: Int) {
        let client = try RawClient(port: fleet.controlPort, timeoutSeconds: 10)
        var accepted = 0, full = 0
        for i in 0..<nodes {
            let models = (0..<20).map { #"{"name":"forged-model-\#($0):7b","size":4000000000}"# }.joined(separator: ",")
            let body = #"{"schema":1,"node_id":"forged-\#(i)","backends":[{"kind":"ollama","url":"http://10.0.0.1:11434","address":"10.0.0.1:11434","reachable":true,"models":[\#(models)],"loaded":[]}]}"#
            client.send("POST /heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            let response = try client.readResponse()
            if response.status == 200 { accepted += 1 } else if response.status == 503, response.text.contains("fleet is full") { full += 1 }
        }
        return (accepted, full)
    }

    /// A fleet for a flood: the forged nodes stay online however long the
    /// flood takes (a sanitized build is slow), and control's memory is
    /// measured without AddressSanitizer's quarantine of freed blocks.
    static func floodFleet(_ control: [String]) throws -> TestFleet {
        let fleet = TestFleet(controlArguments: ["--proxies", "2", "--degraded-after", "300", "--offline-after", "600"] + control)
        fleet.controlEnvironment = ["ASAN_OPTIONS": "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"]
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A")
        try fleet.waitForNodes(1)
        return fleet
    }

    @Test func aHeartbeatFloodOfForgedNodesIsCappedAndControlStaysSmall() throws {
        let fleet = try Self.floodFleet([])
        defer { fleet.shutdown() }
        #expect(fleet.control!.waitForOutput("proxy proxy-1 connected"))
        let before = Self.rssMiB(fleet.control!.pid)
        let started = monotonicSeconds()
        let (accepted, full) = try Self.flood(fleet, nodes: 3_000)
        let minutes = Int((monotonicSeconds() - started) / 60) + 1
        #expect(accepted == 255 && full == 2_745, "the default cap is 256 nodes (one is real): \(accepted) accepted, \(full) refused")
        let after = Self.rssMiB(fleet.control!.pid)
        #expect(after > 0 && after - before < 64, "control grew \(before) → \(after) MiB")
        #expect((1...minutes).contains(fleet.control!.output.components("the fleet has 256 nodes")), "one warning a minute, not one per heartbeat")
        // The real node still routes; the proxies kept their connections.
        #expect(fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false}"#).status == 200)
        #expect(!fleet.control!.output.contains("dropped"), "no proxy fell behind")
    }

    /// With the cap raised, 600 real-looking nodes joining at once: the
    /// snapshots to the proxies are coalesced (latest wins), not one per join.
    @Test func hundredsOfJoinsAtOnceLeaveAsAFewSnapshots() throws {
        let fleet = try Self.floodFleet(["--max-nodes", "5000"])
        defer { fleet.shutdown() }
        #expect(fleet.control!.waitForOutput("proxy proxy-1 connected"))
        let before = Self.rssMiB(fleet.control!.pid)
        let (accepted, _) = try Self.flood(fleet, nodes: 600)
        #expect(accepted == 600)
        let after = Self.rssMiB(fleet.control!.pid)
        #expect(after > 0 && after - before < 128, "control grew \(before) → \(after) MiB")
        #expect(waitUntil(seconds: 20) { (try? JSONValue.parse(fleet.get("/api/tags").body))?["models"]?.arrayValue?.count == 21 },
                "the proxies end with the latest fleet")
        #expect(fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false}"#).status == 200)
    }

    /// Found: 2,000 unknown model names grew /metrics to 267 KB; every
    /// client-chosen string became a label.
    @Test func twoThousandUnknownModelsDoNotGrowTheMetrics() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        defer { fleet.shutdown() }
        #expect(fleet.post("/api/chat", #"{"model":"nope-0","stream":false}"#).status == 404)
        #expect(waitUntil(seconds: 10) { fleet.getControl("/metrics").text.contains(#"outcome="rejected"} 1"#) })
        let before = fleet.getControl("/metrics").text.utf8.count
        let client = try RawClient(port: fleet.proxyPort, timeoutSeconds: 10)
        var refused = 0
        for i in 0..<2_000 {
            let body = #"{"model":"unknown-\#(i)-\#(String(repeating: "x", count: 200))","stream":false}"#
            client.send("POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            if try client.readResponse().status == 404 { refused += 1 }
        }
        #expect(refused == 2_000)
        #expect(fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false}"#).status == 200)
        var metrics = ""
        #expect(waitUntil(seconds: 10) {
            metrics = fleet.getControl("/metrics").text
            return metrics.contains(#"herd_requests_total{api="ollama",node="none",model="other",outcome="rejected"} 2001"#)
        }, "\(metrics.prefix(2_000))")
        #expect(!metrics.contains("unknown-"), "no client string became a label")
        // The same series as after one unknown model (plus the ok request's, and digits of counts and sums).
        #expect(metrics.utf8.count < before + 1_024, "\(before) → \(metrics.utf8.count) bytes")
    }

    /// The faults of the hostile-input issue, tried as they were found: each
    /// gets a clear 4xx, control and its proxies stay up, and a good request
    /// right after is served.
    @Test func absurdNumbersAndForgedTimestampsTakeNothingDown() throws {
        let key = "hostile-fleet-key-0123456789"
        let fleet = TestFleet(controlArguments: ["--fleet-key", key])
        defer { fleet.shutdown() }
        // llama3:70b is on disk and not loaded: the scorer's "does not fit" path.
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b,llama3:70b", "--loaded", "llama3:8b"])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A", extra: ["--fleet-key", key])
        try fleet.waitForNodes(1)
        let good = #"{"model":"llama3:8b","stream":false}"#
        for body in [#"{"model":"llama3:70b","stream":false,"options":{"num_ctx":1e14}}"#,
                     #"{"model":"llama3:70b","stream":false,"options":{"num_ctx":-4096}}"#,
                     #"{"model":"llama3:70b","stream":false,"options":{"num_ctx":4096.5,"num_predict":1e300}}"#,
                     #"{"model":"\#(String(repeating: "m", count: 5_000_000))","stream":false}"#] {
            let refused = fleet.post("/api/chat", body)
            #expect(refused.status == 400, "\(refused.text.prefix(300))")
            #expect(fleet.post("/api/chat", good).status == 200)
        }
        let openAI = fleet.post("/v1/chat/completions", #"{"model":"llama3:70b","max_tokens":1e300,"messages":[]}"#)
        #expect(openAI.status == 400 && (try? JSONValue.parse(openAI.body))?["error"]?["type"]?.stringValue == "invalid_request_error")
        // An unauthenticated heartbeat with a timestamp near Int64.min: 401, not a dead control.
        let client = try RawClient(port: fleet.controlPort, timeoutSeconds: 10)
        let beat = #"{"schema":1,"node_id":"forged"}"#
        for stamp in ["-9223372036854775808", "9223372036854775807"] {
            client.send("POST /heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Herd-Timestamp: \(stamp)\r\n"
                + "X-Herd-Signature: \(String(repeating: "ab", count: 32))\r\nContent-Length: \(beat.utf8.count)\r\n\r\n\(beat)")
            #expect(try client.readResponse().status == 401)
            let action = "POST /api/v1/nodes/node-a/drain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Herd-Timestamp: \(stamp)\r\n"
                + "X-Herd-Signature: \(String(repeating: "ab", count: 32))\r\nContent-Length: 2\r\n\r\n{}"
            client.send(action)
            #expect(try client.readResponse().status == 401)
        }
        // A page on another site, or reached by a rebound DNS name, changes and reads nothing.
        client.send("POST /api/v1/nodes/node-a/drain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n")
        #expect(try client.readResponse().status == 415)
        client.send("GET /api/v1/traces HTTP/1.1\r\nHost: rebound.attacker.example\r\n\r\n")
        #expect(try client.readResponse().status == 421)
        #expect(fleet.getControl("/health").status == 200)
        #expect(fleet.post("/api/chat", good).status == 200)
        #expect(fleet.control?.isRunning == true)
    }
}
