import HerdJSON
import HerdWire
import Testing
@testable import herd_proxy

/// The edge validator: every field herd reads has a type, a range and a
/// length; outside them a 400 names the field and the limit.
@Suite struct RequestLimitsTests {
    func read(_ json: String, _ endpoint: Endpoint = .chat, fallbacks: [String] = [], tags: [String] = [],
              session: String? = nil) throws(RouteFields.Invalid) -> RouteFields {
        try RouteFields.read(Array(json.utf8), endpoint: endpoint, headerFallbacks: fallbacks, headerTags: tags, headerSession: session)
    }

    func refusal(_ json: String, _ endpoint: Endpoint = .chat, fallbacks: [String] = [], tags: [String] = [], session: String? = nil) -> String? {
        do {
            _ = try read(json, endpoint, fallbacks: fallbacks, tags: tags, session: session)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func absurdNumbersAreRefusedNamingTheFieldAndTheLimit() {
        for value in ["1e14", "100000000000000", "-4096", "0", "4096.5", "1e300", "\"4096\"", "true"] {
            let message = refusal(#"{"model":"m","options":{"num_ctx":\#(value)}}"#)
            #expect(message?.contains("options.num_ctx") == true && message?.contains("16777216") == true, "num_ctx \(value): \(message ?? "accepted")")
        }
        #expect(refusal(#"{"model":"m","options":{"num_predict":1e300}}"#)?.contains("options.num_predict") == true)
        #expect(refusal(#"{"model":"m","options":{"num_predict":-3}}"#)?.contains("options.num_predict") == true)
        #expect(refusal(#"{"model":"m","max_tokens":-1}"#, .openAIChat)?.contains("max_tokens") == true)
        #expect(refusal(#"{"model":"m","max_completion_tokens":1.5}"#, .openAIChat)?.contains("max_completion_tokens") == true)
        #expect(refusal(#"{"model":"m","keep_alive":1e300}"#)?.contains("keep_alive") == true)
        #expect(refusal(#"{"model":"m","keep_alive":"5 minutes please"}"#)?.contains("keep_alive") == true)
        #expect(refusal(#"{"model":"m","options":[]}"#)?.contains("options") == true)
        #expect(refusal(#"{"model":"m","think":"very"}"#)?.contains("think") == true)
        #expect(refusal(#"{"model":"m","images":[\#(Array(repeating: "\"a\"", count: 65).joined(separator: ","))]}"#, .generate)?
            .contains("images") == true)
    }

    @Test func goodValuesAtTheEdgesPass() throws {
        let fields = try read(#"{"model":"m","options":{"num_ctx":16777216,"num_predict":-2},"keep_alive":"-1","think":"high"}"#)
        #expect(fields.numCtx == 16_777_216 && fields.maxTokens == nil && fields.think == true)
        #expect(try read(#"{"model":"m","options":{"num_ctx":1,"num_predict":-1},"keep_alive":300}"#).numCtx == 1)
        #expect(try read(#"{"model":"m","max_tokens":0,"keep_alive":"1h30m"}"#, .openAIChat).maxTokens == nil)
        #expect(try read(#"{"model":"m","options":{"num_ctx":null},"max_tokens":null}"#).numCtx == nil)
        let longest = String(repeating: "a", count: 256)
        #expect(try read(#"{"model":"\#(longest)","fallback_models":[\#(Array(repeating: "\"f\"", count: 8).joined(separator: ","))]}"#).fallbacks.count == 8)
    }

    @Test func stringsAndListsAreBounded() {
        let huge = String(repeating: "x", count: 5 * 1024 * 1024)
        let model = refusal(#"{"model":"\#(huge)"}"#)
        #expect(model?.contains("1–256 bytes") == true && (model?.utf8.count ?? .max) < 200, "the name is not echoed: \(model?.prefix(200) ?? "")")
        #expect(refusal(#"{"model":"a\u0000b"}"#)?.contains("control characters") == true)
        #expect(refusal(#"{"model":"m","fallback_models":[\#(Array(repeating: "\"f\"", count: 9).joined(separator: ","))]}"#)?
            .contains("at most 8") == true)
        #expect(refusal(#"{"model":"m"}"#, fallbacks: Array(repeating: "f", count: 9))?.contains("at most 8") == true)
        #expect(refusal(#"{"model":"m","fallback_models":["\#(String(repeating: "f", count: 257))"]}"#)?.contains("fallback_models") == true)
        #expect(refusal(#"{"model":"m","metadata":{"tags":[\#(Array(repeating: "\"t\"", count: 17).joined(separator: ","))]}}"#)?
            .contains("at most 16") == true)
        #expect(refusal(#"{"model":"m","user":"u"}"#, tags: Array(repeating: "t", count: 16))?.contains("at most 16") == true)
        #expect(refusal(#"{"model":"m","metadata":{"tags":["\#(String(repeating: "t", count: 257))"]}}"#)?.contains("tag") == true)
        #expect(refusal(#"{"model":"m","user":"\#(String(repeating: "u", count: 252))"}"#, .openAIChat)?.contains("user") == true)
        #expect(refusal(#"{"model":"m","metadata":"x"}"#)?.contains("metadata") == true)
        #expect(refusal(#"{"model":"m"}"#, session: String(repeating: "s", count: 257))?.contains("X-Herd-Session") == true)
    }

    /// Whatever the validator lets through, control's reader takes: the
    /// proxy can never build a ROUTE that drops its control link.
    @Test func whatPassesTheEdgeIsAFrameControlReads() throws {
        let model = String(repeating: "m", count: 256)
        let fallbacks = Array(repeating: "\"" + String(repeating: "f", count: 256) + "\"", count: 8).joined(separator: ",")
        let tags = Array(repeating: "\"" + String(repeating: "t", count: 256) + "\"", count: 15).joined(separator: ",")
        let user = String(repeating: "u", count: 251)
        let fields = try read(#"{"model":"\#(model)","options":{"num_ctx":16777216,"num_predict":16777216},"fallback_models":[\#(fallbacks)],"metadata":{"tags":[\#(tags)]},"user":"\#(user)"}"#, .openAIChat)
        let route = RouteRequest(id: 1, api: .openai, path: Endpoint.openAIChat.rawValue, model: fields.model, stream: fields.stream,
                                 fallbacks: fields.fallbacks, tags: fields.tags, estimatedTokens: 64 * 1024 * 1024 / 4, numCtx: fields.numCtx,
                                 client: "c#" + String(repeating: "0", count: 12), maxTokens: fields.maxTokens, think: fields.think)
        #expect(RequestLimits.check(route) == nil)
        let bytes = route.binary
        let back = try bytes.withUnsafeBytes { try RouteRequest(binary: $0, context: "route") }
        #expect(back == route)
    }

    @Test func theErrorIsInTheClientsShape() throws {
        let message = refusal(#"{"model":"m","options":{"num_ctx":1e14}}"#) ?? ""
        let ollama = try JSONValue.parse(ClientError.badRequest(message).body(for: .ollama))
        #expect(ollama["error"]?.stringValue?.contains("options.num_ctx") == true)
        let openAI = try JSONValue.parse(ClientError.badRequest(message).body(for: .openai))
        #expect(openAI["error"]?["type"]?.stringValue == "invalid_request_error")
        #expect(openAI["error"]?["message"]?.stringValue?.contains("(got 100000000000000)") == true)
    }
}
