import Glibc
import HerdJSON
import HerdStorage
import HerdTestSupport
import Testing

/// Client keys as a team uses them, through the real binaries: made through
/// control's API, checked by the proxies (no round trip), limits counted by
/// control across two proxies, budgets kept across a restart, revocation
/// felt at once.
@Suite(.serialized) struct ClientKeysTests {
    static let chat = #"{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}],"stream":false}"#
    static let openAIChat = #"{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}]}"#

    /// `POST /api/v1/keys` with `body`; the secret and the answer.
    static func create(_ fleet: TestFleet, _ body: String, auth: String? = nil) -> (key: String?, response: RawResponse) {
        var headers: [String: String] = [:]
        if let auth { headers["Authorization"] = "Bearer \(auth)" }
        let response = fleet.request("POST", "/api/v1/keys", body: body, headers: headers, port: fleet.controlPort)
        return ((try? JSONValue.parse(response.body))?["key"]?.stringValue, response)
    }

    /// Waits until the proxy knows `key`: its snapshot has keys (another herd key is refused) and this one is
    /// answered (listings count against no limit). Before its first key a router looks at no key at all.
    static func known(_ fleet: TestFleet, _ key: String) -> Bool {
        waitUntil(seconds: 5) {
            fleet.get("/api/tags", headers: ["Authorization": "Bearer herd_not_a_key"]).status == 401
                && fleet.get("/api/tags", headers: ["Authorization": "Bearer \(key)"]).status == 200
        }
    }

