/// Member names to pick out of a JSON object, matched against the raw bytes
/// of each key: a key that is not wanted is never built into a `String` nor
/// hashed (the proxy reads a few members of every request and response).
public struct JSONKeys: Sendable, ExpressibleByArrayLiteral {
    public let names: [String]
    let utf8: [[UInt8]]

    public init(_ names: [String]) {
        self.names = names
        utf8 = names.map { Array($0.utf8) }
    }

    public init(arrayLiteral names: String...) { self.init(names) }

    public static let none: JSONKeys = []

    public var isEmpty: Bool { names.isEmpty }

    /// The index of the name whose bytes are `bytes[range]`.
    @inline(__always)
    func index(of range: Range<Int>, in bytes: UnsafeRawBufferPointer) -> Int? {
        let count = range.count
        var i = 0
        while i < utf8.count {
            let same = utf8[i].withUnsafeBufferPointer { name in
                guard name.count == count else { return false }
                var j = 0
                while j < count {
                    if name[j] != bytes[range.lowerBound &+ j] { return false }
                    j &+= 1
                }
                return true
            }
            if same { return i }
            i += 1
        }
        return nil
    }
}

extension JSONValue {
    /// Validates a whole JSON document but builds only the members of the top-level
    /// object named in `keys` (the rest is checked and skipped without allocating):
    /// how the proxy reads `model`, `stream`, … out of a request body that may
    /// carry megabytes of messages and images. Throws for invalid JSON or a
    /// top level that is not an object.
    public static func parseTopLevel(_ bytes: UnsafeRawBufferPointer, keys: JSONKeys, maxDepth: Int = 128) throws(JSONParseError) -> [String: JSONValue] {
        var spans: [String: Range<Int>] = [:]
        return try parseTopLevel(bytes, keys: keys, spans: .none, spanRanges: &spans, maxDepth: maxDepth)
    }

    /// `parseTopLevel`, and for the members named in `spans`, the byte range of
    /// their value in `bytes` (checked, not built): what the proxy hashes to
    /// recognise a conversation without decoding it.
    public static func parseTopLevel(_ bytes: UnsafeRawBufferPointer, keys: JSONKeys, spans: JSONKeys, spanRanges: inout [String: Range<Int>],
                                     maxDepth: Int = 128) throws(JSONParseError) -> [String: JSONValue] {
        let picked = try pickTopLevel(bytes, keys: keys, spans: spans, maxDepth: maxDepth)
        var found: [String: JSONValue] = [:]
        for (i, value) in picked.values.enumerated() { if let value { found[keys.names[i]] = value } }
        for (i, range) in picked.spans.enumerated() { if let range { spanRanges[spans.names[i]] = range } }
        return found
    }

    /// What `pickTopLevel` found: the value of each of `keys` and the byte
    /// range of each of `spans`, by position in those lists (no dictionary,
    /// no hashing: callers on the request path index them with constants).
    public struct Picked: Sendable {
        public var values: [JSONValue?]
        public var spans: [Range<Int>?]

        public subscript(_ key: Int) -> JSONValue? { values[key] }
    }

    /// `parseTopLevel` with its results by position (see `Picked`).
    public static func pickTopLevel(_ bytes: UnsafeRawBufferPointer, keys: JSONKeys, spans: JSONKeys = .none,
                                    maxDepth: Int = 128) throws(JSONParseError) -> Picked {
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
        parser.skipSpace()
        guard parser.current == UInt8(ascii: "{") else { throw parser.error("the body must be a JSON object") }
        parser.index += 1
        var found = Picked(values: [JSONValue?](repeating: nil, count: keys.names.count),
                           spans: [Range<Int>?](repeating: nil, count: spans.names.count))
        parser.skipSpace()
        if parser.current == UInt8(ascii: "}") {
            parser.index += 1
        } else {
            while true {
                parser.skipSpace()
                guard parser.current == UInt8(ascii: "\"") else { throw parser.error("expected a string key") }
                // The key's raw bytes; only an escaped key (rare) is decoded to be matched.
                let keyStart = parser.index
                try parser.skipString()
                var raw = keyStart + 1..<parser.index - 1
                var escapedName: [UInt8]?
                if JSONParser.hasBackslash(bytes, in: raw) {
                    var again = JSONParser(bytes: bytes, maxDepth: maxDepth)
                    again.index = keyStart
                    escapedName = Array(try again.parseString().utf8)
                    raw = 0..<0
                }
                func match(_ set: JSONKeys) -> Int? {
                    if let escapedName { return set.utf8.firstIndex(of: escapedName) }
                    return set.index(of: raw, in: bytes)
                }
                parser.skipSpace()
                guard parser.current == UInt8(ascii: ":") else { throw parser.error("expected ':'") }
                parser.index += 1
                parser.skipSpace()
                if let i = match(keys) {
                    found.values[i] = try parser.parseValue(depth: 1)
                } else if !spans.isEmpty, let i = match(spans) {
                    let start = parser.index
                    try parser.skipValue(depth: 1)
                    found.spans[i] = start..<parser.index
                } else {
                    try parser.skipValue(depth: 1)
                }
                parser.skipSpace()
                if parser.current == UInt8(ascii: ",") {
                    parser.index += 1
                } else if parser.current == UInt8(ascii: "}") {
                    parser.index += 1
                    break
                } else {
                    throw parser.error("expected ',' or '}'")
                }
            }
        }
        parser.skipSpace()
        if parser.index != bytes.count { throw parser.error("trailing characters") }
        return found
    }
}

