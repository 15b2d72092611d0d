import HerdBounds

/// Appending text to a byte buffer without building intermediate `String`s:
/// for output written on every request (score headers, trace columns).
extension Array where Element == UInt8 {
    /// Appends a literal's bytes.
    @inlinable
    public mutating func append(literal: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    /// Appends `n` in decimal.
    @inlinable
    public mutating func append(decimal n: Int) {
        if n < 0 {
            append(UInt8(ascii: "-"))
            if n == .min {
                append(contentsOf: String(n).utf8.dropFirst())
                return
            }
        }
        let value = n < 0 ? -n : n
        var digits = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        let start = count
        append(contentsOf: repeatElement(UInt8(ascii: "0"), count: digits))
        rest = value
        var i = start + digits - 1
        while rest > 0 {
            self[i] = UInt8(truncatingIfNeeded: rest % 10) &+ 0x30
            rest /= 10
            i -= 1
        }
    }

    /// Appends `value` rounded to a whole number.
    @inlinable
    public mutating func append(rounded value: Double) {
        guard value.isFinite, abs(value) < 9e18 else {
            append(literal: "0")
            return
        }
        append(decimal: Int(saturating: value.rounded()))
    }
}