    static func fleet(_ control: [String] = [], proxies: Int = 1, tokens: Int = 5, node: [String] = [], tokenDelayMs: Int = 0) throws -> TestFleet {
        let fleet = TestFleet(controlArguments: ["--proxies", String(proxies)] + control)
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b,qwen2.5:7b", "--loaded", "llama3:8b,qwen2.5:7b", "--tokens", String(tokens),
                                              "--token-delay-ms", String(tokenDelayMs)])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A", extra: node)
        try fleet.waitForNodes(1)
        return fleet
    }

    @Test func aRequiredKeyIsCheckedAtTheProxyInEachAPIsShape() throws {
        let fleet = try Self.fleet(["--require-key"])
        defer { fleet.shutdown() }
        let (made, answer) = Self.create(fleet, #"{"name":"alice","models":["llama3*"],"tags":"team-a"}"#)
        #expect(answer.status == 201, "\(answer.text)")
        let key = try #require(made)
        #expect(key.hasPrefix("herd_") && key.count == 53)
        #expect(!fleet.getControl("/api/v1/keys").text.contains(key), "the secret is never listed")
        // The snapshot brings the key to the proxy.
        #expect(waitUntil(seconds: 5) { fleet.post("/api/chat", Self.chat, headers: ["Authorization": "Bearer \(key)"]).status == 200 })

        let none = fleet.post("/v1/chat/completions", Self.openAIChat)
        #expect(none.status == 401 && none.header("WWW-Authenticate") != nil)
        #expect((try JSONValue.parse(none.body))["error"]?["code"]?.stringValue == "invalid_api_key", "\(none.text)")
        let anthropic = fleet.post("/v1/messages", #"{"model":"llama3:8b","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
                                   headers: ["x-api-key": "sk-ant-not-ours"])
        let anthropicError = try JSONValue.parse(anthropic.body)
        #expect(anthropic.status == 401 && anthropicError["error"]?["type"]?.stringValue == "authentication_error")
        #expect(fleet.get("/api/tags").status == 401, "listings need the key too")
        #expect(fleet.get("/").status == 200, "the liveness page does not")
        // Anthropic's clients send x-api-key; it works as Bearer does.
        #expect(fleet.post("/v1/messages", #"{"model":"llama3:8b","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
                           headers: ["x-api-key": key]).status == 200)
        // Its models: llama3* only, in the API's shape.
        let other = fleet.post("/v1/chat/completions", #"{"model":"qwen2.5:7b","messages":[]}"#, headers: ["Authorization": "Bearer \(key)"])
        #expect(other.status == 403 && other.text.contains("may not use model 'qwen2.5:7b'"), "\(other.text)")

        // The request is traced and counted under the key's name.
        #expect(waitUntil(seconds: 5) { fleet.getControl("/metrics").text.contains(#"herd_key_requests_total{key="alice"} 2"#) },
                "\(fleet.getControl("/metrics").text.split(separator: "\n").filter { $0.contains("herd_key") })")
        let database = try SQLiteDatabase(path: fleet.dataDirectory + "/herd.db", readOnly: true)
        var rows: [[SQLiteValue]] = []
        #expect(waitUntil(seconds: 5) {
            rows = (try? database.query("SELECT key_name, client FROM request_traces WHERE key_name IS NOT NULL")) ?? []
            return rows.count >= 2
        }, "the two served (the 403 is the proxy's own answer: control never saw it)")
        #expect(rows.allSatisfy { $0 == [.text("alice"), .text("key:alice")] }, "\(rows)")

        // Revoked: refused within a second, with no restart.
        let revoke = fleet.request("DELETE", "/api/v1/keys/alice", body: nil, headers: [:], port: fleet.controlPort)
        #expect(revoke.status == 200, "\(revoke.text)")
        let start = monotonicSeconds()
        #expect(waitUntil(seconds: 1) { fleet.post("/api/chat", Self.chat, headers: ["Authorization": "Bearer \(key)"]).status == 401 })
        #expect(monotonicSeconds() - start < 1)
        let revoked = fleet.post("/api/chat", Self.chat, headers: ["Authorization": "Bearer \(key)"])
        #expect((try JSONValue.parse(revoked.body))["error"]?.stringValue?.contains("not valid") == true, "\(revoked.text)")
    }

    @Test func withoutRequireKeyKeysOnlyAddLimits() throws {
        let fleet = try Self.fleet()
        defer { fleet.shutdown() }
        #expect(fleet.post("/api/chat", Self.chat).status == 200)
        // Another service's token passed along (the OpenAI SDK always sends one) is not refused…
        #expect(fleet.post("/v1/chat/completions", Self.openAIChat, headers: ["Authorization": "Bearer sk-whatever"]).status == 200)
        let (made, _) = Self.create(fleet, #"{"name":"ci","rpm":2}"#)
        let key = try #require(made)
        // …but once keys are made, a herd key that is not (or no longer) valid is.
        #expect(Self.known(fleet, key))
        #expect(fleet.post("/api/chat", Self.chat, headers: ["Authorization": "Bearer herd_0000"]).status == 401)
        #expect(fleet.post("/api/chat", Self.chat, headers: ["Authorization": "Bearer \(key)"]).status == 200)
        #expect(fleet.post("/api/chat", Self.chat, headers: ["Authorization": "Bearer \(key)"]).status == 200)
        let over = fleet.post("/api/chat", Self.chat, headers: ["Authorization": "Bearer \(key)"])
        #expect(over.status == 429 && Int(over.header("Retry-After") ?? "") ?? 0 >= 1, "\(over.status) \(over.text)")
        #expect(over.text.contains("key 'ci' is over its limit of 2 requests per minute"), "\(over.text)")
        #expect(fleet.post("/api/chat", Self.chat).status == 200, "requests without the key are not held to its limit")
    }

    /// Two proxies, one key limited to 6 requests a minute, 20 sent at once
    /// (spread over both proxies by the kernel): exactly 6 go, 14 get 429 —
    /// control admits each limited request, so the count is exact.
    @Test func limitsHoldAcrossTwoProxiesUnderABurst() throws {
        let fleet = try Self.fleet(proxies: 2)
        defer { fleet.shutdown() }
        #expect(waitUntil(seconds: 10) {
            (try? JSONValue.parse(fleet.getControl("/api/v1/fleet").body))?["router"]?["proxies"]?["connected"]?.intValue == 2
        })
        let (made, _) = Self.create(fleet, #"{"name":"burst","rpm":6}"#)
        let key = try #require(made)
        #expect(Self.known(fleet, key))
        let body = Self.chat
        var clients: [RawClient] = []
        for _ in 0..<20 {
            let client = try RawClient(port: fleet.proxyPort, timeoutSeconds: 30)
            clients.append(client)
        }
        for client in clients {
            client.send("POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\nContent-Type: application/json\r\n"
                        + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        }
        let statuses = clients.map { (try? $0.readResponse().status) ?? 0 }
        #expect(statuses.filter { $0 == 200 }.count == 6 && statuses.filter { $0 == 429 }.count == 14, "\(statuses)")
        #expect(waitUntil(seconds: 5) { fleet.getControl("/metrics").text.contains(#"herd_key_refused_total{key="burst",limit="rpm"} 14"#) })
    }

    /// A burst against a budget: each request is counted ahead (its prompt
    /// and its output limit), so 20 at once on a budget of 300 tokens let one
    /// through (12 + 256 counted), not the burst.
    @Test func aBurstAgainstABudgetLetsOneThrough() throws {
        // Each answer streams for half a second: the burst arrives while the first is in flight.
        let fleet = try Self.fleet(proxies: 2, tokenDelayMs: 100)
        defer { fleet.shutdown() }
        let (made, _) = Self.create(fleet, #"{"name":"tight","budget_tokens":"300/day"}"#)
        let key = try #require(made)
        #expect(Self.known(fleet, key))
        let body = #"{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}],"stream":true}"#
        let clients = try (0..<20).map { _ in try RawClient(port: fleet.proxyPort, timeoutSeconds: 30) }
        for client in clients {
            client.send("POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\nContent-Type: application/json\r\n"
                        + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        }
        let statuses = clients.map { (try? $0.readResponse().status) ?? 0 }
        #expect(statuses.filter { $0 == 200 }.count == 1 && statuses.filter { $0 == 429 }.count == 19, "\(statuses)")
        // The client has its answer a moment before control has the RESULT that settles the count.
        func used() -> Int? { (try? JSONValue.parse(fleet.getControl("/api/v1/keys/tight").body))?["usage"]?["budget_used"]?.intValue }
        #expect(waitUntil(seconds: 5) { used() == 17 }, "12 prompt + 5 completion tokens: \(String(describing: used()))")
    }

    /// A daily budget: spent, refused with the time to midnight UTC, and
    /// still spent after herd-control restarts (usage is kept per day in SQLite).
    @Test func budgetsHoldAcrossARestart() throws {
        let fleet = try Self.fleet(tokens: 10)
        defer { fleet.shutdown() }
        // Each chat: 12 prompt + 10 completion tokens (the fake's).
        let (made, _) = Self.create(fleet, #"{"name":"monthly","budget_tokens":"50/day"}"#)
        let key = try #require(made)
        #expect(Self.known(fleet, key))
        var statuses: [Int] = []
        for _ in 0..<4 { statuses.append(fleet.post("/api/chat", Self.chat, headers: ["Authorization": "Bearer \(key)"]).status) }
        #expect(statuses == [200, 200, 200, 429], "22 tokens each: over 50 after the third: \(statuses)")
        let over = fleet.post("/api/chat", Self.chat, headers: ["Authorization": "Bearer \(key)"])
        let retryAfter = Int(over.header("Retry-After") ?? "") ?? 0
        #expect(over.text.contains("budget of 50 tokens per day (66 used)") && retryAfter >= 1 && retryAfter <= 86_400, "\(over.text)")

        try fleet.restartControl(onNewPort: false)
        try fleet.waitForNodes(1)
        #expect(Self.known(fleet, key))
        let after = fleet.post("/api/chat", Self.chat, headers: ["Authorization": "Bearer \(key)"])
        #expect(after.status == 429 && after.text.contains("(66 used)"), "\(after.text)")
        let shown = try JSONValue.parse(fleet.getControl("/api/v1/keys/monthly").body)
        #expect(shown["usage"]?["budget_used"]?.intValue == 66)
    }

    /// With a fleet key, only it (or an admin key) changes keys; reading them needs neither.
    @Test func changingKeysNeedsTheFleetKeyOrAnAdminKey() throws {
        let fleetKey = "keys-fleet-key-0123456789"
        let fleet = try Self.fleet(["--fleet-key", fleetKey], node: ["--fleet-key", fleetKey])
        defer { fleet.shutdown() }
        #expect(Self.create(fleet, #"{"name":"x"}"#).response.status == 401)
        #expect(Self.create(fleet, #"{"name":"x"}"#, auth: "wrong-key-0123456789").response.status == 401)
        let (admin, made) = Self.create(fleet, #"{"name":"ops","admin":true}"#, auth: fleetKey)
        #expect(made.status == 201)
        #expect(Self.create(fleet, #"{"name":"dev","rpm":10}"#, auth: try #require(admin)).response.status == 201, "an admin key may")
        #expect(Self.create(fleet, #"{"name":"dev"}"#, auth: fleetKey).response.status == 409, "names are unique among live keys")
        let bad = Self.create(fleet, #"{"name":"y","rpm":1e14}"#, auth: fleetKey).response
        #expect(bad.status == 400 && bad.text.contains("rpm must be a whole number"), "\(bad.text)")
        #expect(Self.create(fleet, #"{"name":"a b"}"#, auth: fleetKey).response.status == 400)
        let list = try JSONValue.parse(fleet.getControl("/api/v1/keys").body)
        #expect(list["keys"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["ops", "dev"])
        let patch = fleet.request("PATCH", "/api/v1/keys/dev", body: #"{"rpm":null,"tpm":500}"#, headers: ["Authorization": "Bearer \(fleetKey)"],
                                  port: fleet.controlPort)
        let patched = try JSONValue.parse(patch.body)
        #expect(patch.status == 200 && patched["tpm"]?.intValue == 500 && patched["rpm"] == .null, "\(patch.text)")
        #expect(fleet.request("DELETE", "/api/v1/keys/dev", body: nil, headers: [:], port: fleet.controlPort).status == 401)
    }

    /// What a careless or hostile client sends the keys API and the proxies: each a clear error, nothing stored,
    /// nothing echoed raw.
    @Test func hostileInputGetsClearErrors() throws {
        let fleet = try Self.fleet()
        defer { fleet.shutdown() }
        let huge = String(repeating: "a", count: 5 * 1024 * 1024)
        let big = fleet.request("POST", "/api/v1/keys", body: #"{"name":"\#(huge)"}"#, headers: [:], port: fleet.controlPort)
        #expect(big.status == 413, "a 5 MB name: \(big.status)")
        for body in [#"{"name":"a\u0000b"}"#, #"{"name":"x","models":"\#(String(repeating: "m,", count: 70))"}"#, #"{"name":"x","tpm":1e300}"#,
                     #"{"name":"x","budget_tokens":"-5/day"}"#, "[1,2]", "not json", #"{"name":"x","max_queue_wait":"soon"}"#] {
            let answer = fleet.request("POST", "/api/v1/keys", body: body, headers: [:], port: fleet.controlPort)
            #expect(answer.status == 400 && answer.text.utf8.count < 600, "\(body.prefix(60)): \(answer.status) \(answer.text.prefix(200))")
        }
        #expect((try JSONValue.parse(fleet.getControl("/api/v1/keys").body))["keys"]?.arrayValue?.isEmpty == true, "nothing stored")
        let odd = fleet.request("DELETE", "/api/v1/keys/%00%1b%5b31m", body: nil, headers: [:], port: fleet.controlPort)
        #expect(odd.status == 404 && !odd.text.contains("\u{1b}"), "\(odd.text)")
        // A huge bearer token: the proxy's head limit, not a crash.
        let (made, _) = Self.create(fleet, #"{"name":"ok"}"#)
        #expect(Self.known(fleet, try #require(made)))
        let long = fleet.post("/api/chat", Self.chat, headers: ["Authorization": "Bearer herd_" + String(repeating: "f", count: 100_000)])
        #expect(long.status == 431 || long.status == 401, "\(long.status)")
        #expect(fleet.get("/").status == 200)
    }
}
