import Testing
@testable import HerdJSON

@Suite struct JSONTests {
    @Test func parsesAndWritesRoundTrip() throws {
        let text = #"{"model":"llama3:8b","stream":false,"options":{"num_ctx":8192,"temperature":0.7},"messages":[{"role":"user","content":"hi \"there\"\n\u00e9\ud83d\ude00"}],"n":null,"neg":-1.5e3}"#
        let value = try JSONValue.parse(text)
        #expect(value["model"]?.stringValue == "llama3:8b")
        #expect(value["stream"]?.boolValue == false)
        #expect(value["options"]?["num_ctx"]?.intValue == 8192)
        #expect(value["options"]?["temperature"]?.doubleValue == 0.7)
        #expect(value["messages"]?.arrayValue?.first?["content"]?.stringValue == "hi \"there\"\né😀")
        #expect(value["n"] == .null)
        #expect(value["neg"]?.doubleValue == -1500)
        #expect(try JSONValue.parse(value.serialized()) == value)
    }

    @Test(arguments: ["", "{", "{\"a\":}", "[1,]", "{\"a\":1,}", "01", "1.", "\"\\x\"", "\"\u{1}\"", "tru", "{} x", "\"\\ud800\"", "{'a':1}"])
    func rejectsMalformedInput(text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    /// JSON is UTF-8: a string with bytes that are not is refused, not repaired into U+FFFD.
    @Test func refusesInvalidUTF8InStrings() {
        for bytes: [UInt8] in [[0x22, 0x61, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0x5C, 0x6E, 0xED, 0xA0, 0x80, 0x22]] {
            #expect(throws: JSONParseError.self) { try JSONValue.parse(bytes) }
        }
        #expect((try? JSONValue.parse(Array("\"caf\u{e9}\"".utf8)))?.stringValue == "caf\u{e9}")
    }

    @Test func limitsNesting() {
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(deep) }
        let ok = String(repeating: "[", count: 50) + String(repeating: "]", count: 50)
        #expect(throws: Never.self) { try JSONValue.parse(ok) }
    }

    @Test func escapesControlCharactersWhenWriting() {
        #expect(JSONValue.string("a\u{1}b\t\"\\").serialized() == #""a\u0001b\t\"\\""#)
        #expect(JSONText.object(["error": "model 'x' not found"]) == #"{"error":"model 'x' not found"}"#)
        #expect(JSONValue.number(3).serialized() == "3")
        #expect(JSONValue.number(0.25).serialized() == "0.25")
    }

    @Test func integersAreExactAndOthersGoThroughTheTextConversion() throws {
        #expect(try JSONValue.parse("123456789012345").doubleValue == 123_456_789_012_345)
        #expect(try JSONValue.parse("-42").intValue == -42)
        #expect(try JSONValue.parse("12345678901234567890").doubleValue == 12345678901234567890.0, "beyond 15 digits: strtod's rounding")
        #expect(try JSONValue.parse("2.5e3").doubleValue == 2500)
        #expect(try JSONValue.parse("0").doubleValue == 0)
    }

    /// Keys are matched on their bytes; escaped keys are decoded first.
    @Test func topLevelPicksOnlyTheNamedMembers() throws {
        let text = Array(#"{"model":"m","model2":1,"messages":[{"role":"user"}],"modelx":3,"model":"escaped wins last"}"#.utf8)
        var spans: [String: Range<Int>] = [:]
        let fields = try text.withUnsafeBytes { raw in
            try JSONValue.parseTopLevel(raw, keys: ["model", "model2"], spans: ["messages"], spanRanges: &spans)
        }
        #expect(fields["model"] == "escaped wins last")
        #expect(fields["model2"] == 1)
        #expect(fields["modelx"] == nil)
        let messages = try #require(spans["messages"])
        #expect(String(decoding: text[messages], as: UTF8.self) == #"[{"role":"user"}]"#)
        let elements = text.withUnsafeBytes { JSONValue.arrayElementSpans($0, in: messages, limit: 5) }
        #expect(elements.map { String(decoding: text[$0], as: UTF8.self) } == [#"{"role":"user"}"#])
        #expect(throws: JSONParseError.self) {
            try Array(#"{"a":1,}"#.utf8).withUnsafeBytes { raw in try JSONValue.parseTopLevel(raw, keys: ["a"]) }
        }
    }

    @Test func decimalsWrittenWithoutStrings() {
        for n in [0, 7, 10, 99, 100, 12345, -42, Int.max, Int.min] {
            var out: [UInt8] = []
            out.append(decimal: n)
            #expect(String(decoding: out, as: UTF8.self) == String(n))
        }
        var out: [UInt8] = []
        out.append(literal: "x=")
        out.append(rounded: 2.5)
        out.append(rounded: .nan)
        #expect(String(decoding: out, as: UTF8.self) == "x=30")
    }
}
