import HerdBounds
import HerdJSON
import HerdWire

/// What a client key allows: its models, limits, tags and rights. Every
/// field has a range; `KeySettings.apply` is the one place a JSON body
/// (the API's, the CLI's) becomes settings.
struct KeySettings: Equatable, Sendable {
    /// Model globs the key may use; empty: any.
    var models: [String] = []
    var limits = KeyLimits()
    /// The operator's labels (shown in the Keys view).
    var tags: [String] = []
    /// Longest its requests may wait in the queue (at most `--queue-timeout`).
    var maxQueueWaitMilliseconds: UInt64?
    /// It may overflow to a cloud provider (`--provider`) when the fleet is busy.
    var cloud = false
    /// It may manage keys (as the fleet key may).
    var admin = false
    /// Its single-turn prompts may be answered by the proxies' semantic cache.
    var semanticCache = false

    static let maxModels = 64
    static let maxTags = 16
    static let rpmRange = 1...10_000_000
    static let tpmRange = 1...1_000_000_000_000
    static let budgetRange = 1...1_000_000_000_000_000
    static let maxQueueWaitSeconds = 0.0...86_400

    /// The fields of `body` applied over these settings (an update names only
    /// what changes; `null` clears a limit). Throws the first bad field.
    mutating func apply(_ body: JSONValue) throws(KeyError) {
        if let value = body["models"] { models = try Self.list(value, field: "models", max: Self.maxModels, valid: Self.isModelGlob) }
        if let value = body["tags"] { tags = try Self.list(value, field: "tags", max: Self.maxTags, valid: Self.isName) }
        if let value = body["rpm"] { limits.rpm = try Self.count(value, field: "rpm", in: Self.rpmRange) }
        if let value = body["tpm"] { limits.tpm = try Self.count(value, field: "tpm", in: Self.tpmRange) }
        if let value = body["budget_period"], value != .null {
            guard let text = value.stringValue, let period = KeyLimits.Period(rawValue: text) else {
                throw KeyError("budget_period must be day, week or month")
            }
            limits.budgetPeriod = period
        }
        if let value = body["budget_tokens"] {
            // A number (per budget_period, a day unless said), or "N/day|week|month".
            if let text = value.stringValue {
                let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
                guard parts.count == 2, let tokens = Int(parts[0]), Self.budgetRange.contains(tokens),
                      let period = KeyLimits.Period(rawValue: parts[1]) else {
                    throw KeyError("budget_tokens must be N/day, N/week or N/month with N 1–\(Self.budgetRange.upperBound)")
                }
                limits.budgetTokens = tokens
                limits.budgetPeriod = period
            } else {
                limits.budgetTokens = try Self.count(value, field: "budget_tokens", in: Self.budgetRange)
            }
        }
        if let value = body["max_queue_wait"] {
            if value == .null {
                maxQueueWaitMilliseconds = nil
            } else {
                guard let seconds = value.doubleValue, Self.maxQueueWaitSeconds.contains(seconds) else {
                    throw KeyError("max_queue_wait must be seconds, 0–86400")
                }
                maxQueueWaitMilliseconds = UInt64(saturating: seconds * 1000)
            }
        }
        if let value = body["cloud"] { cloud = try Self.flag(value, field: "cloud") }
        if let value = body["admin"] { admin = try Self.flag(value, field: "admin") }
        if let value = body["semantic_cache"] { semanticCache = try Self.flag(value, field: "semantic_cache") }
    }

    /// As stored (SQLite `settings`) and shown by the API.
    var json: JSONValue {
        var members: [(String, JSONValue)] = [("models", .strings(models)), ("tags", .strings(tags))]
        members.append(("rpm", limits.rpm.map { .int($0) } ?? .null))
        members.append(("tpm", limits.tpm.map { .int($0) } ?? .null))
        members.append(("budget_tokens", limits.budgetTokens.map { .int($0) } ?? .null))
        members.append(("budget_period", .string(limits.budgetPeriod.rawValue)))
        members.append(("max_queue_wait", maxQueueWaitMilliseconds.map { .number(Double($0) / 1000) } ?? .null))
        members.append(("cloud", .bool(cloud)))
        members.append(("admin", .bool(admin)))
        members.append(("semantic_cache", .bool(semanticCache)))
        return .object(members)
    }

