import Glibc
import HerdHTTP
import HerdJSON
import HerdStorage
import HerdWire
import HerdTestSupport
import Testing

/// The router keeps serving through process failures.
@Suite(.serialized) struct ResilienceTests {
    static let chat = #"{"model":"llama3:8b","stream":false}"#

    @Test func controlKilledAndRestartedWhileTheProxyKeepsServing() throws {
        // The systemd layout: control runs no proxies; a proxy runs on its own.
        let fleet = TestFleet(controlArguments: ["--proxies", "0"])
        defer { fleet.shutdown() }
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        let proxy = try RunningProcess(name: "proxy-standalone", path: ProcessRunner.executable("herd-proxy"),
                                       arguments: ["--port", String(fleet.proxyPort), "--control-socket", fleet.dataDirectory + "/control.sock"],
                                       logDirectory: fleet.directory)
        defer { proxy.stop() }
        #expect(proxy.waitForOutput("serving the Ollama"))
        // Started before control: it answers its own health check, and says why it cannot route yet.
        #expect(fleet.get("/").status == 200)
        let early = fleet.post("/api/chat", Self.chat)
        #expect(early.status == 503)
        #expect(early.header("Retry-After") != nil)

        try fleet.startControl(waitForProxy: false)
        try fleet.addNode("node-a", backend: "A")
        try fleet.waitForNodes(1)
        #expect(waitUntil(seconds: 5) { fleet.post("/api/chat", Self.chat).status == 200 })

        fleet.control!.kill(signal: SIGKILL)
        #expect(proxy.waitForOutput("lost herd-control"))
        for _ in 0..<5 {
            let response = fleet.post("/api/chat", Self.chat)
            #expect(response.status == 200, "served from the last snapshot: \(response.text)")
            #expect(response.header("X-Herd-Node") == "node-a")
        }
        try fleet.startControl(waitForProxy: false)
        try fleet.waitForNodes(1)
        #expect(waitUntil(seconds: 10) { proxy.output.components("connected to herd-control") >= 2 })
        #expect(fleet.post("/api/chat", Self.chat).status == 200)
        // Results buffered while control was away reach it.
        #expect(fleet.control!.waitForOutput("request_id=", seconds: 5))
    }

