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
}
