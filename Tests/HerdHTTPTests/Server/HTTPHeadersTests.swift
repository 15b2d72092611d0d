import Testing
@testable import HerdHTTP

/// Header look-ups by kind (classified once per field, kept through every
/// change); names of equal length and first letter told apart.
@Suite struct HTTPHeadersTests {
    @Test func namesOfOneLengthAndLetterAreToldApart() {
        #expect(KnownHeader.classify("X-Herd-Node") == .xHerdNode && KnownHeader.classify("x-herd-tags") == .xHerdTags)
        #expect(KnownHeader.classify("X-HERD-NODE") == .xHerdNode && KnownHeader.classify("X-Herd-Cache") == .xHerdCache)
        #expect(KnownHeader.classify("X-Herd-Nope") == nil && KnownHeader.classify("X-Herd-Tag") == nil)
    }

    @Test func kindsFollowEveryChange() {
        var headers: HTTPHeaders = ["Host": "h", "X-Herd-Tags": "a,b"]
        #expect(headers[.xHerdTags] == "a,b" && headers[.xHerdNode] == nil && headers[.host] == "h")
        headers.add("x-herd-node", "gpu")
        #expect(headers[.xHerdNode] == "gpu" && headers["X-Herd-Node"] == "gpu")
        headers.remove("X-Herd-Tags")
        #expect(headers[.xHerdTags] == nil && headers[.xHerdNode] == "gpu")
        headers.set("X-Herd-Node", "cpu")
        #expect(headers[.xHerdNode] == "cpu" && headers.count == 2)
        headers.add("Content-Type", "application/json", kind: .contentType)
        #expect(headers[.contentType] == "application/json")
        headers.remove("content-type")
        #expect(headers[.contentType] == nil && headers[.xHerdNode] == "cpu")
    }

    @Test func listTokensAreFoundCaseInsensitivelyAndPaddedButNotByPrefix() {
        let headers: HTTPHeaders = ["Transfer-Encoding": "gzip,  Chunked\t", "Connection": "keep-alive", "Expect": "", "Connection": ",close,"]
        #expect(headers.hasToken("chunked", in: "transfer-encoding"))
        #expect(headers.hasToken("gzip", in: "Transfer-Encoding"))
        #expect(!headers.hasToken("chunk", in: "Transfer-Encoding") && !headers.hasToken("chunkedx", in: "Transfer-Encoding"))
        #expect(headers.hasToken("close", in: "Connection"), "any field of the name")
        #expect(!headers.hasToken("", in: "Expect") && !headers.hasToken("", in: "Connection"), "an empty element is no token")
        #expect(!headers.hasToken("100-continue", in: "Expect") && !headers.hasToken("chunked", in: "Connection"))
        #expect(headers.hasToken("chunked", in: .transferEncoding) && headers.hasToken("close", in: .connection))
        #expect(!headers.hasToken("chunked", in: .connection) && !headers.hasToken("100-continue", in: .expect))
    }
}
