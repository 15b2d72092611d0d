import Glibc
import HerdJSON
import HerdTestSupport
import Testing

/// Overflow to a cloud provider, opt-in per key, against a local HTTPS
/// provider with its own CA (Tests/support/https_provider.py): only a key
/// made with `cloud`, only past its queue wait or for a model only the
/// provider has; the provider gets its own key, never the client's; a
/// provider that fails is a dead node.
@Suite(.serialized) struct CloudOverflowTests {
    static var repository: String {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }

    struct Setup {
        let fleet: TestFleet
        let provider: RunningProcess
        let providerPort: Int
        let cloudKey: String
        let localKey: String

        /// What the provider was sent.
        func seen() -> [JSONValue] {
            let out = ProcessRunner.run("/usr/bin/curl", ["-s", "--cacert", fleet.directory + "/provider/ca.pem", "https://localhost:\(providerPort)/_provider/requests"]).output
            return (try? JSONValue.parse(Array(out.utf8)))?.arrayValue ?? []
        }

        func shutdown() {
            fleet.shutdown()
            provider.stop()
        }
    }

    static func setup(mode: String = "ok") throws -> Setup {
        let fleet = TestFleet(controlArguments: ["--queue-timeout", "3", "--max-concurrency", "1"])
        let providerDirectory = fleet.directory + "/provider"
        mkdir(providerDirectory, 0o755)
        let providerPort = freePort()
        let provider = try RunningProcess(name: "provider", path: "/usr/bin/python3",
                                          arguments: [repository + "/Tests/support/https_provider.py", providerDirectory, String(providerPort), "--mode", mode],
                                          logDirectory: fleet.directory)
        guard provider.waitForOutput("listening on", seconds: 30) else { throw TestError("provider: \(provider.output)") }
        fleet.controlEnvironment = ["HERD_PROVIDER_CLOUD_KEY": "sk-provider-secret", "HERD_PROVIDER_CLAUDE_KEY": "sk-ant-secret"]
        // A slow node: 20 tokens, 150 ms each (3 s a streamed chat), one at a time.
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b", "--tokens", "20", "--token-delay-ms", "150"])
        try fleet.startControl(extra: ["--provider", "cloud=https://localhost:\(providerPort)/v1", "--provider-ca", providerDirectory + "/ca.pem",
                                       "--provider-model", "cloud:llama3:8b=gpt-cloud", "--provider-model", "cloud:gpt-4o=gpt-cloud",
                                       "--provider", "claude=https://localhost:\(providerPort)/v1#anthropic", "--provider-model", "claude:claude-x=claude-3-haiku"])
        try fleet.addNode("node-a", backend: "A")
        try fleet.waitForNodes(1)
        func make(_ body: String) throws -> String {
            let response = fleet.request("POST", "/api/v1/keys", body: body, headers: [:], port: fleet.controlPort)
            return try #require((try? JSONValue.parse(response.body))?["key"]?.stringValue, "\(response.text)")
        }
        let cloudKey = try make(#"{"name":"burst","cloud":true,"max_queue_wait":0.5}"#)
        let localKey = try make(#"{"name":"local"}"#)
        _ = waitUntil(seconds: 5) { fleet.get("/api/tags", headers: ["Authorization": "Bearer herd_nope"]).status == 401 }
        return Setup(fleet: fleet, provider: provider, providerPort: providerPort, cloudKey: cloudKey, localKey: localKey)
    }

    static let chat = #"{"model":"llama3:8b","messages":[{"role":"user","content":"capital of France?"}]}"#

    @Test func onlyACloudKeyOverflowsAndOnlyPastItsWait() throws {
        let s = try Self.setup()
        defer { s.shutdown() }
        let fleet = s.fleet
        // The providers as the API (and the dashboard's Fleet view) show them: never their keys.
        let shown = fleet.getControl("/api/v1/fleet").text
        #expect(shown.contains(#""node":"cloud:cloud""#) && shown.contains(#""llama3:8b":"gpt-cloud""#) && !shown.contains("sk-provider-secret"), "\(shown)")
        #expect(!fleet.getControl("/api/v1/settings").text.contains("sk-provider-secret"))
        // Idle fleet: the node serves, even a cloud key.
        let idle = fleet.post("/v1/chat/completions", Self.chat, headers: ["Authorization": "Bearer \(s.cloudKey)"])
        #expect(idle.status == 200 && idle.header("X-Herd-Node") == "node-a", "\(idle.status) \(idle.text)")
        #expect(s.seen().isEmpty, "nothing left the network")

        // A model only the provider has: a cloud key gets it from there (as an Ollama answer for an Ollama client), others 404.
        let only = fleet.post("/api/chat", #"{"model":"gpt-4o","stream":false,"messages":[{"role":"user","content":"hi"}]}"#,
                              headers: ["Authorization": "Bearer \(s.cloudKey)"])
        #expect(only.status == 200 && only.header("X-Herd-Node") == "cloud:cloud", "\(only.status) \(only.text)")
        #expect((try JSONValue.parse(only.body))["message"]?["content"]?.stringValue == "Paris, from the cloud.", "\(only.text)")
        #expect(fleet.post("/api/chat", #"{"model":"gpt-4o","stream":false,"messages":[]}"#, headers: ["Authorization": "Bearer \(s.localKey)"]).status == 404)
        let sent = s.seen()
        #expect(sent.count == 1 && sent.first?["model"]?.stringValue == "gpt-cloud" && sent.first?["path"]?.stringValue == "/v1/chat/completions")
        #expect(sent.first?["authorization"]?.stringValue == "Bearer sk-provider-secret", "the provider's key, never the client's: \(sent)")

        // Saturated: the node is busy for ~3 s. The cloud key waits its 0.5 s, then goes to the cloud; the other key waits for the node.
        let busy = try RawClient(port: fleet.proxyPort, timeoutSeconds: 30)
        let long = #"{"model":"llama3:8b","stream":true,"messages":[{"role":"user","content":"a long one"}]}"#
        let before = fleet.backendRequests("A", path: "/api/chat")
        busy.send("POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(long.utf8.count)\r\n\r\n\(long)")
        #expect(waitUntil(seconds: 5) { fleet.backendRequests("A", path: "/api/chat") == before + 1 }, "the node is busy")
        let started = monotonicSeconds()
        let over = fleet.post("/v1/chat/completions", Self.chat, headers: ["Authorization": "Bearer \(s.cloudKey)"])
        let waited = monotonicSeconds() - started
        #expect(over.status == 200 && over.header("X-Herd-Node") == "cloud:cloud", "\(over.status) \(over.headers)")
        #expect(waited >= 0.4 && waited < 2.5, "overflow past the key's 0.5 s wait, not the 3 s queue timeout: \(waited) s")
        #expect(over.header("X-Herd-Reason")?.contains("cloud overflow to cloud") == true)
        // Streamed from the cloud too.
        let streamed = fleet.post("/v1/chat/completions", #"{"model":"llama3:8b","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
                                  headers: ["Authorization": "Bearer \(s.cloudKey)"])
        #expect(streamed.header("X-Herd-Node") == "cloud:cloud" && streamed.text.contains("data: [DONE]"), "\(streamed.text)")
        // A key without `cloud` waits for the node (served after the long one), never the cloud.
        let local = fleet.post("/v1/chat/completions", Self.chat, headers: ["Authorization": "Bearer \(s.localKey)"])
        #expect(local.header("X-Herd-Node") == "node-a" || local.status == 503, "\(local.status) \(local.headers)")
        _ = try? busy.readResponse()
        #expect(s.seen().count == 3)
        // Traced under the cloud node, with its key.
        #expect(waitUntil(seconds: 5) {
            let traces = (try? JSONValue.parse(fleet.getControl("/api/v1/traces?node=cloud:cloud").body))?["traces"]?.arrayValue ?? []
            return traces.count == 3 && traces.allSatisfy { $0["key_name"]?.stringValue == "burst" && $0["fallback_used"] == false }
        }, "\(fleet.getControl("/api/v1/traces?node=cloud:cloud").text)")
    }

