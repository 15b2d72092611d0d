/// The value a wire field takes when it is absent or `null`.
public protocol WireDefault {
    associatedtype Value: Codable & Sendable & Equatable
    static var value: Value { get }
}

/// A `Codable` field that may be left out on the wire (older senders, fields
/// that are usually empty): decoded as `D.value` when absent or `null`,
/// always encoded.
@propertyWrapper
public struct Defaulted<D: WireDefault>: Codable, Sendable, Equatable {
    public var wrappedValue: D.Value

    @inlinable public init(wrappedValue: D.Value) { self.wrappedValue = wrappedValue }

    @inlinable public init(from decoder: any Decoder) throws { wrappedValue = try D.Value(from: decoder) }

    @inlinable public func encode(to encoder: any Encoder) throws { try wrappedValue.encode(to: encoder) }
}

extension KeyedDecodingContainer {
    /// Synthesized `init(from:)` decodes a `Defaulted` field through this:
    /// a missing or `null` member takes the default.
    @inlinable
    public func decode<D>(_ type: Defaulted<D>.Type, forKey key: Key) throws -> Defaulted<D> {
        Defaulted(wrappedValue: try decodeIfPresent(D.Value.self, forKey: key) ?? D.value)
    }
}

/// Defaults of the wire types' optional fields.
public enum WireDefaults {
    public enum False: WireDefault { public static var value: Bool { false } }
    public enum True: WireDefault { public static var value: Bool { true } }
    public enum Zero: WireDefault { public static var value: Int { 0 } }
    public enum ZeroInt32: WireDefault { public static var value: Int32 { 0 } }
    public enum ZeroNumber: WireDefault { public static var value: Double { 0 } }
    public enum EmptyString: WireDefault { public static var value: String { "" } }
    public enum EmptyObject: WireDefault { public static var value: JSONValue { [:] } }
    public enum Empty<Element: Codable & Sendable & Equatable>: WireDefault { public static var value: [Element] { [] } }
}

/// A message or record on the wire: `Codable` over `JSONValue`, with errors
/// that name the field under `context` (`route.api must be ollama or openai`).
/// A type on the per-request hot path may replace `json` and `init(json:)`
/// with hand-written ones (its `Codable` form stays the specification, and a
/// test holds the two to the same JSON).
public protocol WireCodable: Codable {
    /// The name a field path starts with in errors (`route`, `heartbeat`, …).
    static var context: String { get }
    /// The JSON this value is sent as.
    var json: JSONValue { get }
    /// Decodes a value of this type from `json`.
    init(json: JSONValue) throws(JSONFieldError)
}

extension WireCodable {
    /// The `Codable` form (what a hand-written `json` must equal).
    public var codableJSON: JSONValue { JSONValueEncoder().encode(self) }

    /// Decodes through `Codable` (what a hand-written `init(json:)` must equal).
    public init(codableJSON json: JSONValue) throws(JSONFieldError) {
        self = try JSONValueDecoder().decode(Self.self, from: json, context: Self.context)
    }

    /// The JSON this value is sent as.
    public var json: JSONValue { JSONValueEncoder().encode(self) }

    /// Decodes a value of this type from `json`.
    public init(json: JSONValue) throws(JSONFieldError) {
        self = try JSONValueDecoder().decode(Self.self, from: json, context: Self.context)
    }
}
