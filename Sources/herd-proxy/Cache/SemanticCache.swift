import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdSecurity
import HerdWire

/// The semantic side of the response cache, opt-in (`X-Herd-Cache:
/// semantic`, or a client key made with `"semantic_cache": true`): a
/// single-turn prompt whose meaning is close enough to one answered before —
/// the cosine similarity of their embeddings, made by the fleet's own
/// embedding model, at least `threshold` — gets that answer. Only prompts of
/// the same shape are compared: the same path, model (digest) and every
/// other field of the body (system prompt, options, stream), the user's text
/// aside. The answers themselves live in the exact cache (`ResponseCache`:
/// its bytes bound, TTL and least-recently-used order); this index holds
/// each prompt's vector and the exact cache's key, at most `maxEntries` and
/// `maxBytes` of vectors, oldest out first. Loop-thread only.
final class SemanticIndex {
    /// A prompt the index can take: its shape (what must match exactly) and its text (what is embedded).
    struct Prompt: Equatable {
        let shape: ResponseCache.Key
        let text: String
    }

    private final class Entry {
        let shape: ResponseCache.Key
        let vector: [Float]
        let key: ResponseCache.Key
        init(shape: ResponseCache.Key, vector: [Float], key: ResponseCache.Key) {
            self.shape = shape
            self.vector = vector
            self.key = key
        }
    }

    let threshold: Double
    let maxEntries: Int
    let maxBytes: Int
    private var byShape: [ResponseCache.Key: [Entry]] = [:]
    /// Insertion order (the oldest first out).
    private var order: [Entry] = []
    private var head = 0
    private(set) var bytes = 0
    private(set) var lookups = 0
    private(set) var hits = 0

    init(threshold: Double, maxEntries: Int = 4_096, maxBytes: Int) {
        self.threshold = threshold
        self.maxEntries = max(1, maxEntries)
        self.maxBytes = max(1, maxBytes)
    }

    var count: Int { order.count - head }

    /// The exact-cache key of the closest prompt of `shape` at least `threshold` alike, and how alike.
    func nearest(_ shape: ResponseCache.Key, _ vector: [Float]) -> (key: ResponseCache.Key, similarity: Double)? {
        lookups += 1
        guard let candidates = byShape[shape] else { return nil }
        var best: (key: ResponseCache.Key, similarity: Double)?
        for entry in candidates where entry.vector.count == vector.count {
            let similarity = Self.dot(entry.vector, vector)
            if similarity >= threshold, similarity > (best?.similarity ?? -2) { best = (entry.key, similarity) }
        }
        if best != nil { hits += 1 }
        return best
    }

    /// Remembers that `key`'s answer was for a prompt of `shape` with `vector` (unit length).
    func add(_ shape: ResponseCache.Key, _ vector: [Float], key: ResponseCache.Key) {
        let cost = vector.count * MemoryLayout<Float>.size + 96
        guard cost <= maxBytes else { return }
        while count >= maxEntries || bytes + cost > maxBytes, head < order.count { evictOldest() }
        let entry = Entry(shape: shape, vector: vector, key: key)
        byShape[shape, default: []].append(entry)
        order.append(entry)
        bytes += cost
    }

    /// The exact cache no longer holds `key`'s answer: its prompt goes too.
    func forget(_ shape: ResponseCache.Key, key: ResponseCache.Key) {
        byShape[shape]?.removeAll { $0.key == key }
        if byShape[shape]?.isEmpty == true { byShape[shape] = nil }
    }

    private func evictOldest() {
        let entry = order[head]
        head += 1
        bytes -= entry.vector.count * MemoryLayout<Float>.size + 96
        if let i = byShape[entry.shape]?.firstIndex(where: { $0 === entry }) {
            byShape[entry.shape]?.remove(at: i)
            if byShape[entry.shape]?.isEmpty == true { byShape[entry.shape] = nil }
        }
        // Compact the queue now and then (amortised O(1)).
        if head > 1_024, head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    static func dot(_ a: [Float], _ b: [Float]) -> Double {
        var sum: Float = 0
        for i in 0..<min(a.count, b.count) { sum += a[i] * b[i] }
        return Double(sum)
    }

    /// `values` scaled to unit length; nil when empty, not finite or all zero.
    static func unit(_ values: [Double]) -> [Float]? {
        guard !values.isEmpty, values.count <= 16_384 else { return nil }
        var norm = 0.0
        for v in values {
            guard v.isFinite, abs(v) < 1e15 else { return nil }
            norm += v * v
        }
        guard norm > 0, norm.isFinite else { return nil }
        let scale = 1 / norm.squareRoot()
        return values.map { Float($0 * scale) }
    }

    // MARK: Which prompts

    /// The prompt of a single-turn request (one user message, text only, an
    /// optional system prompt; a generation's `prompt`), and its shape; nil
    /// for anything else (a conversation, images, tools' results).
    static func prompt(endpoint: Endpoint, body: [UInt8], modelDigest: String) -> Prompt? {
        guard case var .object(members)? = try? JSONValue.parse(body) else { return nil }
        var text: String?
        switch endpoint {
        case .generate, .openAICompletions:
            guard let i = members.lastIndex(where: { $0.0 == "prompt" }), let prompt = members[i].1.stringValue,
                  !members.contains(where: { ["images", "context", "suffix"].contains($0.0) }) else { return nil }
            text = prompt
            members[i].1 = ""
        case .chat, .openAIChat, .anthropicMessages:
            guard let i = members.lastIndex(where: { $0.0 == "messages" }), var messages = members[i].1.arrayValue else { return nil }
            let turns = messages.indices.filter { messages[$0]["role"]?.stringValue != "system" }
            guard turns.count == 1, let u = turns.first, case var .object(message) = messages[u], message.contains(where: { $0 == ("role", "user") }),
                  !message.contains(where: { $0.0 == "images" }), let c = message.lastIndex(where: { $0.0 == "content" }),
                  let said = Self.text(message[c].1) else { return nil }
            text = said
            message[c].1 = ""
            messages[u] = .object(message)
            members[i].1 = .array(messages)
        default:
            return nil
        }
        guard let text, !text.isEmpty, text.utf8.count <= 32 * 1024 else { return nil }
        var bytes = Array(endpoint.rawValue.utf8)
        bytes.append(0)
        ResponseCache.canonical(.object(members), into: &bytes)
        bytes.append(0)
        bytes += Array(modelDigest.utf8)
        return Prompt(shape: ResponseCache.Key(digest: SHA256.hash(bytes)), text: text)
    }

    /// A message's text: a string, or only text parts (no image, no tool result).
    private static func text(_ content: JSONValue) -> String? {
        if let text = content.stringValue { return text }
        guard let parts = content.arrayValue, !parts.isEmpty else { return nil }
        var out: [String] = []
        for part in parts {
            guard part["type"]?.stringValue == "text", let text = part["text"]?.stringValue else { return nil }
            out.append(text)
        }
        return out.joined(separator: "\n")
    }
}

/// The embedding of one text by the fleet's embedding model: routed like any
/// request (control traces it, client `herd:semantic-cache`), sent to the
/// node's embeddings endpoint, its vector handed to `done` (nil on any
/// failure: the request then goes on uncached). Loop-thread only.
final class EmbeddingLookup: RouteWaiter, HTTPClientResponseDelegate {
    private let model: String
    private let text: String
    private let routes: RouteSource
    private let upstreams: Upstreams
    private var done: (([Double]?) -> Void)?
    private let id: UInt64
    private var attempt: RouteAttempt?
    private var answer: RouteAnswer?
    private var upstream: Upstreams.Upstream?
    private var status = 0
    private var body: [UInt8] = []
    private let startedAt = EventLoop.monotonicNanoseconds()
    private var selfReference: EmbeddingLookup?

