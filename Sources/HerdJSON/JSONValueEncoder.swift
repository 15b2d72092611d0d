/// Encodes `Encodable` types to a `JSONValue`: object members in the order
/// they are encoded (synthesized `Codable` encodes in declaration order),
/// `nil` optionals left out.
public struct JSONValueEncoder {
    public init() {}

    public func encode<T: Encodable>(_ value: T) -> JSONValue {
        if T.self == JSONValue.self { return unsafeBitCast(value, to: JSONValue.self) }
        let encoder = JSONValueEncoding()
        do {
            try value.encode(to: encoder)
        } catch {
            // The encoding containers below never throw; a type's own encode
            // that does is a programming error.
            preconditionFailure("encoding \(T.self): \(error)")
        }
        return encoder.result
    }
}

/// Where one value is being built: a tree of references that becomes a
/// `JSONValue` once encoding ends.
final class JSONValueEncoding: Encoder {
    enum Slot {
        case value(JSONValue)
        case object(JSONObjectBuilder)
        case array(JSONArrayBuilder)
    }

    var slot = Slot.value(.null)
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    var result: JSONValue {
        switch slot {
        case let .value(value): value
        case let .object(builder): builder.value
        case let .array(builder): builder.value
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let builder: JSONObjectBuilder
        if case let .object(existing) = slot {
            builder = existing
        } else {
            builder = JSONObjectBuilder()
            slot = .object(builder)
        }
        return KeyedEncodingContainer(JSONKeyedEncoding<Key>(builder: builder))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let builder = JSONArrayBuilder()
        slot = .array(builder)
        return JSONUnkeyedEncoding(builder: builder)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { JSONSingleValueEncoding(encoder: self) }

    /// A nested value's JSON: plain values directly (a metadata comparison,
    /// no dynamic cast), the rest through a child encoder.
    @inline(__always)
    static func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        if T.self == String.self { return .string(unsafeBitCast(value, to: String.self)) }
        if T.self == Int.self { return .number(Double(unsafeBitCast(value, to: Int.self))) }
        if T.self == Bool.self { return .bool(unsafeBitCast(value, to: Bool.self)) }
        if T.self == Double.self { return .number(unsafeBitCast(value, to: Double.self)) }
        if T.self == [String].self { return .array(unsafeBitCast(value, to: [String].self).map { .string($0) }) }
        if T.self == JSONValue.self { return unsafeBitCast(value, to: JSONValue.self) }
        let encoder = JSONValueEncoding()
        try value.encode(to: encoder)
        return encoder.result
    }
}

extension KeyedEncodingContainer {
    /// Synthesized `encode(to:)` encodes a `Defaulted` field through this: the
    /// wrapped value, as if the wrapper were not there.
    @inlinable
    public mutating func encode<D>(_ value: Defaulted<D>, forKey key: Key) throws {
        try encode(value.wrappedValue, forKey: key)
    }
}

final class JSONObjectBuilder {
    var members: [(String, JSONValue)] = []
    var nested: [(String, JSONValueEncoding)] = []
    var value: JSONValue {
        var all = members
        for (key, encoder) in nested { all.append((key, encoder.result)) }
        return .object(all)
    }
}

final class JSONArrayBuilder {
    var items: [JSONValue] = []
    var value: JSONValue { .array(items) }
}

struct JSONKeyedEncoding<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let builder: JSONObjectBuilder
    var codingPath: [any CodingKey] { [] }

    mutating func encodeNil(forKey key: Key) { builder.members.append((key.stringValue, .null)) }
    mutating func encode(_ value: Bool, forKey key: Key) { builder.members.append((key.stringValue, .bool(value))) }
    mutating func encode(_ value: String, forKey key: Key) { builder.members.append((key.stringValue, .string(value))) }
    mutating func encode(_ value: Double, forKey key: Key) { builder.members.append((key.stringValue, .number(value))) }
    mutating func encode(_ value: Int, forKey key: Key) { builder.members.append((key.stringValue, .number(Double(value)))) }
    mutating func encode(_ value: UInt64, forKey key: Key) { builder.members.append((key.stringValue, .number(Double(value)))) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        builder.members.append((key.stringValue, try JSONValueEncoding.encode(value)))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let child = JSONValueEncoding()
        builder.nested.append((key.stringValue, child))
        return child.container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let child = JSONValueEncoding()
        builder.nested.append((key.stringValue, child))
        return child.unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { superEncoder(forKey: Key(stringValue: "super")!) }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let child = JSONValueEncoding()
        builder.nested.append((key.stringValue, child))
        return child
    }
}

struct JSONUnkeyedEncoding: UnkeyedEncodingContainer {
    let builder: JSONArrayBuilder
    var codingPath: [any CodingKey] { [] }
    var count: Int { builder.items.count }

    mutating func encodeNil() { builder.items.append(.null) }
    mutating func encode(_ value: String) { builder.items.append(.string(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws { builder.items.append(try JSONValueEncoding.encode(value)) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        preconditionFailure("herd's wire types do not nest containers inside arrays")
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        preconditionFailure("herd's wire types do not nest containers inside arrays")
    }

    mutating func superEncoder() -> any Encoder {
        preconditionFailure("herd's wire types do not nest encoders inside arrays")
    }
}

struct JSONSingleValueEncoding: SingleValueEncodingContainer {
    let encoder: JSONValueEncoding
    var codingPath: [any CodingKey] { [] }

    mutating func encodeNil() { encoder.slot = .value(.null) }
    mutating func encode(_ value: Bool) { encoder.slot = .value(.bool(value)) }
    mutating func encode(_ value: String) { encoder.slot = .value(.string(value)) }
    mutating func encode(_ value: Double) { encoder.slot = .value(.number(value)) }
    mutating func encode(_ value: Int) { encoder.slot = .value(.number(Double(value))) }
    mutating func encode<T: Encodable>(_ value: T) throws { encoder.slot = .value(try JSONValueEncoding.encode(value)) }
}
