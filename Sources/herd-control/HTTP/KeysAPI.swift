import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdSecurity
import HerdWire

/// `/api/v1/keys`: client keys, made, listed, changed and revoked (the
/// `herd-control keys` command and the dashboard's Keys view use it).
///
/// - `GET /api/v1/keys`: every live key (`?revoked=1`: revoked ones too), never a secret.
/// - `GET /api/v1/keys/{id|name}`: one key and its usage.
/// - `POST /api/v1/keys` `{"name", "models", "rpm", "tpm", "budget_tokens", "budget_period", "tags", "max_queue_wait", "cloud", "admin"}`:
///   201 with the key's secret in `key`, shown this once.
/// - `PATCH /api/v1/keys/{id|name}`: the fields given change (`null` clears a limit).
/// - `DELETE /api/v1/keys/{id|name}`: revoked; the proxies refuse it from the snapshot pushed at once.
///
/// Changing anything needs the fleet key or an admin key (`"admin": true`)
/// when either exists. Loop-thread only.
final class KeysAPI {
    private let keys: KeyBook
    private let gate: FleetKeyGate
    private let clock: any LoopClock
    private let log: Logger

    init(keys: KeyBook, gate: FleetKeyGate, clock: any LoopClock, log: Logger) {
        self.keys = keys
        self.gate = gate
        self.clock = clock
        self.log = log
    }

    /// Each live key's totals, for `/metrics`.
    var metrics: [(name: String, totals: KeyBook.Totals)] { keys.live.map { ($0.name, keys.totals[$0.id] ?? KeyBook.Totals()) } }

    static func serves(_ path: Substring) -> Bool { path == "/api/v1/keys" || path.hasPrefix("/api/v1/keys/") }

    func handle(_ exchange: HTTPExchange) {
        let rest = exchange.head.path.dropFirst("/api/v1/keys".count)
        let reference = rest.isEmpty ? nil : PercentDecoding.decode(rest.dropFirst())
        switch (exchange.head.method, reference) {
        case ("GET", nil), ("HEAD", nil):
            let all = exchange.head.queryValue("revoked") == "1"
            let shown = all ? keys.keys.values.sorted { $0.id < $1.id } : keys.live
            respond(exchange, 200, ["required": .bool(keys.required),
                                    "keys": .array(shown.map { keys.json($0, now: clock.now, wallNow: keys.wallClock()) })])
        case ("GET", let reference?), ("HEAD", let reference?):
            guard let key = keys.find(reference) else { return fail(exchange, KeyError("no live key '\(KeySettings.shown(reference))'", status: 404)) }
            respond(exchange, 200, keys.json(key, now: clock.now, wallNow: keys.wallClock()))
        case ("POST", nil):
            change(exchange) { [keys] body throws(KeyError) in
                let (key, secret) = try keys.create(body, wallNow: keys.wallClock())
                var members = keys.json(key, now: self.clock.now, wallNow: keys.wallClock()).objectValue ?? []
                members.insert(("key", .string(secret)), at: 0)
                return (201, .object(members), "created key \(key.name) (id \(key.id))")
            }
        case ("PATCH", let reference?), ("POST", let reference?):
            change(exchange) { [keys] body throws(KeyError) in
                let key = try keys.update(reference, body)
                return (200, keys.json(key, now: self.clock.now, wallNow: keys.wallClock()), "updated key \(key.name) (id \(key.id))")
            }
        case ("DELETE", let reference?):
            change(exchange) { [keys] _ throws(KeyError) in
                let key = try keys.revoke(reference, wallNow: keys.wallClock())
                return (200, keys.json(key, now: self.clock.now, wallNow: keys.wallClock()), "revoked key \(key.name) (id \(key.id))")
            }
        default:
            respond(exchange, 405, ["error": .string("\(exchange.head.method) is not allowed here: GET, POST /api/v1/keys; GET, PATCH, DELETE /api/v1/keys/{id}")])
        }
    }

    /// A change: the body read and checked, the caller's right to change keys checked, then `body`.
    private func change(_ exchange: HTTPExchange, _ perform: @escaping (JSONValue) throws(KeyError) -> (Int, JSONValue, String)) {
        exchange.collectBody { [weak self] bytes in
            guard let self else { return }
            if let refusal = self.refusal(exchange, body: bytes) {
                var headers = FleetAPI.jsonHeaders
                headers.add("WWW-Authenticate", "Bearer realm=\"herd\"")
                var out: [UInt8] = []
                JSONValue.object([("error", .string(refusal))]).write(to: &out)
                return exchange.respond(status: 401, headers: headers, body: out)
            }
            let body: JSONValue
            if bytes.isEmpty, exchange.head.method == "DELETE" {
                body = [:]
            } else {
                guard let parsed = try? JSONValue.parse(bytes), parsed.objectValue != nil else {
                    return self.fail(exchange, KeyError("send a JSON object"))
                }
                body = parsed
            }
            do {
                let (status, answer, line) = try perform(body)
                self.log.info("operator: \(line) (from \(exchange.remoteAddress?.description ?? "?"))")
                self.respond(exchange, status, answer)
            } catch {
                self.fail(exchange, (error as? KeyError) ?? KeyError("\(error)", status: 500))
            }
        }
    }

    /// Why this request may not change keys (nil: it may): with a fleet key or an admin key in existence, it must carry one.
    func refusal(_ exchange: HTTPExchange, body: [UInt8], doing action: String = "changing keys") -> String? {
        let admins = keys.live.filter(\.settings.admin)
        guard gate.isSet || !admins.isEmpty else { return nil }
        if let token = Self.bearer(exchange.head.headers) {
            let hash = SHA256.hex(SHA256.hash(Array(token.utf8)))
            if admins.contains(where: { $0.sha256 == hash }) { return nil }
        }
        if gate.isSet, gate.refusal(exchange, body: body) == nil { return nil }
        return "\(action) needs the fleet key or an admin key: send it as Authorization: Bearer <key>"
    }

    /// The bearer token of `Authorization`, else `x-api-key`.
    static func bearer(_ headers: HTTPHeaders) -> String? {
        if let auth = headers["Authorization"], auth.lowercased().hasPrefix("bearer ") { return String(auth.dropFirst(7).trimmingSpaces) }
        return headers["x-api-key"].map { String($0.trimmingSpaces) }
    }

    private func fail(_ exchange: HTTPExchange, _ error: KeyError) {
        respond(exchange, error.status, ["error": .string(error.description)])
    }

    private func respond(_ exchange: HTTPExchange, _ status: Int, _ body: JSONValue) {
        var bytes: [UInt8] = []
        body.write(to: &bytes)
        exchange.respond(status: status, headers: FleetAPI.jsonHeaders, body: bytes)
    }
}