    init(id: UInt64, model: String, text: String, routes: RouteSource, upstreams: Upstreams, done: @escaping ([Double]?) -> Void) {
        self.id = id
        self.model = model
        self.text = text
        self.routes = routes
        self.upstreams = upstreams
        self.done = done
    }

    func start() {
        selfReference = self
        let request = RouteRequest(id: id, api: .ollama, path: Endpoint.embed.rawValue, model: model, stream: false,
                                   estimatedTokens: text.utf8.count / 4, client: "herd:semantic-cache", workUnits: 1)
        let attempt = routes.attempt(request, waiter: self)
        self.attempt = attempt
        attempt.start()
    }

    func routed(_ answer: RouteAnswer) {
        self.answer = answer
        let ollama = answer.backend == .ollama
        var out: [UInt8] = []
        JSONValue.object([("model", .string(answer.model)), ("input", .string(text))]).write(to: &out)
        let request = HTTPClientRequest(method: "POST", target: ollama ? "/api/embed" : "/v1/embeddings",
                                        headers: ["Host": answer.upstream, "Content-Type": "application/json"], body: out)
        guard let (_, upstream) = upstreams.send(request, to: answer.upstream, delegate: self) else {
            return finish(nil, outcome: .upstreamError, status: 502, error: "bad upstream address \(answer.upstream)")
        }
        self.upstream = upstream
    }

    func refused(_ refusal: RouteRefusal) {
        finish(nil, outcome: .rejected, status: 503, error: refusal.message)
    }

    func task(_ task: HTTPClientTask, didReceiveHead head: HTTPResponseHead) { status = head.status }

    func task(_ task: HTTPClientTask, didReceiveBody bytes: UnsafeRawBufferPointer) {
        if body.count + bytes.count <= 8 * 1024 * 1024 { body.append(contentsOf: bytes) } else { task.cancel() }
    }

    func taskDidFinish(_ task: HTTPClientTask) {
        guard status == 200, let json = try? JSONValue.parse(body),
              let vector = (json["embeddings"]?.arrayValue?.first ?? json["data"]?.arrayValue?.first?["embedding"])?.arrayValue else {
            return finish(nil, outcome: .upstreamError, status: status == 200 ? 502 : status, error: "no embedding in the answer")
        }
        var values: [Double] = []
        values.reserveCapacity(vector.count)
        for v in vector {
            guard let x = v.doubleValue else { return finish(nil, outcome: .upstreamError, status: 502, error: "an embedding that is not numbers") }
            values.append(x)
        }
        finish(values, outcome: .ok, status: 200, error: nil)
    }

    func task(_ task: HTTPClientTask, didFail error: HTTPClientError) {
        finish(nil, outcome: .upstreamError, status: 502, error: error.description)
    }

    private func finish(_ vector: [Double]?, outcome: RouteResult.Outcome, status: Int, error: String?) {
        guard let done else { return }
        self.done = nil
        if let upstream { upstreams.release(upstream) }
        let usage = TokenCounter.read(Array(body.suffix(4096)))
        let duration = Double(EventLoop.monotonicNanoseconds() - startedAt) / 1e6
        attempt?.report(RouteResult(id: id, node: answer?.node ?? "", model: answer?.model ?? model, outcome: outcome, status: status,
                                    ttftMilliseconds: duration, durationMilliseconds: duration, promptTokens: usage.promptTokens,
                                    completionTokens: 0, bytes: body.count, error: error))
        done(vector)
        selfReference = nil
    }
}
