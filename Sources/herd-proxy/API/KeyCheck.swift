import HerdHTTP
import HerdSecurity
import HerdWire

/// The proxy's check of a request's client key against the snapshot's table
/// (`ClientKeys`): no round trip. A fleet with no keys and none required
/// pays nothing (not even the hash). The key comes as `Authorization: Bearer`
/// or `x-api-key` (Anthropic's clients). Loop-thread only.
struct KeyCheck {
    enum Outcome: Equatable {
        /// No key (or another service's token passed along): allowed, unlimited.
        case anonymous
        case key(ClientKeys.Key)
        case refused(ClientError)
    }

    private var version = -1
    private var byHash: [[UInt8]: ClientKeys.Key] = [:]
    private var required = false

    /// The table of `snapshot`, rebuilt when its version moves.
    mutating func follow(_ snapshot: RoutingSnapshot) {
        guard snapshot.version != version else { return }
        version = snapshot.version
        required = snapshot.keys.required
        byHash.removeAll(keepingCapacity: true)
        for key in snapshot.keys.keys {
            if let hash = Self.bytes(hex: key.sha256) { byHash[hash] = key }
        }
    }

    /// Whether any check is needed at all (keys exist or one is required).
    var active: Bool { required || !byHash.isEmpty }

    /// The request's key: known, none, or refused (401 in the caller's API shape).
    /// With no keys and none required, only a look at the header's first bytes.
    /// `adminKeyHash`: the fleet key's hash (the operator's own requests pass).
    func check(_ headers: HTTPHeaders, adminKeyHash: String?) -> Outcome {
        guard let token = Self.token(headers) else {
            return required ? .refused(ClientError(status: 401, message: "this router requires a client key: send it as Authorization: Bearer <key> (or x-api-key)"))
                : .anonymous
        }
        // No keys: only a herd key (revoked, since there are none) is refused; nothing is hashed.
        guard active else { return token.hasPrefix(ClientKeys.prefix) ? Self.invalid : .anonymous }
        let hash = SHA256.hash(Array(token.utf8))
        if let key = byHash[hash] { return .key(key) }
        if let admin = adminKeyHash, SHA256.hex(hash) == admin { return .anonymous }
        if token.hasPrefix(ClientKeys.prefix) { return Self.invalid }
        return required ? .refused(ClientError(status: 401, message: "this router requires a client key made by herd (herd_…); the one sent is not one"))
            : .anonymous
    }

    static let invalid = Outcome.refused(ClientError(status: 401, message: "this client key is not valid here (revoked, or mistyped)"))

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
        if let key = headers["x-api-key"] {
            let token = String(key.trimmingSpaces)
            return token.isEmpty ? nil : token
        }
        return nil
    }

    private static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count == 64 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var i = 0
        while i < 64 {
            guard let hi = nibble(digits[i]), let lo = nibble(digits[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): b - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
