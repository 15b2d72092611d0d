import HerdJSON

/// control → proxy, in the routing snapshot: the client keys (`herd-control
/// keys create`), as hashes, and whether a request needs one
/// (`--require-key`). The proxy checks a request's key against this table
/// with no round trip; the limits themselves are counted by control.
public struct ClientKeys: Equatable, Sendable, Codable {
    /// One key, as the proxy needs it (never the secret).
    public struct Key: Equatable, Sendable, Codable {
        /// Control's id for it (1…), sent back in each ROUTE.
        public var id: Int
        /// The operator's name for it (1–64 bytes of `[A-Za-z0-9._-]`): traces, metrics, errors.
        public var name: String
        /// Lower-case hex SHA-256 of the key.
        public var sha256: String
        /// Model globs (`llama3*`, `qwen2.5:*`) the key may use; empty: any.
        @Defaulted<WireDefaults.Empty<String>> public var models: [String]
        /// Its requests are counted against a limit (rpm, tpm or a budget):
        /// each asks control (never spends a route ticket), which admits it or answers 429.
        @Defaulted<WireDefaults.False> public var limited: Bool
        /// Its single-turn prompts may be answered by the semantic cache.
        @Defaulted<WireDefaults.False> public var semantic: Bool

        public init(id: Int, name: String, sha256: String, models: [String] = [], limited: Bool = false, semantic: Bool = false) {
            self.semantic = semantic
            self.id = id
            self.name = name
            self.sha256 = sha256
            self.models = models
            self.limited = limited
        }
    }

    /// Requests without a valid key are refused (401).
    @Defaulted<WireDefaults.False> public var required: Bool
    @Defaulted<WireDefaults.Empty<Key>> public var keys: [Key]
    /// Keys were ever made on this router (live or revoked): a herd key that
    /// is not in `keys` is refused. False: the proxy looks at no key at all.
    @Defaulted<WireDefaults.False> public var issued: Bool

    public init(required: Bool = false, keys: [Key] = [], issued: Bool? = nil) {
        self.required = required
        self.keys = keys
        self.issued = issued ?? !keys.isEmpty
    }

    /// No keys, none required (a snapshot that does not mention them).
    public enum None: WireDefault { public static var value: ClientKeys { ClientKeys() } }

    /// The prefix every key herd makes starts with: a bearer token with it
    /// that is not in the table is a revoked or mistyped herd key (401), not
    /// another service's token passed along.
    public static let prefix = "herd_"

    /// Whether `model` matches `glob` (`*` any run, `?` one character; case-sensitive).
    public static func matches(_ glob: String, _ model: String) -> Bool {
        let pattern = Array(glob.utf8), text = Array(model.utf8)
        var p = 0, t = 0, star = -1, mark = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == UInt8(ascii: "?") || pattern[p] == text[t] {
                p += 1
                t += 1
            } else if p < pattern.count, pattern[p] == UInt8(ascii: "*") {
                star = p
                mark = t
                p += 1
            } else if star >= 0 {
                p = star + 1
                mark += 1
                t = mark
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }
}
