extension Array where Element == UInt8 {
    /// Appends the decimal digits of `value` (no allocation).
    @inlinable
    mutating func appendDecimal(_ value: Int) {
        if value < 0 {
            append(UInt8(ascii: "-"))
            appendDecimal(-value)
            return
        }
        if value < 10 {
            append(UInt8(truncatingIfNeeded: 48 + value))
            return
        }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = value
        var count = 0
        Swift.withUnsafeMutableBytes(of: &digits) { buffer in
            while n > 0 {
                buffer[19 - count] = UInt8(truncatingIfNeeded: 48 + n % 10)
                n /= 10
                count += 1
            }
            append(contentsOf: buffer[(20 - count)...])
        }
    }
}

extension Array where Element == UInt8 {
    /// Appends a string's UTF-8 bytes in one copy (`withUTF8` reaches the
    /// string's storage, small strings included; the generic UTF8View append
    /// walks it byte by byte).
    @inlinable
    mutating func append(utf8 string: String) {
        var string = string
        string.withUTF8 { append(contentsOf: $0) }
    }

    /// Appends `name: value\r\n`.
    @inlinable
    mutating func appendHeaderLine(_ name: String, _ value: String) {
        append(utf8: name)
        append(58)
        append(32)
        append(utf8: value)
        append(13)
        append(10)
    }

    /// Appends `\r\n`.
    @inlinable
    mutating func appendCRLF() {
        append(13)
        append(10)
    }
}
