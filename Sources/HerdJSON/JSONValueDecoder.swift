/// Decodes `Decodable` types from a `JSONValue` (herd's wire types are
/// `Codable` over herd's own JSON model: no Foundation). Errors are
/// `JSONFieldError`s that name the field by its path under a context, e.g.
/// `heartbeat.backends[0].kind must be a string`.
public struct JSONValueDecoder {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue, context: String) throws(JSONFieldError) -> T {
        do {
            return try JSONValueDecoding(value: value, path: context).decode(T.self)
        } catch let error as JSONFieldError {
            throw error
        } catch let DecodingError.dataCorrupted(context) {
            throw JSONFieldError("\(JSONValueDecoding.describe(context.codingPath)) \(context.debugDescription)")
        } catch {
            throw JSONFieldError("\(context): \(error)")
        }
    }
}

/// Where a value sits, for error messages only: built when a container is
/// entered, turned into text (`heartbeat.backends[0].kind`) only when an
/// error is thrown.
final class JSONPath: @unchecked Sendable {
    enum Step {
        case root(String)
        case key(String)
        case index(Int)
    }

    let parent: JSONPath?
    let step: Step

    init(parent: JSONPath?, step: Step) {
        self.parent = parent
        self.step = step
    }

    func text(then last: Step? = nil) -> String {
        var steps: [Step] = last.map { [$0] } ?? []
        var node: JSONPath? = self
        while let current = node {
            steps.append(current.step)
            node = current.parent
        }
        var out = ""
        for step in steps.reversed() {
            switch step {
            case let .root(name): out += name
            case let .key(key): out += "." + key
            case let .index(i): out += "[\(i)]"
            }
        }
        return out
    }
}

/// The decoder's state at one value: the value, where it sits (its parent
/// container's path and its own key or index).
struct JSONValueDecoding: Decoder {
    let value: JSONValue
    let parent: JSONPath?
    let step: JSONPath.Step

    init(value: JSONValue, path root: String) {
        self.value = value
        parent = nil
        step = .root(root)
    }

    init(value: JSONValue, parent: JSONPath, step: JSONPath.Step) {
        self.value = value
        self.parent = parent
        self.step = step
    }

    var path: String { parent?.text(then: step) ?? JSONPath(parent: nil, step: step).text() }
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    /// Plain values directly (a metadata comparison, no dynamic cast), the
    /// rest through their own `init(from:)`.
    @inline(__always)
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if T.self == String.self { return unsafeBitCast(try decode(String.self), to: T.self) }
        if T.self == Int.self { return unsafeBitCast(try decode(Int.self), to: T.self) }
        if T.self == Bool.self { return unsafeBitCast(try decode(Bool.self), to: T.self) }
        if T.self == Double.self { return unsafeBitCast(try decode(Double.self), to: T.self) }
        if T.self == UInt64.self { return unsafeBitCast(try decode(UInt64.self), to: T.self) }
        if T.self == JSONValue.self { return unsafeBitCast(value, to: T.self) }
        if T.self == [String].self { return unsafeBitCast(try strings(), to: T.self) }
        return try T(from: self)
    }

    private func strings() throws -> [String] {
        guard case let .array(items) = value else { throw JSONFieldError("\(path) must be an array") }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case let .string(s) = item else { throw JSONFieldError("\(path)[\(i)] must be a string") }
            out.append(s)
        }
        return out
    }

    private var here: JSONPath { JSONPath(parent: parent, step: step) }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case let .object(members) = value else { throw JSONFieldError("\(path) must be a JSON object") }
        return KeyedDecodingContainer(JSONKeyedDecoding<Key>(members: members, path: here))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case let .array(items) = value else { throw JSONFieldError("\(path) must be an array") }
        return JSONUnkeyedDecoding(items: items, path: here)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    /// `a.b[2].c` from a coding path (for errors Swift's own decoding raises).
    static func describe(_ codingPath: [any CodingKey]) -> String {
        codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }
}

extension JSONValueDecoding: SingleValueDecodingContainer {
    func decodeNil() -> Bool { value == .null }

    func decode(_ type: Bool.Type) throws -> Bool {
        guard case let .bool(b) = value else { throw JSONFieldError("\(path) must be true or false") }
        return b
    }

    func decode(_ type: String.Type) throws -> String {
        guard case let .string(s) = value else { throw JSONFieldError("\(path) must be a string") }
        return s
    }

    func decode(_ type: Double.Type) throws -> Double {
        guard case let .number(n) = value, n.isFinite else { throw JSONFieldError("\(path) must be a number") }
        return n
    }

    func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }

    func decode(_ type: Int.Type) throws -> Int {
        guard let n = value.intValue else { throw JSONFieldError("\(path) must be an integer") }
        return n
    }

    func decode(_ type: Int8.Type) throws -> Int8 { try narrow(Int8.self) }
    func decode(_ type: Int16.Type) throws -> Int16 { try narrow(Int16.self) }
    func decode(_ type: Int32.Type) throws -> Int32 { try narrow(Int32.self) }
    func decode(_ type: Int64.Type) throws -> Int64 { try narrow(Int64.self) }
    func decode(_ type: UInt.Type) throws -> UInt { try narrow(UInt.self) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try narrow(UInt8.self) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try narrow(UInt16.self) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try narrow(UInt32.self) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try narrow(UInt64.self) }

    private func narrow<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard let n = value.intValue else { throw JSONFieldError("\(path) must be an integer") }
        guard let narrowed = T(exactly: n) else { throw JSONFieldError("\(path) must be an integer from \(T.min) to \(T.max)") }
        return narrowed
    }
}