extension JSONValue {
    /// The byte ranges of the first `limit` elements of the array at `range`
    /// of `bytes` (already validated by `parseTopLevel`); empty if it is not an array.
    public static func arrayElementSpans(_ bytes: UnsafeRawBufferPointer, in range: Range<Int>, limit: Int) -> [Range<Int>] {
        var parser = JSONParser(bytes: UnsafeRawBufferPointer(rebasing: bytes[range]), maxDepth: 128)
        parser.skipSpace()
        guard parser.current == UInt8(ascii: "[") else { return [] }
        parser.index += 1
        var result: [Range<Int>] = []
        while result.count < limit {
            parser.skipSpace()
            guard let c = parser.current, c != UInt8(ascii: "]") else { break }
            let start = parser.index
            do { try parser.skipValue(depth: 1) } catch { break }
            result.append(range.lowerBound + start..<range.lowerBound + parser.index)
            parser.skipSpace()
            guard parser.current == UInt8(ascii: ",") else { break }
            parser.index += 1
        }
        return result
    }
}

extension JSONParser {
    /// Whether `bytes[range]` holds a `\\` (an escaped key).
    @inline(__always)
    static func hasBackslash(_ bytes: UnsafeRawBufferPointer, in range: Range<Int>) -> Bool {
        var k = range.lowerBound
        while k < range.upperBound {
            if bytes[k] == UInt8(ascii: "\\") { return true }
            k &+= 1
        }
        return false
    }

    /// Checks one value's syntax and moves past it without building it.
    mutating func skipValue(depth: Int) throws(JSONParseError) {
        guard let c = current else { throw error("unexpected end of input") }
        switch c {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            if depth + 1 > maxDepth { throw error("nesting too deep") }
            let isObject = c == UInt8(ascii: "{")
            let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
            index += 1
            skipSpace()
            if current == close { index += 1; return }
            while true {
                skipSpace()
                if isObject {
                    guard current == UInt8(ascii: "\"") else { throw error("expected a string key") }
                    try skipString()
                    skipSpace()
                    guard current == UInt8(ascii: ":") else { throw error("expected ':'") }
                    index += 1
                    skipSpace()
                }
                try skipValue(depth: depth + 1)
                skipSpace()
                if current == UInt8(ascii: ",") {
                    index += 1
                } else if current == close {
                    index += 1
                    return
                } else {
                    throw error(isObject ? "expected ',' or '}'" : "expected ',' or ']'")
                }
            }
        case UInt8(ascii: "\""): try skipString()
        case UInt8(ascii: "t"): try expectWord("true")
        case UInt8(ascii: "f"): try expectWord("false")
        case UInt8(ascii: "n"): try expectWord("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): _ = try scanNumber()
        default: throw error("unexpected character")
        }
    }

    /// Checks a string literal (escapes included) and moves past it.
    mutating func skipString() throws(JSONParseError) {
        index += 1
        while true {
            // Plain bytes (most of a string) in a tight loop; quotes, escapes
            // and control characters below.
            var i = index
            let end = bytes.count
            while i < end {
                let c = bytes[i]
                if c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") || c < 0x20 { break }
                i &+= 1
            }
            index = i
            guard let c = current else { break }
            index += 1
            switch c {
            case UInt8(ascii: "\""): return
            case UInt8(ascii: "\\"):
                guard let e = current else { throw error("unterminated escape") }
                index += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    break
                case UInt8(ascii: "u"): _ = try parseHex4()
                default: throw error("invalid escape")
                }
            default:
                if c < 0x20 { throw error("control character in string") }
            }
        }
        throw error("unterminated string")
    }
}
