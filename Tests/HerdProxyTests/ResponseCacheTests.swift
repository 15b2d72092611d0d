import HerdJSON
import HerdTestSupport
import Testing
@testable import herd_proxy

/// The exact response cache: what may be kept, its key, its bounds.
@Suite struct ResponseCacheTests {
    func key(_ body: String, path: String = "/api/embed", digest: String = "sha256:a") -> ResponseCache.Key? {
        ResponseCache.key(path: path, body: Array(body.utf8), modelDigest: digest)
    }

    @Test func theKeyIsTheCanonicalBodyThePathAndTheModelDigest() {
        let a = key(#"{"model":"e","input":["x","y"],"options":{"b":1,"a":2}}"#)
        #expect(a != nil)
        #expect(a == key(#" { "input" : ["x","y"], "options":{"a":2,"b":1}, "model":"e" } "#), "key order and spacing do not matter")
        #expect(a != key(#"{"model":"e","input":["y","x"],"options":{"b":1,"a":2}}"#), "array order does")
        #expect(a != key(#"{"model":"e","input":["x","y"],"options":{"b":1,"a":2}}"#, digest: "sha256:b"), "a re-pulled model misses")
        #expect(a != key(#"{"model":"e","input":["x","y"],"options":{"b":1,"a":2}}"#, path: "/v1/embeddings"))
        #expect(key("not json") == nil)
    }

    @Test func onlyDeterministicRequestsUnlessAsked() {
        func det(_ endpoint: Endpoint, _ body: String) -> Bool { ResponseCache.deterministic(endpoint, body: Array(body.utf8)) }
        #expect(det(.embed, #"{"model":"e","input":"x"}"#))
        #expect(det(.openAIEmbeddings, #"{"model":"e","input":"x"}"#))
        #expect(det(.openAIChat, #"{"model":"m","temperature":0,"messages":[]}"#))
        #expect(det(.openAIChat, #"{"model":"m","seed":42,"messages":[]}"#))
        #expect(det(.chat, #"{"model":"m","options":{"temperature":0},"messages":[]}"#))
        #expect(det(.generate, #"{"model":"m","options":{"seed":7},"prompt":"p"}"#))
        #expect(!det(.openAIChat, #"{"model":"m","temperature":0.7,"messages":[]}"#))
        #expect(!det(.chat, #"{"model":"m","messages":[]}"#), "Ollama samples by default")
        #expect(!det(.speech, #"{"model":"v","input":"x"}"#))
        #expect(ResponseCache.ask("on") == .on && ResponseCache.ask("OFF") == .off && ResponseCache.ask(nil) == .unsaid && ResponseCache.ask("x") == .unsaid)
    }

    @Test func boundedLeastRecentlyUsedAndFresh() {
        let cache = ResponseCache(capacityBytes: 16 * 1024, ttlMilliseconds: 1_000)
        let k = (0..<12).map { key(#"{"model":"e","input":"\#($0)"}"#)! }
        let body = [UInt8](repeating: 1, count: 1_700) // ~1.8 KiB each with its overhead: 8 fit
        for i in 0..<10 { cache.store(k[i], contentType: "application/json", body: body, node: "n", model: "e", now: 100) }
        #expect(cache.bytes <= 16 * 1024 && cache.count == 8, "past the capacity the oldest went: \(cache.count) kept")
        #expect(cache.lookup(k[0], now: 200) == nil && cache.lookup(k[1], now: 200) == nil, "the least recently used are out")
        #expect(cache.lookup(k[9], now: 200)?.body == body)
        // Used: k2 (the oldest) is read, so the next store evicts k3 instead.
        #expect(cache.lookup(k[2], now: 300) != nil)
        cache.store(k[10], contentType: "application/json", body: body, node: "n", model: "e", now: 300)
        #expect(cache.count == 8 && cache.lookup(k[2], now: 300) != nil && cache.lookup(k[3], now: 300) == nil)
        // Stale after its time; too large never kept.
        #expect(cache.lookup(k[10], now: 1_301) == nil)
        cache.store(k[11], contentType: "application/json", body: [UInt8](repeating: 0, count: 3_000), node: "n", model: "e", now: 300)
        #expect(cache.lookup(k[11], now: 301) == nil, "over an eighth of the capacity")
        #expect(cache.hits == 3 && cache.misses == 5 && cache.evictions == 3)
    }

    @Test func theSemanticCacheTakesSingleTurnPromptsAndComparesOnlyTheirShape() throws {
        func prompt(_ endpoint: Endpoint, _ body: String, digest: String = "d") -> SemanticIndex.Prompt? {
            SemanticIndex.prompt(endpoint: endpoint, body: Array(body.utf8), modelDigest: digest)
        }
        let a = try #require(prompt(.chat, #"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"What is the capital of France?"}]}"#))
        #expect(a.text == "What is the capital of France?")
        let b = try #require(prompt(.chat, #"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"capital of france"}],"model":"m"}"#))
        #expect(a.shape == b.shape, "the user's text aside, the same request")
        #expect(prompt(.chat, #"{"model":"m","messages":[{"role":"system","content":"be long"},{"role":"user","content":"x"}]}"#)?.shape != a.shape)
        #expect(prompt(.chat, #"{"model":"m","stream":false,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"x"}]}"#)?.shape != a.shape)
        #expect(prompt(.chat, #"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"x"}]}"#, digest: "e")?.shape != a.shape)
        // Not single-turn, not text: not taken.
        #expect(prompt(.chat, #"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}"#) == nil)
        #expect(prompt(.chat, #"{"model":"m","messages":[{"role":"user","content":"a","images":["AAAA"]}]}"#) == nil)
        #expect(prompt(.openAIChat, #"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#) == nil)
        #expect(prompt(.openAIChat, #"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#)?.text == "hi")
        #expect(prompt(.generate, #"{"model":"m","prompt":"why is the sky blue"}"#)?.text == "why is the sky blue")
        #expect(prompt(.generate, #"{"model":"m","prompt":"x","context":[1,2]}"#) == nil)
        #expect(prompt(.embed, #"{"model":"m","input":"x"}"#) == nil)
    }

    @Test func theSemanticIndexIsBoundedAndAnswersOnlyAboveItsThreshold() throws {
        let index = SemanticIndex(threshold: 0.9, maxEntries: 3, maxBytes: 1 << 20)
        let shape = try #require(key(#"{"s":1}"#)), other = try #require(key(#"{"s":2}"#))
        let keys = (0..<5).map { key(#"{"k":\#($0)}"#)! }
        let x = try #require(SemanticIndex.unit([1, 0, 0])), near = try #require(SemanticIndex.unit([1, 0.2, 0])), far = try #require(SemanticIndex.unit([0, 1, 0]))
        index.add(shape, x, key: keys[0])
        #expect(index.nearest(shape, near)?.key == keys[0] && (index.nearest(shape, near)?.similarity ?? 0) > 0.97)
        #expect(index.nearest(shape, far) == nil, "below the threshold")
        #expect(index.nearest(other, x) == nil, "another shape")
        for i in 1..<5 { index.add(shape, far, key: keys[i]) }
        #expect(index.count == 3 && index.nearest(shape, x) == nil, "the oldest went first")
        #expect(SemanticIndex.unit([0, 0]) == nil && SemanticIndex.unit([.nan, 1]) == nil && SemanticIndex.unit([1e300, 1]) == nil)
    }
}

/// Through the real proxy: a repeated deterministic request is answered from
/// the cache (the backend hears it once), streams replay as streams, and the
/// rest goes to the backend every time.
@Suite(.serialized) struct ResponseCacheFleetTests {
    @Test func repeatedDeterministicRequestsAreHits() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        fleet.controlEnvironment = ["HERD_CACHE_MB": "16"]
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b,nomic-embed-text", "--loaded", "llama3:8b,nomic-embed-text", "--tokens", "6"])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A")
        try fleet.waitForNodes(1)

        let embed = fleet.post("/api/embed", #"{"model":"nomic-embed-text","input":["a","b"]}"#)
        #expect(embed.status == 200 && embed.header("X-Herd-Cache") == "miss", "\(embed.status) \(embed.header("X-Herd-Cache") ?? "-")")
        let again = fleet.post("/api/embed", #"{ "input": ["a","b"], "model": "nomic-embed-text" }"#)
        #expect(again.status == 200 && again.header("X-Herd-Cache") == "hit" && again.body == embed.body)
        #expect(again.header("X-Herd-Node") == "node-a")
        #expect(fleet.backendRequests("A", path: "/api/embed") == 1, "the backend heard it once")
        let off = fleet.post("/api/embed", #"{"model":"nomic-embed-text","input":["a","b"]}"#, headers: ["X-Herd-Cache": "off"])
        #expect(off.header("X-Herd-Cache") == "bypass" && fleet.backendRequests("A", path: "/api/embed") == 2)

        // A stream at temperature 0 replays as the same stream.
        let stream = #"{"model":"llama3:8b","options":{"temperature":0},"messages":[{"role":"user","content":"hi"}]}"#
        let first = fleet.post("/api/chat", stream)
        let second = fleet.post("/api/chat", stream)
        #expect(first.status == 200 && first.header("X-Herd-Cache") == "miss")
        #expect(second.header("X-Herd-Cache") == "hit" && second.body == first.body && second.header("Content-Type") == first.header("Content-Type"))
        #expect(second.text.split(separator: "\n").count > 3, "NDJSON lines, as streamed")

        // Sampling: every request goes to the backend, unless the client asks.
        let sampled = #"{"model":"llama3:8b","stream":false,"messages":[{"role":"user","content":"hi"}]}"#
        let before = fleet.backendRequests("A", path: "/api/chat")
        #expect(fleet.post("/api/chat", sampled).header("X-Herd-Cache") == "bypass")
        #expect(fleet.post("/api/chat", sampled).header("X-Herd-Cache") == "bypass")
        #expect(fleet.backendRequests("A", path: "/api/chat") == before + 2)
        #expect(fleet.post("/api/chat", sampled, headers: ["X-Herd-Cache": "on"]).header("X-Herd-Cache") == "miss")
        #expect(fleet.post("/api/chat", sampled, headers: ["X-Herd-Cache": "on"]).header("X-Herd-Cache") == "hit")
        // The proxy reports its cache to control (CACHE_STATS), which shows it in /metrics.
        var metrics = ""
        let reported = waitUntil(seconds: 10) {
            metrics = fleet.getControl("/metrics").text
            return metrics.split(separator: "\n").contains { $0.hasPrefix("herd_cache_hits_total{proxy=") && $0.hasSuffix(" 3") }
        }
        #expect(reported, "\(metrics.split(separator: "\n").filter { $0.hasPrefix("herd_cache") })")
        #expect(metrics.contains("herd_cache_entries{proxy="))
    }

    /// The semantic cache through the real proxy: a paraphrase of a prompt
    /// answered before is answered from the cache (the fake embeds texts by
    /// their words), an unrelated one is not, and the embedding is made by
    /// the fleet's own embedding model (control traces it).
    @Test func aParaphraseIsAnsweredFromTheSemanticCache() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        fleet.controlEnvironment = ["HERD_CACHE_MB": "16", "HERD_SEMANTIC_THRESHOLD": "0.8"]
        try fleet.addBackend("A", arguments: ["--models", "llama3:8b,nomic-embed-text", "--loaded", "llama3:8b,nomic-embed-text",
                                              "--embedding", "nomic-embed-text", "--tokens", "6"])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "A")
        try fleet.waitForNodes(1)
        // Its kind comes a beat after the model (the node asks /api/show).
        #expect(waitUntil(seconds: 5) { fleet.get("/v1/models").text.contains(#""id":"nomic-embed-text","object":"model","created":0,"owned_by":"node-a","herd_kind":"embed""#) })
        func ask(_ text: String) -> RawResponse {
            fleet.post("/v1/chat/completions", #"{"model":"llama3:8b","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"\#(text)"}]}"#,
                       headers: ["X-Herd-Cache": "semantic"])
        }
        let first = ask("What is the capital city of France?")
        #expect(first.status == 200 && first.header("X-Herd-Cache") == "miss", "\(first.status) \(first.text)")
        let paraphrase = ask("what is the capital city of france")
        #expect(paraphrase.header("X-Herd-Cache") == "hit" && paraphrase.body == first.body, "\(paraphrase.headers)")
        #expect(Double(paraphrase.header("X-Herd-Cache-Similarity") ?? "") ?? 0 >= 0.8)
        let unrelated = ask("Write a haiku about autumn leaves falling")
        #expect(unrelated.header("X-Herd-Cache") == "miss")
        #expect(fleet.backendRequests("A", path: "/v1/chat/completions") == 2, "the paraphrase never reached the backend")
        #expect(fleet.backendRequests("A", path: "/api/embed") == 3, "each prompt embedded once, by the fleet's embedding model")
        // Without asking, a sampled chat bypasses the cache as before.
        #expect(fleet.post("/v1/chat/completions", #"{"model":"llama3:8b","messages":[{"role":"user","content":"What is the capital city of France?"}]}"#)
            .header("X-Herd-Cache") == "bypass")
        // The embeddings are traced as herd's own requests.
        #expect(waitUntil(seconds: 5) {
            (try? JSONValue.parse(fleet.getControl("/api/v1/traces?client=herd:semantic-cache").body))?["traces"]?.arrayValue?.count == 3
        })
    }
}