    /// An Anthropic provider takes Anthropic's Messages, with its own key as x-api-key.
    @Test func anAnthropicProviderTakesMessages() throws {
        let s = try Self.setup()
        defer { s.shutdown() }
        let body = #"{"model":"claude-x","max_tokens":20,"messages":[{"role":"user","content":"capital of France?"}]}"#
        let answer = s.fleet.post("/v1/messages", body, headers: ["x-api-key": s.cloudKey, "anthropic-version": "2023-06-01"])
        #expect(answer.status == 200 && answer.header("X-Herd-Node") == "cloud:claude", "\(answer.status) \(answer.text)")
        #expect((try JSONValue.parse(answer.body))["content"]?.arrayValue?.first?["text"]?.stringValue == "Paris, from the Anthropic cloud.")
        let sent = s.seen().last
        #expect(sent?["path"]?.stringValue == "/v1/messages" && sent?["model"]?.stringValue == "claude-3-haiku")
        #expect(sent?["x_api_key"]?.stringValue == "sk-ant-secret" && sent?["authorization"] == .null, "\(String(describing: sent))")
        // An OpenAI chat for that model does not go to an Anthropic provider.
        #expect(s.fleet.post("/v1/chat/completions", #"{"model":"claude-x","messages":[]}"#, headers: ["Authorization": "Bearer \(s.cloudKey)"]).status == 404)
    }

