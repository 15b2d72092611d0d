import Glibc
import HerdJSON
import HerdStorage
import HerdTestSupport
import Testing

/// The trace rows in `<data-dir>/herd.db` match the requests sent, whatever
/// became of them: served, rejected, abandoned while streaming or while queued.
@Suite(.serialized) struct TraceTests {
    /// Rows of `request_traces` as column → value, oldest first.
    static func rows(_ fleet: TestFleet) throws -> [[String: SQLiteValue]] {
        let database = try SQLiteDatabase(path: fleet.dataDirectory + "/herd.db", readOnly: true)
        let columns = ["model", "served_model", "node_id", "outcome", "status", "completion_tokens", "tags", "stream", "queued_ms",
                       "score", "candidates", "reason", "error", "concurrency", "eval_ms", "fallback_used", "path", "api"]
        return try database.query("SELECT \(columns.joined(separator: ", ")) FROM request_traces ORDER BY id").map { row in
            Dictionary(uniqueKeysWithValues: zip(columns, row))
        }
    }

    static func text(_ value: SQLiteValue?) -> String? { if case let .text(s)? = value { s } else { nil } }
    static func int(_ value: SQLiteValue?) -> Int? { value?.double.map { Int($0) } }

    @Test func everyRequestLeavesOneRowThatSaysWhatHappened() throws {
        let fleet = TestFleet(controlArguments: ["--max-concurrency", "1"])
        defer { fleet.shutdown() }
        // A: fast, llama3:8b and qwen:7b. B: slow (100 ms a token, 20 tokens), mistral:7b only.
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b,qwen:7b", "--loaded", "llama3:8b", "--tokens", "5"])
        try fleet.addBackend("B", arguments: ["--models", "mistral:7b", "--loaded", "mistral:7b", "--tokens", "20", "--token-delay-ms", "100"])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A")
        try fleet.addNode("node-b", backend: "B")
        try fleet.waitForNodes(2)

        // 1–3: served, with tags from the header, the body's metadata and its user.
        for _ in 0..<3 {
            let r = fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false,"metadata":{"tags":["batch"]},"user":"ann"}"#,
                               headers: ["X-Herd-Tags": "app,eval"])
            #expect(r.status == 200)
        }
        // 4: a streamed generation through the fallback.
        #expect(fleet.post("/api/generate", #"{"model":"gone:1b","prompt":"x","fallback_models":["qwen:7b"]}"#).status == 200)
        // 5: a model nobody has: rejected, not an upstream error.
        #expect(fleet.post("/api/chat", #"{"model":"nope:1b"}"#).status == 404)
        // 6: the client leaves while the slow node streams; 7: one leaves while queued behind it.
        let streaming = try RawClient(port: fleet.proxyPort)
        streaming.send(RouterTests.rawPost(#"{"model":"mistral:7b"}"#))
        #expect(streaming.fill(), "the stream started")
        let queued = try RawClient(port: fleet.proxyPort)
        queued.send(RouterTests.rawPost(#"{"model":"mistral:7b"}"#))
        let inQueue = waitUntil(seconds: 5) { fleet.getControl("/metrics").text.contains("herd_queue_length 1") }
        #expect(inQueue)
        Glibc.shutdown(queued.fd, Int32(SHUT_RDWR))
        Glibc.shutdown(streaming.fd, Int32(SHUT_RDWR))

        var rows: [[String: SQLiteValue]] = []
        let written = waitUntil(seconds: 10) {
            rows = (try? Self.rows(fleet)) ?? []
            return rows.count >= 7
        }
        #expect(written && rows.count == 7, "one row per request: \(rows.count)")
        guard rows.count == 7 else { return }

        for row in rows.prefix(3) {
            #expect(Self.text(row["outcome"]) == "ok" && Self.int(row["status"]) == 200)
            #expect(Self.text(row["node_id"]) == "node-a")
            #expect(Self.int(row["completion_tokens"]) == 5)
            #expect(Self.text(row["tags"]) == "app,eval,batch,user:ann")
            #expect(Self.text(row["score"])?.hasPrefix("ect_ms=") == true)
            #expect(Self.int(row["concurrency"]) == 1 && row["eval_ms"]?.double != nil, "what learning needs after a restart")
            let candidates = try JSONValue.parse(Self.text(row["candidates"]) ?? "")
            #expect(candidates.arrayValue?.first?["node"] == "node-a")
        }
        #expect(Self.text(rows[3]["model"]) == "gone:1b" && Self.text(rows[3]["served_model"]) == "qwen:7b")
        #expect(Self.int(rows[3]["fallback_used"]) == 1 && Self.int(rows[3]["stream"]) == 1 && Self.text(rows[3]["path"]) == "/api/generate")
        #expect(Self.text(rows[4]["outcome"]) == "rejected" && Self.int(rows[4]["status"]) == 404 && Self.text(rows[4]["model"]) == "nope:1b")
        // The queued one left first (its row comes first), then the streaming one.
        let gone = rows.suffix(2)
        #expect(gone.allSatisfy { Self.text($0["outcome"]) == "client_gone" && Self.int($0["status"]) == 499 })
        #expect(gone.contains { Self.text($0["node_id"]) == "node-b" }, "the one that streamed names its node")
        #expect(gone.contains { Self.text($0["node_id"]) == "" && Self.int($0["queued_ms"]) == nil }, "the queued one never had a node")

        // The live feed of decisions: 5 routed (1–4, 6), 1 queued (7), oldest first; ?since= and ?limit= page it.
        let feed = try JSONValue.parse(fleet.getControl("/api/decisions").body)["decisions"]?.arrayValue ?? []
        #expect(feed.map { $0["action"]?.stringValue ?? "" } == ["routed", "routed", "routed", "routed", "routed", "queued"], "\(feed)")
        #expect(feed.first?["node"] == "node-a" && feed.first?["score"]?.stringValue?.hasPrefix("ect_ms=") == true)
        #expect(feed.first?["candidates"]?.arrayValue?.first?["node"] == "node-a")
        #expect(feed[3]["model"] == "gone:1b" && feed[3]["served_model"] == "qwen:7b")
        let last = feed.last?["seq"]?.intValue ?? 0
        #expect(try JSONValue.parse(fleet.getControl("/api/decisions?since=\(last)").body)["decisions"]?.arrayValue?.isEmpty == true)
        #expect(try JSONValue.parse(fleet.getControl("/api/decisions?limit=2").body)["decisions"]?.arrayValue?.count == 2)
    }

    /// Route tickets end to end: after a ROUTE, the proxy holds routes
    /// decided ahead and spends them without asking; each such request is
    /// traced like a routed one, with `ticket` = 1, and answered with the same
    /// X-Herd-* headers.
    @Test func requestsThatSpendATicketAreTracedAsSuch() throws {
        let fleet = TestFleet(controlArguments: ["--max-concurrency", "8"])
        defer { fleet.shutdown() }
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b", "--tokens", "3"])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A")
        try fleet.waitForNodes(1)
        // Requests until one comes by ticket (a ticket lives 250 ms: a slow machine may let some expire).
        var sent = 0
        var headersSeen: [String] = []
        let spent = waitUntil(seconds: 20) {
            let r = fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false,"messages":[{"role":"user","content":"hi"}]}"#)
            sent += 1
            if r.status == 200, let node = r.header("X-Herd-Node"), let reason = r.header("X-Herd-Reason") { headersSeen.append("\(node) \(reason)") }
            return (Self.metric(fleet, "herd_route_tickets_total{event=\"spent\"}") ?? 0) >= 1
        }
        #expect(spent, "a request spent a ticket")
        #expect(headersSeen.count == sent && headersSeen.allSatisfy { $0.hasPrefix("node-a hot") }, "\(headersSeen)")
        let database = try SQLiteDatabase(path: fleet.dataDirectory + "/herd.db", readOnly: true)
        var rows: [[SQLiteValue]] = []
        let written = waitUntil(seconds: 10) {
            rows = (try? database.query("SELECT ticket, outcome, node_id, served_model, reason, path, est_tokens FROM request_traces ORDER BY id")) ?? []
            return rows.count >= sent
        }
        #expect(written && rows.count == sent, "one row per request: \(rows.count) of \(sent)")
        let ticketed = rows.filter { Self.int($0[0]) == 1 }
        #expect(!ticketed.isEmpty)
        #expect(Self.int(rows.first?[0]) == 0, "the first request asked by ROUTE (no ticket yet)")
        for row in ticketed {
            #expect(Self.text(row[1]) == "ok" && Self.text(row[2]) == "node-a" && Self.text(row[3]) == "llama3:8b" && Self.text(row[5]) == "/api/chat")
            #expect(Self.text(row[4])?.hasPrefix("hot") == true, "the decision's reason, as for a ROUTE")
            #expect((Self.int(row[6]) ?? 0) > 0, "the request's own size, not the ticket's template")
        }
        // Many at once: their RESULTs reach control in one frame, each with its
        // ticket's request inside; every one is read (the proxy is never dropped).
        let body = #"{"model":"llama3:8b","stream":false,"messages":[{"role":"user","content":"hi"}]}"#
        for _ in 0..<6 {
            let clients = try (0..<8).map { _ in try RawClient(port: fleet.proxyPort, timeoutSeconds: 10) }
            for c in clients {
                c.send("POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            }
            for c in clients { #expect(try c.readResponse().status == 200) }
        }
        #expect(!fleet.logs.contains("dropped"), "\(fleet.logs.split(separator: "\n").filter { $0.contains("dropped") }.prefix(3))")
    }

    static func metric(_ fleet: TestFleet, _ name: String) -> Double? {
        for line in fleet.getControl("/metrics").text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1))
        }
        return nil
    }

    @Test func learnedRatesComeBackAfterARestart() throws {
        let fleet = try TestFleet.single("A", backend: ["--models", "llama3:8b", "--loaded", "llama3:8b", "--tokens", "5"])
        defer { fleet.shutdown() }
        for _ in 0..<3 { #expect(fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false}"#).status == 200) }
        let traced = waitUntil(seconds: 10) { ((try? Self.rows(fleet)) ?? []).count >= 3 }
        #expect(traced)
        try fleet.restartControl(onNewPort: false)
        let restored = waitUntil(seconds: 10) { fleet.logs.contains("learned rates restored from 3 traced requests") }
        #expect(restored, "\(fleet.logs)")
    }
}
