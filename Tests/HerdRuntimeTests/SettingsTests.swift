import Testing
@testable import HerdRuntime

/// One reader for flags and their HERD_* twins: malformed values are errors
/// naming the setting, durations take units, booleans go both ways.
@Suite struct SettingsTests {
    func reader(_ env: [String: String]) -> SettingsReader { SettingsReader { env[$0] } }

    @Test func durationsTakeUnitsEverywhere() throws {
        for (text, seconds) in [("1", 1.0), ("1.5", 1.5), ("500ms", 0.5), ("2s", 2), ("5m", 300), ("1h", 3_600), (" 3s ", 3)] {
            let value = try reader(["HERD_X": text]).seconds(nil, "x", env: "HERD_X", default: 9, in: 0...86_400)
            #expect(value.value == seconds, "\(text)")
            if !text.hasPrefix(" ") { #expect(Seconds(argument: text)?.value == seconds, "the flag reads \(text) alike") }
        }
        #expect(try reader([:]).seconds(nil, "x", env: "HERD_X", default: 9, in: 0...10).value == 9)
        #expect(try reader(["HERD_X": "5m"]).seconds(Seconds(2), "x", env: "HERD_X", default: 9, in: 0...10).value == 2, "the flag wins")
        #expect(try reader([:]).seconds(Seconds(0.25), "x", env: "HERD_X", default: 9, in: 0...10).milliseconds == 250)
    }

    @Test func malformedAndOutOfRangeValuesNameTheSetting() {
        func error(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch { return "\(error)" }
        }
        for text in ["1x", "abc", "1e300", "-1", "", "1s2", "inf", "nan"] where !text.isEmpty {
            let message = error { _ = try reader(["HERD_ROUTE_TIMEOUT": text]).seconds(nil, "route-timeout", env: "HERD_ROUTE_TIMEOUT", default: 1, in: 0.001...3_600) }
            #expect(message?.contains("HERD_ROUTE_TIMEOUT") == true, "\(text): \(message ?? "accepted")")
        }
        #expect(error { _ = try reader([:]).seconds(Seconds(1e300), "first-byte-timeout", env: "E", default: 1, in: 0.001...86_400) }?
            .contains("--first-byte-timeout") == true)
        #expect(Seconds(argument: "1e300") == nil, "no exponents: 1e300 is not a duration")
        #expect(error { _ = try reader(["HERD_PORT": "x"]).int(nil, "port", env: "HERD_PORT", default: 1, in: 0...65535) }?.contains("HERD_PORT") == true)
        #expect(error { _ = try reader(["HERD_PORT": "70000"]).int(nil, "port", env: "HERD_PORT", default: 1, in: 0...65535) }?.contains("65535") == true)
        #expect(error { _ = try reader([:]).int(-1, "route-tickets", env: "E", default: 1, in: 0...4096) }?.contains("--route-tickets") == true)
        #expect(error { _ = try reader(["HERD_PREWARM": "maybe"]).bool(nil, env: "HERD_PREWARM", default: true) }?.contains("HERD_PREWARM") == true)
        #expect(error { _ = try reader(["HERD_M": "loud"]).choice(nil, "m", env: "HERD_M", default: "a", in: ["a", "b"]) }?.contains("a, b") == true)
        #expect(error { _ = try reader(["HERD_N": "1e400"]).number(nil, "n", env: "HERD_N", default: 1, in: 1...100) }?.contains("HERD_N") == true)
        let long = String(repeating: "z", count: 10_000)
        #expect((error { _ = try reader(["HERD_PORT": long]).int(nil, "port", env: "HERD_PORT", default: 1, in: 0...65535) }?.utf8.count ?? 0) < 200,
                "a value is not echoed whole")
    }

    @Test func booleansBothWays() throws {
        for (text, value) in [("1", true), ("true", true), ("YES", true), ("on", true), ("0", false), ("false", false), ("no", false), ("Off", false)] {
            #expect(try reader(["HERD_PREWARM": text]).bool(nil, env: "HERD_PREWARM", default: !value) == value, "\(text)")
        }
        #expect(try reader(["HERD_PREWARM": "no"]).bool(true, env: "HERD_PREWARM", default: true) == true, "the flag wins")
    }
}
