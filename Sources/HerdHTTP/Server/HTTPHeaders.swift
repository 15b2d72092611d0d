/// Header names herd acts on, recognised once per field (by length and first
/// letter, then one case-insensitive comparison) so that the hot path
/// compares enum values instead of strings.
public enum KnownHeader: UInt8, Sendable {
    case contentLength, transferEncoding, connection, keepAlive, date, host, proxyConnection, te, trailer, upgrade
    case xHerdFallbackModels, xForwardedFor, xForwardedProto
    case xHerdTags, xHerdSession, xHerdClient, authorization, origin, contentType, accessControlRequestHeaders
    /// `Expect: 100-continue`: the server that reads the body answers it (a proxy does not pass it on).
    case expect
    /// Anthropic clients' API key (a client key, like `Authorization: Bearer`).
    case xApiKey
    /// `X-Herd-Node`: the node a client asks for (an inference request pinned there, or a model action's target).
    case xHerdNode
    /// `X-Herd-Cache`: a client's say on the response cache.
    case xHerdCache

    /// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded by a proxy.
    public var isHopByHop: Bool {
        switch self {
        case .connection, .keepAlive, .proxyConnection, .te, .trailer, .transferEncoding, .upgrade: true
        default: false
        }
    }

    /// Framing and connection headers a server or client writes itself.
    public var isManagedByHTTP: Bool {
        switch self {
        case .contentLength, .transferEncoding, .connection, .keepAlive, .date: true
        default: false
        }
    }

    public static func classify(_ name: String) -> KnownHeader? {
        var name = name
        return name.withUTF8 { classify(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// `classify` of a name's raw bytes (the parser classifies before it
    /// makes the name a `String`).
    public static func classify(bytes name: UnsafeRawBufferPointer) -> KnownHeader? {
        guard let first = name.first else { return nil }
        let candidate: (StaticString, KnownHeader)? = switch (name.count, first | 0x20) {
        case (14, 0x63): ("Content-Length", .contentLength)
        case (17, 0x74): ("Transfer-Encoding", .transferEncoding)
        case (10, 0x63): ("Connection", .connection)
        case (10, 0x6B): ("Keep-Alive", .keepAlive)
        case (4, 0x64): ("Date", .date)
        case (4, 0x68): ("Host", .host)
        case (16, 0x70): ("Proxy-Connection", .proxyConnection)
        case (2, 0x74): ("TE", .te)
        case (7, 0x74): ("Trailer", .trailer)
        case (7, 0x75): ("Upgrade", .upgrade)
        case (22, 0x78): ("X-Herd-Fallback-Models", .xHerdFallbackModels)
        case (15, 0x78): ("X-Forwarded-For", .xForwardedFor)
        case (17, 0x78): ("X-Forwarded-Proto", .xForwardedProto)
        case (11, 0x78): name.count > 7 && name[7] | 0x20 == 0x6E ? ("X-Herd-Node", .xHerdNode) : ("X-Herd-Tags", .xHerdTags)
        case (14, 0x78): ("X-Herd-Session", .xHerdSession)
        case (13, 0x78): ("X-Herd-Client", .xHerdClient)
        case (13, 0x61): ("Authorization", .authorization)
        case (6, 0x6F): ("Origin", .origin)
        case (12, 0x63): ("Content-Type", .contentType)
        case (30, 0x61): ("Access-Control-Request-Headers", .accessControlRequestHeaders)
        case (6, 0x65): ("Expect", .expect)
        case (9, 0x78): ("X-Api-Key", .xApiKey)
        case (12, 0x78): ("X-Herd-Cache", .xHerdCache)
        default: nil
        }
        guard let (known, kind) = candidate else { return nil }
        let expected = known.utf8Start
        for k in 0..<name.count {
            let c = name[k], d = expected[k]
            if c != d, HTTPHeaders.asciiLower(c) != HTTPHeaders.asciiLower(d) { return nil }
        }
        return kind
    }
}

/// A set of `KnownHeader`s as bits: a membership test per field is a mask,
/// not a hash.
public struct KnownHeaderSet: Sendable, ExpressibleByArrayLiteral {
    private var bits: UInt32 = 0

    public init(arrayLiteral kinds: KnownHeader...) {
        for kind in kinds { bits |= 1 << UInt32(kind.rawValue) }
    }

    @inline(__always)
    public func contains(_ kind: KnownHeader) -> Bool { bits & (1 << UInt32(kind.rawValue)) != 0 }
}

/// An ordered list of HTTP header fields. Names keep their case as received;
/// look-ups compare names case-insensitively (ASCII).
public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)]
    /// Each field's name classified once when added (`nil`: not a name herd acts on).
    public private(set) var kinds: [KnownHeader?]

    public init() {
        fields = []
        kinds = []
    }

    /// An empty set with room for `capacity` fields (a head is built without regrowing).
    public init(capacity: Int) {
        fields = []
        kinds = []
        fields.reserveCapacity(capacity)
        kinds.reserveCapacity(capacity)
    }

