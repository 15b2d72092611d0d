import HerdBounds
import HerdJSON
import HerdRouting
import HerdRuntime
import HerdSecurity
import HerdWire

/// The client keys and what they used: created, changed and revoked here
/// (the API, the `keys` command), pushed to the proxies as hashes (the
/// routing snapshot), and held to their limits at each ROUTE (`admit`).
/// Loop-thread only.
final class KeyBook {
    /// Per key since control started, for `/metrics` and the Keys view.
    struct Totals: Equatable {
        var requests = 0
        var errors = 0
        var promptTokens = 0
        var completionTokens = 0
        /// Refused by a limit, by which one (`rpm`, `tpm`, `budget`).
        var refused: [String: Int] = [:]
    }

    private struct Reservation: Hashable {
        let proxy: ProxyKey
        let id: UInt64
    }

    /// Output tokens counted ahead for a request that sets no limit of its own.
    static let unlimitedOutputReserve = 256

    /// Most keys that may be live at once (a bounded table, bounded metric labels).
    static let maxKeys = 10_000

    private let store: KeyStore?
    private let traces: TraceStore?
    /// Requests need a valid key (`--require-key`).
    let required: Bool
    private(set) var keys: [Int: ClientKey] = [:]
    private(set) var limiter = KeyLimiter()
    private(set) var totals: [Int: Totals] = [:]
    private var reservations: [Reservation: (key: Int, tokens: Int)] = [:]
    /// Changes with every create, update and revoke (the snapshot's version adds it).
    private(set) var version = 0
    private var wireCache: (version: Int, keys: ClientKeys)?
    /// Called after a change the proxies must hear of.
    var onChange: () -> Void = {}
    /// Wall time, ms since the epoch (the budgets' calendar); a test's own.
    var wallClock: () -> Int = { Int(clamping: EventLoop.wallClockMilliseconds()) }

    init(store: KeyStore?, traces: TraceStore?, required: Bool, wallNow: Int) throws {
        self.store = store
        self.traces = traces
        self.required = required
        for key in try store?.all() ?? [] { keys[key.id] = key }
        // Budgets count on across a restart: the days of the longest period (a month) come back.
        for row in try store?.usage(sinceDay: KeyLimiter.day(wallNow) - 31) ?? [] where keys[row.key] != nil {
            limiter.restore(key: row.key, day: row.day, tokens: row.tokens)
        }
    }

    var live: [ClientKey] { keys.values.filter { $0.revokedMs == nil }.sorted { $0.id < $1.id } }

    /// The table the proxies check keys against.
    var wire: ClientKeys {
        if let cached = wireCache, cached.version == version { return cached.keys }
        let table = ClientKeys(required: required, keys: live.map(\.wire), issued: !keys.isEmpty)
        wireCache = (version, table)
        return table
    }

    // MARK: Managing keys

    /// A live key by id or name.
    func find(_ reference: String) -> ClientKey? {
        if let id = Int(reference), let key = keys[id], key.revokedMs == nil { return key }
        return keys.values.first { $0.name == reference && $0.revokedMs == nil }
    }

    /// Makes a key from a JSON body (`name` and the settings); returns it and its secret, shown once.
    func create(_ body: JSONValue, wallNow: Int) throws(KeyError) -> (key: ClientKey, secret: String) {
        guard let name = body["name"]?.stringValue, KeySettings.isName(name) else {
            throw KeyError("name is required: 1–64 bytes of A-Z a-z 0-9 . _ -")
        }
        guard find(name) == nil else { throw KeyError("a key named '\(name)' exists (revoke it first, or update it)", status: 409) }
        guard live.count < Self.maxKeys else { throw KeyError("at most \(Self.maxKeys) keys; revoke some first", status: 409) }
        var settings = KeySettings()
        try settings.apply(body)
        guard let random = SecureRandom.bytes(24) else { throw KeyError("no randomness for a secret", status: 500) }
        let secret = ClientKeys.prefix + SHA256.hex(random)
        let hash = SHA256.hex(SHA256.hash(Array(secret.utf8)))
        let prefix = String(secret.prefix(ClientKeys.prefix.count + 6))
        var key = ClientKey(id: 0, name: name, sha256: hash, prefix: prefix, settings: settings, createdMs: wallNow)
        do {
            key.id = try store?.insert(name: name, sha256: hash, prefix: prefix, settings: settings, createdMs: wallNow) ?? ((keys.keys.max() ?? 0) + 1)
        } catch let error as KeyError {
            throw error
        } catch {
            throw KeyError("storing the key failed: \(error)", status: 500)
        }
        keys[key.id] = key
        changed()
        return (key, secret)
    }

    /// Changes a key's settings (and its name, when the body gives one).
    func update(_ reference: String, _ body: JSONValue) throws(KeyError) -> ClientKey {
        guard var key = find(reference) else { throw KeyError("no live key '\(KeySettings.shown(reference))'", status: 404) }
        if let name = body["name"]?.stringValue, name != key.name {
            guard KeySettings.isName(name) else { throw KeyError("name must be 1–64 bytes of A-Z a-z 0-9 . _ -") }
            guard find(name) == nil else { throw KeyError("a key named '\(name)' exists", status: 409) }
            key.name = name
        }
        try key.settings.apply(body)
        do {
            try store?.update(id: key.id, name: key.name, settings: key.settings)
        } catch {
            throw KeyError("storing the key failed: \(error)", status: 500)
        }
        keys[key.id] = key
        changed()
        return key
    }

