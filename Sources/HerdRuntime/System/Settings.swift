import HerdBounds

/// Why a setting cannot be used: names the flag or its `HERD_*` twin, the
/// value given and what it accepts. The process stops at start with it.
public struct SettingError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A duration in seconds as flags and their environment twins take it:
/// a number of seconds (`90`, `1.5`) or a number with a unit (`500ms`,
/// `2s`, `5m`, `1h`). The same grammar everywhere.
public struct Seconds: Equatable, Sendable, CustomStringConvertible {
    public var value: Double

    public init(_ value: Double) { self.value = value }

    /// Parses `text`; nil unless it is a finite, non-negative duration.
    public init?(argument text: String) {
        let units: [(suffix: String, scale: Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3_600)]
        var number = Substring(text)
        var scale = 1.0
        for unit in units where text.hasSuffix(unit.suffix) {
            number = text.dropLast(unit.suffix.count)
            scale = unit.scale
            break
        }
        guard !number.isEmpty, number.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: ".") }),
              let n = Double(number), n.isFinite else { return nil }
        value = n * scale
    }

    /// Milliseconds, clamped (the range check comes first; this never traps).
    public var milliseconds: UInt64 { UInt64(saturating: (value * 1_000).rounded()) }

    public var description: String { "\(value) s" }
}

/// The one reader of settings: a flag when given, else its `HERD_*`
/// environment twin, else the default; each checked against its range. A
/// malformed or out-of-range value is an error naming the setting, never a
/// silent fallback to the default.
public struct SettingsReader {
    let environment: (String) -> String?

    public init(environment: @escaping (String) -> String? = Environment.string) {
        self.environment = environment
    }

    /// An integer within `range`.
    public func int(_ flag: Int?, _ name: String, env: String, default value: Int, in range: ClosedRange<Int>) throws(SettingError) -> Int {
        try optionalInt(flag, name, env: env, in: range) ?? value
    }

    /// An optional integer within `range` (none given: nil).
    public func optionalInt(_ flag: Int?, _ name: String, env: String, in range: ClosedRange<Int>) throws(SettingError) -> Int? {
        try ranged(flag, name, env: env, expected: "a whole number", show: { String($0) }, parse: { Int($0) },
                   within: { range.contains($0) }, range: "\(range.lowerBound) to \(range.upperBound)")
    }

    /// A duration within `range` (seconds).
    public func seconds(_ flag: Seconds?, _ name: String, env: String, default value: Double, in range: ClosedRange<Double>) throws(SettingError) -> Seconds {
        try optionalSeconds(flag, name, env: env, in: range) ?? Seconds(value)
    }

    /// An optional duration within `range` (seconds).
    public func optionalSeconds(_ flag: Seconds?, _ name: String, env: String, in range: ClosedRange<Double>) throws(SettingError) -> Seconds? {
        try ranged(flag, name, env: env, expected: "a duration such as 30, 1.5, 500ms, 2s, 5m or 1h", show: { Self.format($0.value) },
                   parse: { Seconds(argument: $0) }, within: { range.contains($0.value) },
                   range: "\(Self.format(range.lowerBound)) to \(Self.format(range.upperBound)) seconds")
    }

    /// A plain number (not a duration) within `range`.
    public func number(_ flag: Double?, _ name: String, env: String, default value: Double, in range: ClosedRange<Double>) throws(SettingError) -> Double {
        try ranged(flag, name, env: env, expected: "a number", show: { Self.format($0) }, parse: { Double($0).flatMap { $0.isFinite ? $0 : nil } },
                   within: { $0.isFinite && range.contains($0) }, range: "\(Self.format(range.lowerBound)) to \(Self.format(range.upperBound))") ?? value
    }

    /// The flag when given, else its twin parsed by `parse`, else nil; either
    /// one outside `within` is an error naming where it came from.
    private func ranged<T>(_ flag: T?, _ name: String, env: String, expected: String, show: (T) -> String, parse: (String) -> T?,
                           within: (T) -> Bool, range: String) throws(SettingError) -> T? {
        let given: T
        let source: String
        if let flag {
            given = flag
            source = "--\(name) \(show(flag))"
        } else if let text = environment(env) {
            guard let value = parse(text.trimmed) else { throw SettingError("\(env)=\(Self.quoted(text)): expected \(expected)") }
            given = value
            source = "\(env)=\(Self.quoted(text))"
        } else {
            return nil
        }
        guard within(given) else { throw SettingError("\(source): must be from \(range)") }
        return given
    }

    /// A switch: the flag (`--x` / `--no-x`) when given, else its twin
    /// (`1`, `true`, `yes`, `on` / `0`, `false`, `no`, `off`), else the default.
    public func bool(_ flag: Bool?, env: String, default value: Bool) throws(SettingError) -> Bool {
        if let flag { return flag }
        guard let text = environment(env) else { return value }
        switch text.trimmed.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw SettingError("\(env)=\(Self.quoted(text)): expected 1, true, yes, on or 0, false, no, off")
        }
    }

    /// A string (the flag, else its twin, else the default).
    public func string(_ flag: String?, env: String, default value: String) -> String {
        flag ?? environment(env) ?? value
    }

    /// A string that must be one of `choices`.
    public func choice(_ flag: String?, _ name: String, env: String, default value: String, in choices: [String]) throws(SettingError) -> String {
        let given = flag ?? environment(env) ?? value
        guard choices.contains(given) else {
            let source = flag != nil ? "--\(name)" : env
            throw SettingError("\(source)=\(Self.quoted(given)): must be one of \(choices.joined(separator: ", "))")
        }
        return given
    }

    /// A value as it is shown back (bounded: a setting is not a place to echo megabytes).
    static func quoted(_ text: String) -> String {
        "'" + text.truncated(toBytes: 64) + "'"
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(saturating: value)) : String(value)
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    fileprivate var trimmed: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}
