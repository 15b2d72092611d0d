import HerdJSON
import HerdSecurity
import HerdWire

/// An exact response cache, per proxy, off unless `--cache-mb` sets its size.
///
/// What is cached: a whole 200 answer to a request that is deterministic —
/// embeddings (and rerank); a chat, completion or generation with
/// `temperature` 0 or a fixed `seed` (top level, or Ollama's `options`) — or
/// that asks (`X-Herd-Cache: on`); never one that says `X-Herd-Cache: off`.
/// The key is SHA-256 of the path, the canonical body (object keys sorted,
/// no white space: key order and spacing do not matter) and the fleet's
/// digest of the model (a re-pulled model misses). Streams are kept as the
/// bytes the client got and replayed as a stream. Bounded: at most
/// `capacityBytes` in all, an entry at most an eighth of it (and 8 MiB),
/// least recently used first out, each for `ttlMilliseconds`.
/// Loop-thread only.
final class ResponseCache {
    struct Key: Hashable {
        let digest: [UInt8]
    }

    final class Entry {
        let key: Key
        let contentType: String
        let body: [UInt8]
        let node: String
        let model: String
        let expiresAt: UInt64
        fileprivate var older: Entry?
        fileprivate weak var newer: Entry?

        init(key: Key, contentType: String, body: [UInt8], node: String, model: String, expiresAt: UInt64) {
            self.key = key
            self.contentType = contentType
            self.body = body
            self.node = node
            self.model = model
            self.expiresAt = expiresAt
        }

        var cost: Int { body.count + contentType.utf8.count + node.utf8.count + model.utf8.count + 128 }
    }

    let capacityBytes: Int
    let ttlMilliseconds: UInt64
    /// The largest answer kept.
    let maxEntryBytes: Int
    private var entries: [Key: Entry] = [:]
    /// Most recently used first; the tail is evicted first.
    private var newest: Entry?
    private var oldest: Entry?
    private(set) var bytes = 0
    private(set) var hits = 0
    private(set) var misses = 0
    private(set) var stores = 0
    private(set) var evictions = 0

    init(capacityBytes: Int, ttlMilliseconds: UInt64) {
        self.capacityBytes = capacityBytes
        self.ttlMilliseconds = ttlMilliseconds
        maxEntryBytes = min(8 * 1024 * 1024, max(1, capacityBytes / 8))
    }

    var count: Int { entries.count }

    /// Its counts, as CACHE_STATS carries them.
    var stats: CacheStats {
        CacheStats(hits: UInt64(clamping: hits), misses: UInt64(clamping: misses), stores: UInt64(clamping: stores),
                   evictions: UInt64(clamping: evictions), bytes: UInt64(clamping: bytes), entries: UInt64(clamping: entries.count))
    }

    /// The answer for `key`, if one is kept and fresh (it becomes the most recently used).
    func lookup(_ key: Key, now: UInt64) -> Entry? {
        guard let entry = entries[key] else {
            misses += 1
            return nil
        }
        guard entry.expiresAt > now else {
            remove(entry)
            misses += 1
            return nil
        }
        unlink(entry)
        pushNewest(entry)
        hits += 1
        return entry
    }

    /// Keeps an answer (too large: not kept), evicting the least recently used to fit.
    func store(_ key: Key, contentType: String, body: [UInt8], node: String, model: String, now: UInt64) {
        let entry = Entry(key: key, contentType: contentType, body: body, node: node, model: model, expiresAt: now &+ ttlMilliseconds)
        guard entry.cost <= maxEntryBytes else { return }
        if let old = entries[key] { remove(old) }
        while bytes + entry.cost > capacityBytes, let victim = oldest {
            remove(victim)
            evictions += 1
        }
        entries[key] = entry
        pushNewest(entry)
        bytes += entry.cost
        stores += 1
    }

    private func remove(_ entry: Entry) {
        unlink(entry)
        entries[entry.key] = nil
        bytes -= entry.cost
    }

    private func pushNewest(_ entry: Entry) {
        entry.older = newest
        entry.newer = nil
        newest?.newer = entry
        newest = entry
        if oldest == nil { oldest = entry }
    }

    private func unlink(_ entry: Entry) {
        if let newer = entry.newer { newer.older = entry.older } else { newest = entry.older }
        if let older = entry.older { older.newer = entry.newer } else { oldest = entry.newer }
        entry.older = nil
        entry.newer = nil
    }

    // MARK: What may be cached, and its key

    /// What the client asked of the cache (`X-Herd-Cache`).
    enum Ask {
        case on, off, unsaid
        /// Exact, or else semantic (`SemanticIndex`).
        case semantic
    }

    static func ask(_ header: String?) -> Ask {
        switch header?.lowercased() {
        case "on"?, "1"?, "true"?: .on
        case "semantic"?: .semantic
        case "off"?, "0"?, "false"?, "bypass"?: .off
        default: .unsaid
        }
    }

    /// Whether `endpoint`'s answer to `body` is the same every time it is asked
    /// (embeddings and rerank; a generation at temperature 0 or with a seed).
    static func deterministic(_ endpoint: Endpoint, body: [UInt8]) -> Bool {
        switch endpoint {
        case .embed, .embeddings, .openAIEmbeddings, .rerank, .rerankBare, .reranking: return true
        case .chat, .generate, .openAIChat, .openAICompletions, .anthropicMessages, .openAIResponses:
            guard let picked = try? body.withUnsafeBytes({ raw throws(JSONParseError) in
                try JSONValue.pickTopLevel(raw, keys: generationKeys)
            }) else { return false }
            func fixed(_ temperature: JSONValue?, _ seed: JSONValue?) -> Bool {
                temperature?.doubleValue == 0 || seed?.intValue != nil
            }
            return fixed(picked[0], picked[1]) || fixed(picked[2]?["temperature"], picked[2]?["seed"])
        default:
            return false
        }
    }

    private static let generationKeys: JSONKeys = ["temperature", "seed", "options"]

    /// The key: SHA-256 of the path, the canonical body and the model's digest; nil when the body is not JSON.
    static func key(path: String, body: [UInt8], modelDigest: String) -> Key? {
        guard let value = try? JSONValue.parse(body) else { return nil }
        var bytes = Array(path.utf8)
        bytes.append(0)
        canonical(value, into: &bytes)
        bytes.append(0)
        bytes += Array(modelDigest.utf8)
        return Key(digest: Array(SHA256.hash(bytes)))
    }

    /// JSON with object members sorted by key and no white space.
    static func canonical(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case let .object(members):
            out.append(UInt8(ascii: "{"))
            for (i, (name, member)) in members.sorted(by: { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }).enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.string(name).write(to: &out)
                out.append(UInt8(ascii: ":"))
                canonical(member, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case let .array(items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                canonical(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        default:
            value.write(to: &out)
        }
    }
}
