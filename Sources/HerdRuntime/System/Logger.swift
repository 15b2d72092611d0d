#if canImport(Glibc)
import Glibc
#endif

/// Line-oriented logging to stderr: `2026-11-22T10:00:00Z herd-control info message`.
/// One line per request outcome at info; nothing per chunk.
public struct Logger: Sendable {
    public enum Level: Int, Sendable, Comparable {
        case debug, info, warning, error
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        var name: String { ["debug", "info", "warning", "error"][rawValue] }
    }

    public let label: String
    public let minimum: Level

    public init(label: String, minimum: Level = Environment.bool("HERD_DEBUG") ? .debug : .info) {
        self.label = label
        self.minimum = minimum
    }

    /// The current UTC time as `2026-11-22T10:00:00Z`.
    public static func timestamp() -> String { timestamp(secondsSinceEpoch: time(nil)) }

    /// A UTC time (seconds since the epoch) as `2026-11-22T10:00:00Z`.
    public static func timestamp(secondsSinceEpoch seconds: Int) -> String {
        var now = seconds
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A value from outside (a model name, a client's header) made safe for
    /// a log line: control characters, quotes and backslashes escaped
    /// (`\n`, `\"`, `\u{7f}`), invalid UTF-8 shown as U+FFFD, at most
    /// `limit` characters (then `…`). A forged line cannot be written.
    public static func escape(_ value: String, limit: Int = 200) -> String {
        var out = ""
        out.reserveCapacity(min(value.utf8.count, limit) + 2)
        var count = 0
        for scalar in value.unicodeScalars {
            if count >= limit {
                out += "…"
                break
            }
            count += 1
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default:
                if scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    out += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    public func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
    public func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    public func warning(_ message: @autoclosure () -> String) { log(.warning, message()) }
    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }

    public func log(_ level: Level, _ message: @autoclosure () -> String) {
        guard level >= minimum else { return }
        let line = "\(Logger.timestamp()) \(label) \(level.name) \(message())\n"
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