    /// Found in CI: a one-slot CPU server (a whisper server, llama-cpp-python)
    /// answers nothing else while it serves; its node's probe timed out, the
    /// node reported it unreachable, and every other request for its model
    /// got 503 "backend unreachable" (or 404, from the model listing) until
    /// the job ended — a busy backend refused instead of queued for. A probe
    /// taken and not answered while herd has requests on the node is busy:
    /// the backend stays routable, and the next request waits for its slot.
    @Test func aBackendTooBusyToAnswerItsProbeIsQueuedForNotRefused() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b", "--slots", "1", "--deaf-while-busy",
                                                        "--tokens", "100", "--token-delay-ms", "100"])
        defer { fleet.shutdown() }
        let first = try RawClient(port: fleet.proxyPort, timeoutSeconds: 40)
        // A stream of 100 tokens, 100 ms apart: ten seconds with its one slot taken.
        let stream = #"{"model":"llama3:8b"}"#
        first.send("POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(stream.utf8.count)\r\n\r\n\(stream)")
        // Its node's probe meets the backend busy (no answer within its 5 s first-byte timeout).
        var latest = 0
        let probeFailed = waitUntil(seconds: 15) {
            let nodes = (try? JSONValue.parse(fleet.getControl("/api/v1/nodes").body))?["nodes"]?.arrayValue ?? []
            latest = max(latest, (try? JSONValue.parse(fleet.getControl("/api/fleet").body))?["nodes"]?.arrayValue?.first?["last_seen_ms_ago"]?.intValue ?? 0)
            return nodes.first?["backends"]?.arrayValue?.first?["error"]?.stringValue != nil
        }
        #expect(probeFailed, "\(fleet.getControl("/api/v1/nodes").text)")
        // Meanwhile its beats kept their time (0.5 s): a beat does not wait for a probe past its interval (at least 1 s).
        #expect(latest < 3_000, "a heartbeat \(latest) ms late while the probe was out")
        let backend = (try? JSONValue.parse(fleet.getControl("/api/v1/nodes").body))?["nodes"]?.arrayValue?.first?["backends"]?.arrayValue?.first
        #expect(backend?["reachable"]?.boolValue == true, "busy, not gone: \(backend.map { "\($0)" } ?? "")")
        #expect(fleet.get("/v1/models").text.contains("llama3:8b"), "still listed")
        try fleet.script("A", #"{"tokens": 2, "token_delay_ms": 0}"#)
        let second = fleet.request("POST", "/api/chat", body: Self.chat, headers: ["Content-Type": "application/json"], port: fleet.proxyPort, timeout: 40)
        #expect(second.status == 200, "queued for the busy backend: \(second.status) \(second.text)")
        #expect(try first.readResponse().status == 200)
    }

    /// The other side of it: a backend that takes connections and answers
    /// nothing while herd has no request on it is hung, not busy — one beat
    /// of doubt (the first probe met that way), then unreachable.
    @Test func aBackendThatAnswersNothingWithNoRequestOnItIsUnreachable() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        defer { fleet.shutdown() }
        // Every answer, probes included, now comes after 60 s.
        try fleet.script("A", #"{"first_byte_delay_ms": 60000}"#)
        func backend() -> JSONValue? {
            (try? JSONValue.parse(fleet.getControl("/api/v1/nodes").body))?["nodes"]?.arrayValue?.first?["backends"]?.arrayValue?.first
        }
        let down = waitUntil(seconds: 30) { backend()?["reachable"]?.boolValue == false }
        #expect(down, "\(backend().map { "\($0)" } ?? "")")
        #expect(backend()?["error"]?.stringValue?.hasPrefix("busy") == false)
    }

    @Test func aStoppedControlCostsOneRouteTimeoutThenTheProxyRoutesItself() throws {
        // Found under attack: with control alive but not answering (SIGSTOP),
        // a request through the proxy never returned.
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b"],
                                         control: ["--proxy-arg=--route-timeout=0.5"])
        defer { fleet.shutdown() }
        #expect(fleet.post("/api/chat", Self.chat).status == 200)
        fleet.control!.kill(signal: SIGSTOP)
        defer { fleet.control!.kill(signal: SIGCONT) }
        let started = monotonicSeconds()
        let first = fleet.post("/api/chat", Self.chat)
        let waited = monotonicSeconds() - started
        #expect(first.status == 200, "routed from the snapshot: \(first.text)")
        #expect(first.header("X-Herd-Reason")?.contains("control did not answer within 500 ms") == true, "\(first.headers)")
        #expect(waited >= 0.5 && waited < 5, "one route timeout, not forever: \(waited) s")
        // Until control speaks again, requests do not wait for it.
        let next = monotonicSeconds()
        for _ in 0..<3 { #expect(fleet.post("/api/chat", Self.chat).status == 200) }
        #expect(monotonicSeconds() - next < 0.5 * 3, "no route timeout per request while control is known unresponsive")
        fleet.control!.kill(signal: SIGCONT)
        // Control reads the backlog: the proxy's own decisions are traced as such.
        var local: [[SQLiteValue]] = []
        #expect(waitUntil(seconds: 10) {
            local = (try? SQLiteDatabase(path: fleet.dataDirectory + "/herd.db", readOnly: true)
                .query("SELECT reason, status FROM request_traces WHERE local = 1")) ?? []
            return local.count == 4
        }, "\(local)")
        #expect(local.allSatisfy { TraceTests.text($0[0])?.contains("control did not answer within 500 ms") == true }, "\(local)")
        #expect(waitUntil(seconds: 5) { fleet.post("/api/chat", Self.chat).header("X-Herd-Reason")?.contains("local") == false },
                "control decides again once it answers")
    }

    /// A metric's value from `/metrics` (the first sample of that name).
    static func metric(_ fleet: TestFleet, _ name: String) -> Double? {
        fleet.getControl("/metrics").text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    /// Found by a user: llama.cpp answers embeddings `501` ("start it with
    /// --embeddings") and herd said `503 no other node can serve …`.
    @Test func aBackendsNotImplementedReachesTheClientWithItsMessage() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        defer { fleet.shutdown() }
        try fleet.script("A", #"{"failure":"501"}"#)
        let answer = fleet.post("/v1/embeddings", #"{"model":"llama3:8b","input":"hello"}"#)
        #expect(answer.status == 501, "\(answer.status) \(answer.text)")
        #expect(answer.text.contains("--embeddings"), "\(answer.text)")
        #expect(fleet.backendRequests("A", path: "/v1/embeddings") == 1, "not retried: the backend said what it serves")
        try fleet.script("A", #"{"failure":"none"}"#)
        #expect(fleet.post("/api/chat", Self.chat).status == 200, "and the node is not penalised out of the fleet")
        let unknown = fleet.request("GET", "/v1/nothing-here", body: nil, headers: [:], port: fleet.proxyPort)
        #expect(unknown.status == 404)
        #expect((try? JSONValue.parse(unknown.body))?["error"]?["code"] == .null, "an unknown path is no model_not_found: \(unknown.text)")
    }

    /// Found by a user: a backend too busy to answer the node's probe was
    /// reported with no models, and every request got `404 not found in the
    /// fleet` until it answered again. Now it is unreachable *with* its
    /// models: requests get 503 with `Retry-After`, and it serves again when back.
    @Test func aBackendThatStopsAnsweringIsBusyNotGone() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        defer { fleet.shutdown() }
        #expect(fleet.post("/api/chat", Self.chat).status == 200)
        let backend = fleet.backends["A"]!
        backend.kill(signal: SIGSTOP)
        defer { backend.kill(signal: SIGCONT) }
        func reachable() -> Bool? {
            (try? JSONValue.parse(fleet.getControl("/api/fleet").body))?["nodes"]?.arrayValue?.first?["backends"]?.arrayValue?.first?["reachable"]?.boolValue
        }
        #expect(waitUntil(seconds: 30) { reachable() == false }, "the probe timed out")
        let models = (try? JSONValue.parse(fleet.getControl("/api/fleet").body))?["nodes"]?.arrayValue?.first?["backends"]?.arrayValue?.first?["models"]?.arrayValue
        #expect(models?.count == 1, "its models are kept")
        let answer = fleet.post("/api/chat", Self.chat)
        #expect(answer.status == 503, "\(answer.status) \(answer.text)")
        #expect(answer.header("Retry-After") != nil)
        backend.kill(signal: SIGCONT)
        #expect(waitUntil(seconds: 30) { reachable() == true })
        #expect(fleet.post("/api/chat", Self.chat).status == 200)
    }

    /// Found by reading: a ticketed request that failed before its first byte
    /// while control was not answering went to the local policy and dropped
    /// its ticket; control kept the slot until the proxy reconnected. Now the
    /// ticket goes back (a RETURN control reads when it wakes).
    @Test func aTicketSpentBeforeControlStoppedComesBack() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b"],
                                         control: ["--max-concurrency", "8", "--proxy-arg=--route-timeout=0.3", "--proxy-arg=--first-byte-timeout=1.5"])
        defer { fleet.shutdown() }
        #expect(fleet.post("/api/chat", Self.chat).status == 200)
        // The node stops answering. A first request goes by ROUTE (and the
        // proxy is granted tickets); the next one spends a ticket.
        try fleet.script("A", #"{"failure":"hang"}"#)
        let routed = try RawClient(port: fleet.proxyPort, timeoutSeconds: 20)
        routed.send(RouterTests.rawPost(Self.chat))
        #expect(waitUntil(seconds: 5) { (Self.metric(fleet, "herd_route_tickets_out") ?? 0) > 0 }, "tickets granted")
        let ticketed = try RawClient(port: fleet.proxyPort, timeoutSeconds: 20)
        ticketed.send(RouterTests.rawPost(Self.chat))
        #expect(waitUntil(seconds: 5) { fleet.backendRequests("A") >= 3 }, "both requests reached the node")
        fleet.control!.kill(signal: SIGSTOP)
        defer { fleet.control!.kill(signal: SIGCONT) }
        // A request no ticket serves asks control, which does not answer: the
        // proxy now knows control is unresponsive.
        _ = fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false,"options":{"num_ctx":2048}}"#)
        // The ticketed request's node never answers: its retry cannot reach control.
        let failed = try ticketed.readResponse()
        #expect(failed.status >= 500, "\(failed.text)")
        #expect(try routed.readResponse().status >= 500)
        try fleet.script("A", #"{"failure":"none"}"#)
        fleet.control!.kill(signal: SIGCONT)
        #expect(waitUntil(seconds: 10) {
            Self.metric(fleet, "herd_in_flight") == 0 && Self.metric(fleet, "herd_route_tickets_out") == 0
        }, "slots held: in flight \(Self.metric(fleet, "herd_in_flight") ?? -1), tickets out \(Self.metric(fleet, "herd_route_tickets_out") ?? -1)")
        #expect(fleet.post("/api/chat", Self.chat).status == 200)
    }

    @Test func aProxyKilledWhileAnotherKeepsServing() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b"], control: ["--proxies", "2"])
        defer { fleet.shutdown() }
        #expect(fleet.control!.waitForOutput("proxy proxy-1 connected"))
        let line = fleet.control!.output.split(separator: "\n").first { $0.contains("started herd-proxy proxy-0 (pid ") }
        let pid = try #require(line.flatMap { $0.split(separator: "(pid ").last?.split(separator: ")").first }.flatMap { Int32($0) })
        kill(pid, SIGKILL)
        // A connection the kernel had already queued on the dead listener is
        // lost with it (SO_REUSEPORT; net.ipv4.tcp_migrate_req=1 migrates them):
        // the test starts once the dead process is gone.
        #expect(waitUntil(seconds: 5) { kill(pid, 0) != 0 })
        #expect(waitUntil(seconds: 5) { listeners(onPort: fleet.proxyPort) == 1 }, "the dead proxy's socket is gone")
        var failures = 0
        for _ in 0..<20 {
            if fleet.post("/api/chat", Self.chat).status != 200 { failures += 1 }
        }
        #expect(failures == 0, "the other proxy served every request")
        #expect(fleet.control!.waitForOutput("proxy-0 exited"))
        #expect(fleet.control!.waitForOutput("started herd-proxy proxy-0 (pid", seconds: 5))
        #expect(waitUntil(seconds: 5) { fleet.control!.output.components("proxy proxy-0 connected") >= 2 }, "restarted and reconnected")
    }

    @Test func sigtermLetsAStreamFinish() throws {
        let fleet = try TestFleet.single("T", backend: ["--models", "talk:1b", "--loaded", "talk:1b", "--tokens", "30", "--token-delay-ms", "20"])
        defer { fleet.shutdown() }
        let client = try RawClient(port: fleet.proxyPort)
        let body = #"{"model":"talk:1b"}"#
        client.send("POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(waitUntil(seconds: 5) { fleet.backendRequests("T") == 1 }, "the stream is under way")
        fleet.control!.kill(signal: SIGTERM) // control stops its proxy, which drains
        let response = try client.readResponse()
        let lines = response.text.split(separator: "\n")
        #expect(lines.count == 31, "the stream in flight finished: \(lines.count) lines")
        #expect(lines.last?.contains("\"done\":true") == true)
        #expect(waitUntil(seconds: 10) { !fleet.control!.isRunning })
        #expect(fleet.control!.exitCode == 0)
        #expect(fleet.get("/").status == 0, "the port is closed after the drain")
    }

    @Test func garbageOnTheControlSocketDropsOnlyThatConnection() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        defer { fleet.shutdown() }
        for garbage in [Array("GET / HTTP/1.1\r\n\r\n".utf8), [0, 0, 0, 5, 99, 1, 2, 3, 4], [0xFF, 0xFF, 0xFF, 0xFF, 1],
                        [0, 0, 0, 3, 1, 123, 125], [0, 0, 0, 10, 3, 123, 34, 105, 100, 34, 58], Self.frame(1, #"{"protocol":2,"proxy_id":"old","version":"0.1"}"#)] {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let path = Array((fleet.dataDirectory + "/control.sock").utf8)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
            let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            #expect(rc == 0)
            _ = garbage.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(fd)
        }
        // Five of the six are protocol errors (the fifth is a frame cut short, then EOF); an old proxy is told why.
        #expect(waitUntil(seconds: 5) { fleet.control!.output.components("dropped") >= 5 }, "\(fleet.control!.output)")
        #expect(fleet.control!.output.contains("protocol 2 is not supported"))
        #expect(fleet.control!.isRunning)
        #expect(fleet.post("/api/chat", Self.chat).status == 200, "the real proxy's connection is untouched")
        #expect(fleet.control!.output.contains("dropped"))
    }

    /// A control frame: length, type, body.
    static func frame(_ type: UInt8, _ body: String) -> [UInt8] {
        let length = UInt32(body.utf8.count + 1)
        return [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF), type] + Array(body.utf8)
    }

    @Test func malformedHeartbeatsAreRefusedAndChangeNothing() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        try fleet.startControl()
        let bad = [
            "not json", "[]", #"{"schema":1}"#, #"{"schema":99,"node_id":"x"}"#, #"{"schema":1,"node_id":"bad id!"}"#,
            #"{"schema":1,"node_id":"n","backends":[{"kind":"ollama","address":"example.com:1"}]}"#,
            #"{"schema":1,"node_id":"n","backends":[{"kind":"tpu","address":"127.0.0.1:1"}]}"#,
            #"{"schema":1,"node_id":"n","backends":[{"kind":"ollama","address":"127.0.0.1:1","models":[{"name":7}]}]}"#,
        ]
        for body in bad {
            let response = fleet.request("POST", "/heartbeat", body: body, headers: [:], port: fleet.controlPort)
            #expect(response.status == 400, "\(body) → \(response.status)")
            #expect(response.text.contains("error"))
        }
        let fleetJSON = try JSONValue.parse(fleet.getControl("/api/fleet").body)
        #expect(fleetJSON["nodes"]?.arrayValue?.isEmpty == true)
        let good = #"{"schema":1,"node_id":"n1","backends":[{"kind":"ollama","address":"127.0.0.1:9","models":[{"name":"m"}]}]}"#
        #expect(fleet.request("POST", "/heartbeat", body: good, headers: [:], port: fleet.controlPort).status == 200)
        #expect(try JSONValue.parse(fleet.getControl("/api/fleet").body)["nodes"]?.arrayValue?.count == 1)
    }

    @Test func aNodeThatStopsBeatingGoesOfflineAndIsNotRoutedTo() throws {
        let fleet = TestFleet(controlArguments: ["--degraded-after", "0.6", "--offline-after", "1.2"])
        defer { fleet.shutdown() }
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        try fleet.addBackend("B", arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        try fleet.startControl()
        // Nodes beating every 0.2 s: control judges lateness by each node's own interval.
        try fleet.addNode("node-a", backend: "A", extra: ["--interval", "0.2"])
        try fleet.addNode("node-b", backend: "B", extra: ["--interval", "0.2"])
        try fleet.waitForNodes(2)
        fleet.nodes["node-a"]!.kill(signal: SIGKILL)
        let offline = waitUntil(seconds: 5) {
            let nodes = (try? JSONValue.parse(fleet.getControl("/api/fleet").body))?["nodes"]?.arrayValue ?? []
            return nodes.contains { $0["id"]?.stringValue == "node-a" && $0["status"]?.stringValue == "offline" }
        }
        #expect(offline)
        for _ in 0..<6 { #expect(fleet.post("/api/chat", Self.chat).header("X-Herd-Node") == "node-b") }
    }
}

extension String {
    /// How many times `text` occurs.
    func components(_ text: String) -> Int {
        split(separator: text, omittingEmptySubsequences: false).count - 1
    }
}

/// Sockets listening on 127.0.0.1:`port` (from /proc/net/tcp; SO_REUSEPORT
/// listeners each have a line).
func listeners(onPort port: Int) -> Int {
    guard let file = fopen("/proc/net/tcp", "r") else { return -1 }
    defer { fclose(file) }
    var count = 0
    var line = [CChar](repeating: 0, count: 512)
    let hex = String(port, radix: 16, uppercase: true)
    let local = "0100007F:" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    while fgets(&line, Int32(line.count), file) != nil {
        let fields = String(cString: line).split(separator: " ")
        if fields.count > 3, fields[1] == local, fields[3] == "0A" { count += 1 }
    }
    return count
}
