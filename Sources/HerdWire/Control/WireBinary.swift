/// The compact encoding of the per-request control messages (protocol 2,
/// `ControlProtocol.md`): fields in a fixed order, no names, no escaping.
///
/// - unsigned integer: LEB128 varint (1 byte below 128);
/// - signed integer: zigzag, then varint;
/// - string: varint byte count, then UTF-8 (invalid UTF-8 is repaired on
///   reading: no string off the socket is ever invalid);
/// - double: 8 bytes, little-endian IEEE 754 bits;
/// - bool: one byte, 0 or 1;
/// - optional: one byte, 0 (absent) or 1, then the value;
/// - list: varint count, then the items;
/// - enumeration: one byte, its code.
///
/// Writing appends to the channel's output buffer; reading walks the frame's
/// bytes in place. Neither allocates except for the strings it returns.
extension Array where Element == UInt8 {
    @inlinable
    public mutating func wire(varint value: UInt64) {
        var v = value
        while v >= 0x80 {
            append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        append(UInt8(v))
    }

    @inlinable
    public mutating func wire(int value: Int) {
        let v = Int64(value)
        wire(varint: UInt64(bitPattern: (v << 1) ^ (v >> 63)))
    }

    @inlinable
    public mutating func wire(string value: String) {
        var s = value
        s.withUTF8 { bytes in
            wire(varint: UInt64(clamping: bytes.count))
            append(contentsOf: bytes)
        }
    }

    @inlinable
    public mutating func wire(double value: Double) {
        let bits = value.bitPattern
        for shift in stride(from: 0, to: 64, by: 8) { append(UInt8(truncatingIfNeeded: bits >> UInt64(truncatingIfNeeded: shift))) }
    }

    @inlinable
    public mutating func wire(bool value: Bool) { append(value ? 1 : 0) }

    @inlinable
    public mutating func wire(optionalInt value: Int?) {
        if let value {
            append(1)
            wire(int: value)
        } else {
            append(0)
        }
    }

    @inlinable
    public mutating func wire(optionalDouble value: Double?) {
        if let value {
            append(1)
            wire(double: value)
        } else {
            append(0)
        }
    }

    @inlinable
    public mutating func wire(optionalString value: String?) {
        if let value {
            append(1)
            wire(string: value)
        } else {
            append(0)
        }
    }

    @inlinable
    public mutating func wire(optionalBool value: Bool?) {
        append(value.map { $0 ? 2 : 1 } ?? 0)
    }

    @inlinable
    public mutating func wire(strings values: [String]) {
        wire(varint: UInt64(clamping: values.count))
        for value in values { wire(string: value) }
    }
}

/// Reads one frame's fields in order. Every read checks what is left: a
/// frame that ends early, has bytes left over, or holds a value out of range
/// is a `ControlProtocolError` (its connection is dropped).
public struct WireReader {
    @usableFromInline let bytes: UnsafeRawBufferPointer
    @usableFromInline var at = 0
    /// Names the message in errors.
    public let context: String

    /// Whether every byte has been read (a field added at a message's end is optional).
    public var isAtEnd: Bool { at == bytes.count }

    /// `bytes` must outlive the reader (a frame's bytes, during its callback).
    public init(_ bytes: UnsafeRawBufferPointer, context: String) {
        self.bytes = bytes
        self.context = context
    }

    @usableFromInline
    func fail(_ what: String) -> ControlProtocolError {
        ControlProtocolError("\(context): \(what) at byte \(at)")
    }

    @inlinable
    public mutating func byte() throws(ControlProtocolError) -> UInt8 {
        guard at < bytes.count else { throw fail("ends early") }
        defer { at += 1 }
        return bytes[at]
    }

    @inlinable
    public mutating func varint() throws(ControlProtocolError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte()
            guard shift < 64, shift < 63 || b <= 1 else { throw fail("integer too long") }
            value |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return value }
            shift += 7
        }
    }

    @inlinable
    public mutating func int() throws(ControlProtocolError) -> Int {
        let z = try varint()
        return Int(Int64(bitPattern: (z >> 1) ^ (0 &- (z & 1))))
    }

    /// A count or a small quantity: at most what the frame can hold.
    @inlinable
    public mutating func count() throws(ControlProtocolError) -> Int {
        let n = try varint()
        guard n <= UInt64(clamping: bytes.count - at) else { throw fail("count \(n) beyond the frame") }
        return Int(clamping: n)
    }

    @inlinable
    public mutating func string() throws(ControlProtocolError) -> String {
        let n = try count()
        defer { at += n }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[at..<at + n]), as: UTF8.self)
    }

    @inlinable
    public mutating func double() throws(ControlProtocolError) -> Double {
        guard bytes.count - at >= 8 else { throw fail("ends early") }
        var bits: UInt64 = 0
        for i in 0..<8 { bits |= UInt64(bytes[at + i]) << UInt64(truncatingIfNeeded: i * 8) }
        at += 8
        return Double(bitPattern: bits)
    }

    @inlinable
    public mutating func bool() throws(ControlProtocolError) -> Bool {
        switch try byte() {
        case 0: return false
        case 1: return true
        case let b: throw fail("bool \(b)")
        }
    }

    @inlinable
    mutating func present() throws(ControlProtocolError) -> Bool { try bool() }

    @inlinable
    public mutating func optionalInt() throws(ControlProtocolError) -> Int? { try present() ? try int() : nil }

    @inlinable
    public mutating func optionalDouble() throws(ControlProtocolError) -> Double? { try present() ? try double() : nil }

    @inlinable
    public mutating func optionalString() throws(ControlProtocolError) -> String? { try present() ? try string() : nil }

    @inlinable
    public mutating func optionalBool() throws(ControlProtocolError) -> Bool? {
        switch try byte() {
        case 0: return nil
        case 1: return false
        case 2: return true
        case let b: throw fail("optional bool \(b)")
        }
    }

    @inlinable
    public mutating func strings() throws(ControlProtocolError) -> [String] {
        let n = try count()
        var out: [String] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try string()) }
        return out
    }

    /// An enumeration's value by its code.
    @inlinable
    public mutating func code<T: WireEnumeration>(_: T.Type) throws(ControlProtocolError) -> T {
        let b = try byte()
        guard let value = T(wireCode: b) else { throw fail("unknown \(T.self) code \(b)") }
        return value
    }

    /// The frame must be read to its end.
    @inlinable
    public func end() throws(ControlProtocolError) {
        guard at == bytes.count else { throw fail("\(bytes.count - at) bytes left over") }
    }
}

/// An enumeration sent as one byte: its position in `wireOrder` (the order
/// in `ControlProtocol.md`; new cases go last).
public protocol WireEnumeration: Equatable {
    static var wireOrder: [Self] { get }
}

extension WireEnumeration {
    @inlinable
    public var wireCode: UInt8 { UInt8(clamping: Self.wireOrder.firstIndex(of: self) ?? 0) }

    @inlinable
    public init?(wireCode: UInt8) {
        guard Int(wireCode) < Self.wireOrder.count else { return nil }
        self = Self.wireOrder[Int(wireCode)]
    }
}
