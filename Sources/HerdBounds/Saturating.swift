/// Conversions and sums that never trap, for numbers that come from outside
/// (clients, heartbeats, backend responses, flags, the environment): a
/// floating-point value made an integer clamps to the integer's range (NaN
/// is 0), and a sum or product stops at the type's bounds.
/// `.ci/check-conversions.sh` finds the trapping forms these replace.

extension Int {
    /// `value` toward zero, clamped to `Int`'s range; NaN is 0.
    @inlinable
    public init(saturating value: Double) {
        if value.isNaN {
            self = 0
        } else if value >= 9_223_372_036_854_775_807 {
            self = .max
        } else if value <= -9_223_372_036_854_775_808 {
            self = .min
        } else {
            self = Int(exactly: value.rounded(.towardZero)) ?? 0
        }
    }

    /// `value` rounded to the nearest integer, clamped; NaN is 0.
    @inlinable
    public init(saturatingRounded value: Double) {
        self.init(saturating: value.rounded())
    }

    /// `self + other`, stopping at `Int.max` / `Int.min`.
    @inlinable
    public func addingSaturated(_ other: Int) -> Int {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// `self - other`, stopping at `Int.max` / `Int.min`.
    @inlinable
    public func subtractingSaturated(_ other: Int) -> Int {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other < 0 ? .max : .min) : difference
    }

    /// `self * other`, stopping at `Int.max` / `Int.min`.
    @inlinable
    public func multipliedSaturated(by other: Int) -> Int {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? ((self < 0) == (other < 0) ? .max : .min) : product
    }

    /// `self` within `range`.
    @inlinable
    public func clamped(to range: ClosedRange<Int>) -> Int { Swift.min(Swift.max(self, range.lowerBound), range.upperBound) }
}

extension Int64 {
    /// `value` toward zero, clamped to `Int64`'s range; NaN is 0.
    @inlinable
    public init(saturating value: Double) { self = Int64(Int(saturating: value)) }
}

extension UInt64 {
    /// `value` toward zero, clamped to `UInt64`'s range (negative is 0); NaN is 0.
    @inlinable
    public init(saturating value: Double) {
        if value.isNaN || value <= 0 {
            self = 0
        } else if value >= 18_446_744_073_709_551_615 {
            self = .max
        } else {
            self = UInt64(exactly: value.rounded(.towardZero)) ?? 0
        }
    }

    /// `self + other`, stopping at `UInt64.max`.
    @inlinable
    public func addingSaturated(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }

    /// `self * other`, stopping at `UInt64.max`.
    @inlinable
    public func multipliedSaturated(by other: UInt64) -> UInt64 {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? .max : product
    }
}

extension Int32 {
    /// `value` toward zero, clamped to `Int32`'s range; NaN is 0.
    @inlinable
    public init(saturating value: Double) { self = Int32(clamping: Int(saturating: value)) }
}

extension Double {
    /// `self` when finite, else `fallback` (a NaN or infinity from outside goes no further).
    @inlinable
    public func finite(or fallback: Double) -> Double { isFinite ? self : fallback }

    /// `self` within `range`; NaN is the range's lower bound.
    @inlinable
    public func clamped(to range: ClosedRange<Double>) -> Double {
        isNaN ? range.lowerBound : Swift.min(Swift.max(self, range.lowerBound), range.upperBound)
    }
}

extension String {
    /// At most `maxBytes` bytes of UTF-8, cut at a character boundary (`…` marks a cut).
    public func truncated(toBytes maxBytes: Int) -> String {
        guard utf8.count > maxBytes else { return self }
        var out = ""
        var used = 0
        for character in self {
            let size = character.utf8.count
            if used + size > maxBytes - 3 { break }
            out.append(character)
            used += size
        }
        return out + "…"
    }
}