    /// Revokes a key: the proxies refuse it from their next snapshot (at once, pushed).
    func revoke(_ reference: String, wallNow: Int) throws(KeyError) -> ClientKey {
        guard var key = find(reference) else { throw KeyError("no live key '\(KeySettings.shown(reference))'", status: 404) }
        do {
            try store?.revoke(id: key.id, at: wallNow)
        } catch {
            throw KeyError("storing the revocation failed: \(error)", status: 500)
        }
        key.revokedMs = wallNow
        keys[key.id] = key
        limiter.forget(key: key.id)
        changed()
        return key
    }

    private func changed() {
        version += 1
        onChange()
    }

    // MARK: Requests

    /// A ROUTE with a key: over a limit, the refusal (429, which limit, when
    /// to try again); else nil (its prompt is reserved until its RESULT), and
    /// the key's queue wait when it sets one.
    func admit(_ request: RouteRequest, proxy: ProxyKey, now: UInt64, wallNow: Int) -> (refusal: RouteRefusal?, queueTimeout: UInt64?) {
        guard let key = keys[request.key], key.revokedMs == nil else {
            // Revoked since the proxy's snapshot: the proxy will refuse it from its next one; this one goes as keyless.
            return (nil, nil)
        }
        let limits = key.settings.limits
        guard !limits.isEmpty else { return (nil, key.settings.maxQueueWaitMilliseconds) }
        // What it may use, counted ahead: its prompt (estimated) and its output limit (256 unless it sets one), as OpenAI counts a request against its tokens per minute.
        let reserve = max(0, request.estimatedTokens).addingSaturated(min(max(0, request.maxTokens ?? Self.unlimitedOutputReserve), 131_072))
        if let over = limiter.admit(key: key.id, limits: limits, estimatedTokens: reserve, now: now, wall: wallNow) {
            totals[key.id, default: Totals()].refused[over.limit, default: 0] += 1
            traces?.recordKeyUsage(key: key.id, day: KeyLimiter.day(wallNow), requests: 0, promptTokens: 0, completionTokens: 0, refused: 1)
            return (RouteRefusal(id: request.id, code: .keyLimit, message: "key '\(key.name)' is over its limit of \(over.message); try again in \(over.retryAfterSeconds) s",
                                 retryAfter: over.retryAfterSeconds), nil)
        }
        reservations[Reservation(proxy: proxy, id: request.id)] = (key.id, reserve)
        return (nil, key.settings.maxQueueWaitMilliseconds)
    }

    /// A RESULT came from `proxy`: an admitted request's reservation goes.
    func release(proxy: ProxyKey, id: UInt64) {
        guard !reservations.isEmpty, let held = reservations.removeValue(forKey: Reservation(proxy: proxy, id: id)) else { return }
        limiter.release(key: held.key, estimatedTokens: held.tokens)
    }

    /// A proxy went away: its requests' reservations go (their RESULTs will not come).
    func dropProxy(_ proxy: ProxyKey) {
        for (reservation, held) in reservations where reservation.proxy == proxy {
            reservations[reservation] = nil
            limiter.release(key: held.key, estimatedTokens: held.tokens)
        }
    }

    /// A finished request of a key (one refused by a limit too: a request, an
    /// error, no tokens): its tokens count (per minute, per day, persisted) and its totals.
    func finished(_ finished: FinishedRequest, now: UInt64, wallNow: Int) {
        guard let request = finished.request, request.key != 0, keys[request.key] != nil else { return }
        let result = finished.result
        let tokens = result.promptTokens.addingSaturated(result.completionTokens)
        limiter.used(key: request.key, tokens: tokens, now: now, wall: wallNow)
        var t = totals[request.key, default: Totals()]
        t.requests += 1
        if result.outcome != .ok { t.errors += 1 }
        t.promptTokens = t.promptTokens.addingSaturated(result.promptTokens)
        t.completionTokens = t.completionTokens.addingSaturated(result.completionTokens)
        totals[request.key] = t
        traces?.recordKeyUsage(key: request.key, day: KeyLimiter.day(wallNow), requests: 1, promptTokens: result.promptTokens,
                               completionTokens: result.completionTokens, refused: 0)
    }

    /// Whether the key may overflow to a cloud provider (made with `cloud`).
    func allowsCloud(_ id: Int) -> Bool {
        guard id != 0, let key = keys[id], key.revokedMs == nil else { return false }
        return key.settings.cloud
    }

    /// The name traces and metrics show for a key id.
    func name(_ id: Int) -> String? { keys[id]?.name }

    /// A key as the API shows it, with what it used.
    func json(_ key: ClientKey, now: UInt64, wallNow: Int) -> JSONValue {
        var members = key.json.objectValue ?? []
        let minute = limiter.lastMinute(key: key.id, now: now)
        let t = totals[key.id] ?? Totals()
        members.append(("usage", [
            "last_minute_requests": .int(minute.requests), "last_minute_tokens": .int(minute.tokens),
            "budget_used": .int(limiter.used(key: key.id, period: key.settings.limits.budgetPeriod, wall: wallNow)),
            "since_start": ["requests": .int(t.requests), "errors": .int(t.errors), "prompt_tokens": .int(t.promptTokens),
                            "completion_tokens": .int(t.completionTokens),
                            "refused": .object(t.refused.keys.sorted().map { ($0, .int(t.refused[$0] ?? 0)) })],
        ]))
        return .object(members)
    }
}