/// An object's members, looked up by key (the last of repeated keys wins).
struct JSONKeyedDecoding<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let members: [(String, JSONValue)]
    let path: JSONPath
    var codingPath: [any CodingKey] { [] }

    var allKeys: [Key] { members.compactMap { Key(stringValue: $0.0) } }

    private func member(_ key: Key) -> JSONValue? {
        let name = key.stringValue
        var i = members.count
        while i > 0 {
            i -= 1
            if members[i].0 == name { return members[i].1 }
        }
        return nil
    }

    @inline(__always)
    private func at(_ key: Key, _ value: JSONValue?) -> JSONValueDecoding {
        JSONValueDecoding(value: value ?? .null, parent: path, step: .key(key.stringValue))
    }

    func contains(_ key: Key) -> Bool { member(key) != nil }

    func decodeNil(forKey key: Key) throws -> Bool { (member(key) ?? .null) == .null }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try at(key, member(key)).decode(Bool.self) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try at(key, member(key)).decode(String.self) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try at(key, member(key)).decode(Double.self) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try at(key, member(key)).decode(Int.self) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try at(key, member(key)).decode(UInt64.self) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try at(key, member(key)).decode(T.self) }

    /// A missing member and `null` both decode as `nil`.
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let value = member(key), value != .null else { return nil }
        return try at(key, value).decode(T.self)
    }

    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
        guard let value = member(key), value != .null else { return nil }
        return try at(key, value).decode(String.self)
    }

    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? {
        guard let value = member(key), value != .null else { return nil }
        return try at(key, value).decode(Int.self)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try at(key, member(key)).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { try at(key, member(key)).unkeyedContainer() }

    func superDecoder() throws -> any Decoder { JSONValueDecoding(value: .object(members), parent: path, step: .key("super")) }
    func superDecoder(forKey key: Key) throws -> any Decoder { at(key, member(key)) }
}

/// An array's items, in order.
struct JSONUnkeyedDecoding: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let path: JSONPath
    var currentIndex = 0
    var codingPath: [any CodingKey] { [] }
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    private mutating func next() throws -> JSONValueDecoding {
        guard !isAtEnd else { throw JSONFieldError("\(path.text()) has too few items") }
        defer { currentIndex += 1 }
        return JSONValueDecoding(value: items[currentIndex], parent: path, step: .index(currentIndex))
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: String.Type) throws -> String { try next().decode(String.self) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decode(T.self) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> any Decoder { try next() }
}

extension JSONFieldError {
    /// A wire value outside the values a field takes.
    public static func unknown<T: RawRepresentable & CaseIterable>(_ raw: String, for type: T.Type, at path: String) -> JSONFieldError
    where T.RawValue == String {
        let cases = T.allCases.map(\.rawValue)
        let allowed = cases.count == 2 ? "\(cases[0]) or \(cases[1])" : "one of " + cases.joined(separator: ", ")
        return JSONFieldError("\(path) must be \(allowed) (not '\(raw)')")
    }
}

/// String enums on the wire: an unknown value is refused with the values
/// that are allowed (`route.api must be ollama or openai (not 'grpc')`).
extension RawRepresentable where Self: CaseIterable & Decodable, RawValue == String {
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(rawValue: raw) else {
            let path = (decoder as? JSONValueDecoding)?.path ?? JSONValueDecoding.describe(decoder.codingPath)
            throw JSONFieldError.unknown(raw, for: Self.self, at: path)
        }
        self = value
    }
}

/// A JSON value inside a wire type (passed through as it is: Ollama's model
/// `details`, the fleet listings of a snapshot).
extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        if let decoding = decoder as? JSONValueDecoding {
            self = decoding.value
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            self = .null
        } else if let bool = try? single.decode(Bool.self) {
            self = .bool(bool)
        } else if let number = try? single.decode(Double.self) {
            self = .number(number)
        } else if let string = try? single.decode(String.self) {
            self = .string(string)
        } else if let array = try? single.decode([JSONValue].self) {
            self = .array(array)
        } else {
            let object = try decoder.container(keyedBy: AnyKey.self)
            self = .object(try object.allKeys.map { ($0.stringValue, try object.decode(JSONValue.self, forKey: $0)) })
        }
    }

    public func encode(to encoder: any Encoder) throws {
        if let encoding = encoder as? JSONValueEncoding {
            encoding.slot = .value(self)
            return
        }
        switch self {
        case .null:
            var single = encoder.singleValueContainer()
            try single.encodeNil()
        case let .bool(b):
            var single = encoder.singleValueContainer()
            try single.encode(b)
        case let .number(n):
            var single = encoder.singleValueContainer()
            try single.encode(n)
        case let .string(s):
            var single = encoder.singleValueContainer()
            try single.encode(s)
        case let .array(items):
            var unkeyed = encoder.unkeyedContainer()
            for item in items { try unkeyed.encode(item) }
        case let .object(members):
            var keyed = encoder.container(keyedBy: AnyKey.self)
            for (key, value) in members { try keyed.encode(value, forKey: AnyKey(stringValue: key)) }
        }
    }

    /// Any member name.
    struct AnyKey: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }
}