    @Test func aProviderThatFailsIsADeadNode() throws {
        for mode in ["down", "garbage"] {
            let s = try Self.setup(mode: mode)
            defer { s.shutdown() }
            let answer = s.fleet.post("/v1/chat/completions", #"{"model":"gpt-4o","messages":[]}"#, headers: ["Authorization": "Bearer \(s.cloudKey)"])
            #expect(answer.status == 502 && answer.text.contains("cloud provider cloud:cloud failed"), "\(mode): \(answer.status) \(answer.text)")
            #expect(s.fleet.get("/").status == 200, "the proxy lives on")
        }
    }

    /// A provider that fails is passed over for the next that maps the model, as a dead node is; a fallback model
    /// a provider maps is used when the first is mapped nowhere.
    @Test func aFailedProviderGivesWayToTheNext() throws {
        let fleet = TestFleet(controlArguments: ["--queue-timeout", "3"])
        defer { fleet.shutdown() }
        var providers: [RunningProcess] = []
        defer { for p in providers { p.stop() } }
        var ports: [Int] = []
        for (name, mode) in [("first", "down"), ("second", "ok")] {
            let directory = fleet.directory + "/" + name
            mkdir(directory, 0o755)
            let port = freePort()
            let process = try RunningProcess(name: name, path: "/usr/bin/python3",
                                             arguments: [Self.repository + "/Tests/support/https_provider.py", directory, String(port), "--mode", mode],
                                             logDirectory: fleet.directory)
            guard process.waitForOutput("listening on", seconds: 30) else { throw TestError("\(name): \(process.output)") }
            providers.append(process)
            ports.append(port)
        }
        // One CA per provider process: trust both through a bundle.
        let bundle = fleet.directory + "/bundle.pem"
        let cas = ProcessRunner.run("/bin/sh", ["-c", "cat '\(fleet.directory)/first/ca.pem' '\(fleet.directory)/second/ca.pem' > '\(bundle)'"])
        #expect(cas.status == 0)
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        try fleet.startControl(extra: ["--provider", "first=https://localhost:\(ports[0])/v1", "--provider", "second=https://localhost:\(ports[1])/v1",
                                       "--provider-ca", bundle, "--provider-model", "first:gpt-4o=gpt-cloud", "--provider-model", "second:gpt-4o=gpt-cloud",
                                       "--provider-model", "second:gpt-mini=gpt-cloud"])
        try fleet.addNode("node-a", backend: "A")
        try fleet.waitForNodes(1)
        let response = fleet.request("POST", "/api/v1/keys", body: #"{"name":"c","cloud":true}"#, headers: [:], port: fleet.controlPort)
        let key = try #require((try? JSONValue.parse(response.body))?["key"]?.stringValue)
        _ = waitUntil(seconds: 5) { fleet.get("/api/tags", headers: ["Authorization": "Bearer herd_nope"]).status == 401 }
        let answer = fleet.post("/v1/chat/completions", #"{"model":"gpt-4o","messages":[]}"#, headers: ["Authorization": "Bearer \(key)"])
        #expect(answer.status == 200 && answer.header("X-Herd-Node") == "cloud:second" && answer.header("X-Herd-Retries") == "1",
                "\(answer.status) \(answer.headers) \(answer.text)")
        // A model mapped nowhere, with a fallback the second provider maps.
        let fallback = fleet.post("/v1/chat/completions", #"{"model":"gpt-huge","fallback_models":["gpt-mini"],"messages":[]}"#,
                                  headers: ["Authorization": "Bearer \(key)"])
        #expect(fallback.status == 200 && fallback.header("X-Herd-Node") == "cloud:second", "\(fallback.status) \(fallback.text)")
    }
}
