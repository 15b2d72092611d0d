import Testing
@testable import HerdHTTP

/// Records every event of a parser, for comparing parses.
final class RecordingParserDelegate: HTTPParserDelegate {
    var events: [String] = []
    var body: [UInt8] = []

    func parser(_ parser: HTTPParser, didParseHead head: HTTPParsedHead) -> HTTPHeadDisposition {
        let headers = head.headers.map { "\($0.name)=\($0.value)" }.joined(separator: "|")
        events.append("head \(head.method) \(head.target) \(head.versionMajor).\(head.versionMinor) keepAlive=\(head.keepAlive) len=\(head.contentLength.map(String.init) ?? "-") chunked=\(head.isChunked) [\(headers)]")
        return .readBody
    }

    func parser(_ parser: HTTPParser, didParseBody bytes: UnsafeRawBufferPointer) -> Bool {
        body.append(contentsOf: bytes)
        return true
    }

    func parserDidCompleteMessage(_ parser: HTTPParser) {
        events.append("complete body=\(String(decoding: body, as: UTF8.self))")
        body.removeAll()
    }
}

/// Feeds `pieces` one after another, re-feeding what a message boundary left.
func parseAll(_ pieces: [[UInt8]], maxHeadBytes: Int = 32 * 1024) -> (events: [String], failure: HTTPParseFailure?) {
    let parser = HTTPParser(kind: .request, maxHeadBytes: maxHeadBytes)
    let recorder = RecordingParserDelegate()
    parser.delegate = recorder
    for piece in pieces {
        var rest = piece[...]
        while !rest.isEmpty {
            let outcome = rest.withUnsafeBytes { parser.feed($0) }
            switch outcome {
            case .needMore: rest = []
            case let .messageComplete(consumed): rest = rest.dropFirst(consumed)
            case let .failed(failure): return (recorder.events, failure)
            }
        }
    }
    return (recorder.events, nil)
}

@Suite struct HTTPParserTests {
    static let pipelined = Array((
        "POST /api/chat?x=1 HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"model\":\"llama\"}"
        + "POST /api/embed HTTP/1.1\r\nHost: router\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
        + "GET /api/tags HTTP/1.1\r\nHost: router\r\nConnection: close\r\n\r\n"
    ).utf8)

    @Test func wholeInputParsesThreeMessagesInOrder() {
        let (events, failure) = parseAll([Self.pipelined])
        #expect(failure == nil)
        #expect(events.count == 6)
        #expect(events[0].hasPrefix("head POST /api/chat?x=1 1.1 keepAlive=true len=17"))
        #expect(events[1] == "complete body={\"model\":\"llama\"}")
        #expect(events[2].contains("chunked=true"))
        #expect(events[3] == "complete body=hello world")
        #expect(events[4].hasPrefix("head GET /api/tags 1.1 keepAlive=false"))
    }

    @Test func splitAtEveryByteBoundaryParsesIdentically() {
        let (reference, _) = parseAll([Self.pipelined])
        for split in 1..<Self.pipelined.count {
            let (events, failure) = parseAll([Array(Self.pipelined[..<split]), Array(Self.pipelined[split...])])
            #expect(failure == nil, "split at \(split)")
            #expect(events == reference, "split at \(split)")
        }
    }

    @Test func byteByByteParsesIdentically() {
        let (reference, _) = parseAll([Self.pipelined])
        let (events, failure) = parseAll(Self.pipelined.map { [$0] })
        #expect(failure == nil)
        #expect(events == reference)
    }

    @Test func headOverTheLimitFailsWithHeaderTooLarge() {
        let request = Array("GET / HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 2000))\r\n\r\n".utf8)
        #expect(parseAll([request], maxHeadBytes: 1024).failure == .headerTooLarge)
        #expect(parseAll(request.map { [$0] }, maxHeadBytes: 1024).failure == .headerTooLarge)
        #expect(parseAll([request], maxHeadBytes: 4096).failure == nil)
    }

    @Test func contentLengthWithTransferEncodingIsAmbiguous() {
        let request = Array("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".utf8)
        guard case .ambiguousLength = parseAll([request]).failure else {
            Issue.record("expected ambiguousLength")
            return
        }
    }

    @Test func conflictingContentLengthsAreAmbiguous() {
        let request = Array("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".utf8)
        guard case .ambiguousLength = parseAll([request]).failure else {
            Issue.record("expected ambiguousLength")
            return
        }
    }

    @Test func garbageIsInvalid() {
        guard case .invalid = parseAll([Array("\u{1}\u{2}garbage\r\n\r\n".utf8)]).failure else {
            Issue.record("expected invalid")
            return
        }
        guard case .invalid = parseAll([Array("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".utf8)]).failure else {
            Issue.record("expected invalid chunk size")
            return
        }
    }

    @Test func http10WithoutKeepAliveCloses() {
        let (events, _) = parseAll([Array("GET / HTTP/1.0\r\n\r\n".utf8)])
        #expect(events.first?.contains("1.0 keepAlive=false") == true)
        let (events2, _) = parseAll([Array("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".utf8)])
        #expect(events2.first?.contains("1.0 keepAlive=true") == true)
    }
}