    public init(_ fields: [(String, String)]) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
        kinds = fields.map { KnownHeader.classify($0.0) }
    }

    public init(dictionaryLiteral elements: (String, String)...) { self.init(elements) }

    public var count: Int { fields.count }
    public var isEmpty: Bool { fields.isEmpty }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }

    /// Appends a field (a repeated name is kept as a second field).
    public mutating func add(_ name: String, _ value: String) {
        fields.append((name: name, value: value))
        kinds.append(KnownHeader.classify(name))
    }

    /// Appends a field whose kind is already known (copying between header sets).
    public mutating func add(_ name: String, _ value: String, kind: KnownHeader?) {
        fields.append((name: name, value: value))
        kinds.append(kind)
    }

    /// Appends a field whose value comes from elsewhere (another process, a
    /// node): control characters become `?`, so a value can never end the
    /// line or the head it is written into.
    public mutating func addSafely(_ name: String, _ value: String) {
        let clean = value.utf8.withContiguousStorageIfAvailable { bytes in
            for byte in bytes where byte < 0x20 || byte == 0x7F { return false }
            return true
        } ?? value.utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7F }
        if clean {
            add(name, value)
        } else {
            add(name, String(decoding: value.utf8.map { $0 < 0x20 || $0 == 0x7F ? UInt8(ascii: "?") : $0 }, as: UTF8.self))
        }
    }

    /// Replaces every field named `name` with one field.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }

    /// Removes every field named `name`.
    public mutating func remove(_ name: String) {
        var keptFields: [(name: String, value: String)] = []
        var keptKinds: [KnownHeader?] = []
        for (i, field) in fields.enumerated() where !HTTPHeaders.namesEqual(field.name, name) {
            keptFields.append(field)
            keptKinds.append(kinds[i])
        }
        fields = keptFields
        kinds = keptKinds
    }

    /// The first value of `name`, if any.
    public subscript(_ name: String) -> String? {
        // A name herd knows is found by its kind (classified once per field).
        if let kind = KnownHeader.classify(name) { return self[kind] }
        return fields.first { HTTPHeaders.namesEqual($0.name, name) }?.value
    }

    public func contains(_ name: String) -> Bool { self[name] != nil }

    /// The first value of a known header: found by its kind, classified when
    /// the field was added (no name comparison).
    public subscript(_ kind: KnownHeader) -> String? {
        guard let i = kinds.firstIndex(of: kind) else { return nil }
        return fields[i].value
    }

    /// Whether a comma-separated header (`Connection`, `Expect`, …) lists `token`.
    public func hasToken(_ token: String, in name: String) -> Bool {
        fields.contains { HTTPHeaders.namesEqual($0.name, name) && HTTPHeaders.value($0.value, lists: token) }
    }

    /// Whether a known comma-separated header lists `token` (found by its kind, no name comparison).
    public func hasToken(_ token: String, in kind: KnownHeader) -> Bool {
        for i in kinds.indices where kinds[i] == kind {
            if HTTPHeaders.value(fields[i].value, lists: token) { return true }
        }
        return false
    }

    static func value(_ value: String, lists token: String) -> Bool {
        var value = value, token = token
        return value.withUTF8 { v in token.withUTF8 { t in list(v, contains: t) } }
    }

    /// A comma-separated list holds `token` (elements padded with spaces or
    /// tabs), ASCII case-insensitively: scanned as bytes in place (splitting
    /// the UTF-8 view cost ~2,500 instructions a call).
    static func list(_ list: UnsafeBufferPointer<UInt8>, contains token: UnsafeBufferPointer<UInt8>) -> Bool {
        var i = 0
        while i <= list.count {
            var end = i
            while end < list.count, list[end] != UInt8(ascii: ",") { end += 1 }
            var start = i, stop = end
            while start < stop, list[start] == 32 || list[start] == 9 { start += 1 }
            while stop > start, list[stop - 1] == 32 || list[stop - 1] == 9 { stop -= 1 }
            if stop - start == token.count, token.count > 0, bytesEqualIgnoringASCIICase(UnsafeBufferPointer(rebasing: list[start..<stop]), token) { return true }
            i = end + 1
        }
        return false
    }

    @inline(__always)
    static func asciiLower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c | 0x20 : c }

    /// ASCII case-insensitive comparison of header names or tokens. Most
    /// comparisons end at the length check.
    public static func namesEqual(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        // Compared as bytes in place (`withUTF8` also reaches a small string's
        // inline bytes; the iterators cost ~700 instructions a call).
        var a = a, b = b
        return a.withUTF8 { p in b.withUTF8 { q in bytesEqualIgnoringASCIICase(p, q) } }
    }

    @inline(__always)
    static func bytesEqualIgnoringASCIICase(_ p: UnsafeBufferPointer<UInt8>, _ q: UnsafeBufferPointer<UInt8>) -> Bool {
        for k in 0..<p.count {
            let c = p[k], d = q[k]
            if c != d, asciiLower(c) != asciiLower(d) { return false }
        }
        return true
    }

    public static func namesEqual(_ a: Substring, _ b: String) -> Bool { namesEqual(String(a), b) }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count && zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}

extension StringProtocol {
    /// The string without leading and trailing white space (spaces, tabs, CR, LF).
    /// Scanned as UTF-8 (the four are ASCII; no grapheme breaking per call).
    public var trimmingSpaces: Substring {
        let s = Substring(self)
        let utf8 = s.utf8
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }
        guard let start = utf8.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = utf8.lastIndex(where: { !isSpace($0) })!
        return s[start..<utf8.index(after: last)]
    }
}