    // MARK: Fields

    private static func list(_ value: JSONValue, field: String, max: Int, valid: (String) -> Bool) throws(KeyError) -> [String] {
        var items: [String]
        if value == .null {
            items = []
        } else if let text = value.stringValue {
            items = text.split(separator: ",").map { String($0.trimmingSpaces) }.filter { !$0.isEmpty }
        } else if let array = value.arrayValue {
            items = []
            for item in array {
                guard let text = item.stringValue else { throw KeyError("\(field) must be a list of strings") }
                items.append(text)
            }
        } else {
            throw KeyError("\(field) must be a list of strings")
        }
        guard items.count <= max else { throw KeyError("\(field): at most \(max)") }
        for item in items where !valid(item) {
            throw KeyError("\(field): '\(Self.shown(item))' is not valid (\(field == "models" ? "a model name or glob with * and ?, 1–256 bytes" : "1–64 bytes of A-Z a-z 0-9 . _ -"))")
        }
        return items
    }

    private static func count(_ value: JSONValue, field: String, in range: ClosedRange<Int>) throws(KeyError) -> Int? {
        if value == .null { return nil }
        guard let n = value.intValue, range.contains(n) else {
            throw KeyError("\(field) must be a whole number, \(range.lowerBound)–\(range.upperBound) (or null for none)")
        }
        return n
    }

    private static func flag(_ value: JSONValue, field: String) throws(KeyError) -> Bool {
        guard let flag = value.boolValue else { throw KeyError("\(field) must be true or false") }
        return flag
    }

    /// A key's name, a tag: 1–64 bytes of `[A-Za-z0-9._-]` (safe in a metric label, a log line, a URL).
    static func isName(_ text: String) -> Bool {
        let bytes = text.utf8
        return (1...64).contains(bytes.count) && bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x5F || b == 0x2D
        }
    }

    static func isModelGlob(_ text: String) -> Bool { RequestLimits.isModelName(text) }

    /// Shown in an error: short and printable.
    static func shown(_ text: String) -> String {
        let cut = text.utf8.count > 64 ? String(decoding: Array(text.utf8.prefix(64)), as: UTF8.self) + "…" : text
        return String(cut.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
    }
}

/// A client key as control keeps it: never the secret, its SHA-256.
struct ClientKey: Equatable, Sendable {
    var id: Int
    var name: String
    var sha256: String
    /// The key's first characters (`herd_3fa9c1`), to tell keys apart.
    var prefix: String
    var settings: KeySettings
    var createdMs: Int
    var revokedMs: Int?

    /// As the API shows it.
    var json: JSONValue {
        var members: [(String, JSONValue)] = [("id", .int(id)), ("name", .string(name)), ("prefix", .string(prefix)),
                                              ("created_ms", .int(createdMs)), ("revoked_ms", revokedMs.map { .int($0) } ?? .null)]
        members.append(contentsOf: settings.json.objectValue ?? [])
        return .object(members)
    }

    /// As the proxies get it.
    var wire: ClientKeys.Key {
        ClientKeys.Key(id: id, name: name, sha256: sha256, models: settings.models, limited: !settings.limits.isEmpty,
                       semantic: settings.semanticCache)
    }
}

/// A key request that cannot be done (a bad field, an unknown key): its message.
struct KeyError: Error, Equatable, CustomStringConvertible {
    let description: String
    var status = 400
    init(_ description: String, status: Int = 400) {
        self.description = description
        self.status = status
    }
}
