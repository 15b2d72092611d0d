import HerdHTTP
import HerdSecurity
import HerdWire

/// The proxy's check of a request's client key against the snapshot's table
/// (`ClientKeys`): no round trip. A fleet with no keys and none required
/// pays nothing (not even the hash). The key comes as `Authorization: Bearer`
/// or `x-api-key` (Anthropic's clients). Loop-thread only.
struct KeyCheck {
    /// A known key, held by reference (a request without one carries a nil pointer, nothing more).
    final class Known: Sendable {
        let key: ClientKeys.Key
        init(_ key: ClientKeys.Key) { self.key = key }
    }

    enum Outcome {
        /// No key (or another service's token passed along): allowed, unlimited.
        case anonymous
        case key(Known)
        case refused(ClientError)
    }

    private var version = -1
    private var byHash: [[UInt8]: Known] = [:]
    private var required = false
    private var issued = false

    /// Whether the table is that of snapshot `version` (cheap: no copy of the snapshot).
    func isCurrent(_ version: Int) -> Bool { self.version == version }

    /// The table of snapshot `version`'s `keys`.
    mutating func follow(version: Int, keys: ClientKeys) {
        self.version = version
        required = keys.required
        issued = keys.issued || !keys.keys.isEmpty
        byHash.removeAll(keepingCapacity: true)
        for key in keys.keys {
            if let hash = SHA256.digest(hex: key.sha256) { byHash[hash] = Known(key) }
        }
    }

    /// Whether any check is needed at all: keys were made here, or one is
    /// required. A router that never made a key reads no header for it.
    var active: Bool { required || issued }

    /// The request's key: known, none, or refused (401 in the caller's API shape).
    /// Only a herd key (`herd_…`) is hashed; another service's token passed
    /// along is looked at only when a key is required (the fleet key passes).
    /// `adminKeyHash`: the fleet key's hash.
    func check(_ headers: HTTPHeaders, adminKeyHash: String?) -> Outcome {
        guard active else { return .anonymous }
        guard let token = Self.token(headers) else {
            return required ? .refused(ClientError(status: 401, message: "this router requires a client key: send it as Authorization: Bearer <key> (or x-api-key)"))
                : .anonymous
        }
        if token.hasPrefix(ClientKeys.prefix) {
            guard !byHash.isEmpty, let key = byHash[SHA256.hash(Array(token.utf8))] else { return Self.invalid }
            return .key(key)
        }
        guard required else { return .anonymous }
        if let admin = adminKeyHash, SHA256.hex(SHA256.hash(Array(token.utf8))) == admin { return .anonymous }
        return .refused(ClientError(status: 401, message: "this router requires a client key made by herd (herd_…); the one sent is not one"))
    }

    static var invalid: Outcome { .refused(ClientError(status: 401, message: "this client key is not valid here (revoked, or mistyped)")) }

    /// Whether `key` may use `model` (its globs; none: any model).
    static func allows(_ key: ClientKeys.Key, model: String) -> Bool {
        key.models.isEmpty || key.models.contains { ClientKeys.matches($0, model) || ClientKeys.matches($0, ModelName.canonical(model)) }
    }

    /// The bearer token of `Authorization`, else `x-api-key`.
    static func token(_ headers: HTTPHeaders) -> String? {
        if let auth = headers[.authorization] {
            let bytes = Array(auth.utf8)
            if bytes.count > 7, bytes.prefix(7).map({ $0 | 0x20 }) == Array("bearer ".utf8) {
                let token = String(auth.dropFirst(7).trimmingSpaces)
                return token.isEmpty ? nil : token
            }
        }
        if let key = headers[.xApiKey] {
            let token = String(key.trimmingSpaces)
            return token.isEmpty ? nil : token
        }
        return nil
    }
}
