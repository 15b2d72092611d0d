import HerdRuntime
/// One HTTP/1.1 client connection: parses requests, hands each to the server's
/// handler as an `HTTPExchange`, writes responses in request order, and enforces
/// the server's limits and timeouts. Loop-thread only.
///
/// States: idle (between requests, keep-alive timer) → head (head timer) →
/// body (body idle timer) → responding (no read timer; pipelined bytes are
/// buffered, bounded) → idle again, or closing.
final class HTTP1ServerConnection: StreamConnectionDelegate, HTTPParserDelegate, HTTPExchangeTransport, DrainableConnection, LoopFlushable {
    private enum State { case idle, head, body, responding, closing }

    private let server: HTTPServer
    private let stream: StreamConnection
    private let parser: HTTPParser
    private let timer: LoopTimer
    private let configuration: HTTPServerConfiguration
    private var state = State.idle
    /// The phase the timer was last armed for.
    private var armedPhase = State.idle
    private var exchange: HTTPExchange?
    private var requestComplete = false
    private var keepAlive = true
    private var isHeadRequest = false
    private var isHTTP10 = false
    private var chunkedResponse = false
    private var closeAfterResponse = false
    private var bodyBytes = 0
    private var bodyPaused = false
    private var pendingInput: [UInt8] = []
    private var inParse = false
    private var responseEndedDuringParse = false
    /// Response bytes of this loop iteration, written once by `flushOutput`.
    private var output: [UInt8] = []
    private var flushScheduled = false
    private lazy var peerAddress: SocketAddress? = stream.peerAddress
    private var sniffedPreface = false
    private var isFirstRequest = true

    init(server: HTTPServer, stream: StreamConnection) {
        self.server = server
        self.stream = stream
        self.configuration = server.configuration
        parser = HTTPParser(kind: .request, maxHeadBytes: server.configuration.maxHeadBytes)
        timer = LoopTimer(loop: server.loop)
        output.reserveCapacity(1024)
        parser.delegate = self
        stream.delegate = self
    }

    func start() {
        timer.start(after: configuration.headTimeoutMilliseconds) { [unowned self] in self.timerFired() }
        stream.startReading()
    }

    // MARK: Reading

    func connection(_ connection: StreamConnection, didRead bytes: UnsafeRawBufferPointer) {
        if state == .closing { return } // lingering: discard
        if !sniffedPreface, sniffForH2(bytes) { return }
        if state == .responding || !pendingInput.isEmpty {
            pendingInput.append(contentsOf: bytes)
            if pendingInput.count > configuration.maxPipelinedBytes { stream.stopReading() }
            return
        }
        process(bytes)
        // Answers produced while handling this read leave now, in one write.
        flushOutput()
    }

    /// On a connection's first bytes: decides between HTTP/1.1 and h2 prior
    /// knowledge (the client preface). Returns true when it took the bytes.
    private func sniffForH2(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard configuration.enableH2C else {
            sniffedPreface = true
            return false
        }
        if pendingInput.isEmpty {
            switch H2ServerConnection.classify(bytes) {
            case .http1:
                sniffedPreface = true
                return false
            case .h2:
                sniffedPreface = true
                switchToH2(initial: bytes)
                return true
            case .undecided:
                pendingInput.append(contentsOf: bytes)
                return true
            }
        }
        pendingInput.append(contentsOf: bytes)
        let input = pendingInput
        let verdict = input.withUnsafeBytes { H2ServerConnection.classify($0) }
        if verdict == .undecided { return true }
        sniffedPreface = true
        pendingInput = []
        input.withUnsafeBytes { verdict == .h2 ? switchToH2(initial: $0) : process($0) }
        return true
    }

    private func switchToH2(initial bytes: UnsafeRawBufferPointer) {
        timer.close()
        let h2 = H2ServerConnection(server: server, stream: stream)
        server.adopt(h2, replacing: self)
        h2.start(initial: bytes)
    }

    /// Parses `bytes`, handling as many complete requests as may be answered now.
    private func process(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count, state != .closing {
            if state == .idle { state = .head }
            inParse = true
            responseEndedDuringParse = false
            let outcome = parser.feed(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            inParse = false
            switch outcome {
            case .needMore:
                offset = bytes.count
                if responseEndedDuringParse { afterResponse() }
            case let .messageComplete(consumed):
                offset += consumed
                if responseEndedDuringParse || exchange == nil {
                    afterResponse()
                    if state == .closing { return }
                } else {
                    state = .responding
                    if offset < bytes.count {
                        pendingInput.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset...]))
                        if pendingInput.count > configuration.maxPipelinedBytes { stream.stopReading() }
                    }
                    return
                }
            case let .failed(failure):
                fail(failure)
                return
            }
        }
        armReadTimer()
    }

    /// Arms the read timeout of the phase a read left the request in: the head
    /// timeout counts from the head's first read (a slow head cannot extend it),
    /// the body timeout from the latest body bytes. Other phases leave the timer
    /// as it is (`timerFired` ignores a stale one).
    private func armReadTimer() {
        switch state {
        case .head where armedPhase != .head:
            timer.rearm(after: configuration.headTimeoutMilliseconds)
            armedPhase = .head
        case .body where !bodyPaused:
            timer.rearm(after: configuration.bodyIdleTimeoutMilliseconds)
            armedPhase = .body
        default:
            break
        }
    }

    func parser(_ parser: HTTPParser, didParseHead head: HTTPParsedHead) -> HTTPHeadDisposition {
        isFirstRequest = false
        keepAlive = head.keepAlive && !server.draining
        isHeadRequest = head.method == "HEAD"
        isHTTP10 = head.versionMajor == 1 && head.versionMinor == 0
        requestComplete = false
        chunkedResponse = false
        closeAfterResponse = false
        bodyBytes = 0
        if let length = head.contentLength, length > configuration.maxBodyBytes {
            respondError(413, "request body of \(length) bytes is over the limit of \(configuration.maxBodyBytes) bytes")
            return .abort
        }
        let requestHead = HTTPRequestHead(
            method: head.method, target: head.target, versionMajor: head.versionMajor,
            versionMinor: head.versionMinor, headers: head.headers, keepAlive: keepAlive)
        let exchange = HTTPExchange(head: requestHead, remoteAddress: peerAddress, loop: server.loop, transport: self)
        self.exchange = exchange
        state = .body
        server.handler(exchange)
        if !exchange.isResponseStarted, !exchange.isCancelled, head.versionMinor >= 1,
           head.headers.hasToken("100-continue", in: "Expect"), (head.contentLength ?? 1) > 0 {
            flushOutput()
            stream.write(HTTP1ServerConnection.continueLine)
        }
        return .readBody
    }

    func parser(_ parser: HTTPParser, didParseBody bytes: UnsafeRawBufferPointer) -> Bool {
        bodyBytes += bytes.count
        if bodyBytes > configuration.maxBodyBytes {
            respondError(413, "request body is over the limit of \(configuration.maxBodyBytes) bytes")
            return false
        }
        exchange?.deliverBody(bytes)
        return state != .closing
    }

    func parserDidCompleteMessage(_ parser: HTTPParser) {
        requestComplete = true
        if state == .body { state = .responding }
        armedPhase = .responding
        exchange?.deliverEnd()
    }

    func connection(_ connection: StreamConnection, didEndWith error: UVError?) {
        if state == .closing {
            stream.close()
            return
        }
        if error == nil, exchange == nil, state == .head {
            // EOF in the middle of a head: nothing to answer.
            stream.close()
            return
        }
        state = .closing
        exchange?.cancel()
        exchange = nil
        stream.close()
    }

    func connectionDidDrain(_ connection: StreamConnection) {
        exchange?.deliverWritable()
    }

    func connectionDidClose(_ connection: StreamConnection) {
        state = .closing
        exchange?.cancel()
        exchange = nil
        timer.close()
        server.connectionDidClose(self)
    }

    private func timerFired() {
        switch state {
        case .idle:
            stream.close()
        case .head:
            guard armedPhase == .head else { return }
            respondError(408, "request head not received in time", linger: false)
        case .body:
            guard armedPhase == .body, !bodyPaused else { return }
            if exchange?.isResponseStarted == true {
                exchange?.cancel()
                exchange = nil
                closeNow()
            } else {
                respondError(408, "request body not received in time", linger: false)
            }
        case .closing:
            stream.close()
        case .responding:
            break
        }
    }

    // MARK: Errors

    private func fail(_ failure: HTTPParseFailure) {
        if state == .closing { return }
        if failure == .aborted { return } // already answered (413) or closing
        let message: String = switch failure {
        case .headerTooLarge: "request head is over the limit of \(configuration.maxHeadBytes) bytes"
        case let .ambiguousLength(reason): "ambiguous request length: \(reason)"
        case let .invalid(reason): "malformed HTTP request: \(reason)"
        case .aborted: "aborted"
        }
        respondError(failure.status, message)
    }

    /// Answers an error the server itself detected and closes the connection
    /// (lingering, so that a client still sending sees the answer).
    private func respondError(_ status: Int, _ message: String, linger: Bool = true) {
        let current = exchange
        exchange = nil
        if let current, current.isResponseStarted {
            current.cancel()
            closeNow()
            return
        }
        current?.cancel()
        let (contentType, body) = server.errorBody(status, message)
        var out = Array("HTTP/1.1 \(status) \(HTTPStatus.reason(status))\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n".utf8)
        out.append(contentsOf: server.dates.headerLine)
        out.append(contentsOf: [13, 10])
        out.append(contentsOf: body)
        flushOutput()
        stream.write(out)
        if linger { lingerAndClose() } else { enterClosing(); stream.closeAfterFlush() }
    }

    private func enterClosing() {
        state = .closing
        pendingInput = []
    }

    /// Half-closes after the queued writes and discards input until the client
    /// closes or the linger time ends.
    private func lingerAndClose() {
        enterClosing()
        flushOutput()
        stream.shutdownWrite()
        stream.startReading()
        timer.start(after: configuration.lingerMilliseconds) { [unowned self] in self.stream.close() }
    }

    // MARK: Responding (HTTPExchangeTransport)

    func exchange(_ exchange: HTTPExchange, startResponse head: HTTPResponseHead, contentLength: Int?) {
        guard exchange === self.exchange else { return }
        if server.draining { keepAlive = false }
        let bodyAllowed = !HTTPStatus.forbidsBody(head.status)
        chunkedResponse = contentLength == nil && bodyAllowed && !isHTTP10 && !isHeadRequest
        if contentLength == nil, bodyAllowed, isHTTP10 || isHeadRequest { closeAfterResponse = !isHeadRequest }
        if closeAfterResponse { keepAlive = false }
        output.append(contentsOf: HTTPStatus.statusLine(head.status))
        for (i, (name, value)) in head.headers.fields.enumerated() where head.headers.kinds[i]?.isManagedByHTTP != true {
            output.append(contentsOf: name.utf8)
            output.append(contentsOf: [58, 32])
            output.append(contentsOf: value.utf8)
            output.append(contentsOf: [13, 10])
        }
        if let contentLength, bodyAllowed {
            output.append(contentsOf: HTTP1ServerConnection.contentLengthPrefix)
            output.appendDecimal(contentLength)
            output.append(contentsOf: [13, 10])
        } else if chunkedResponse {
            output.append(contentsOf: "Transfer-Encoding: chunked\r\n".utf8)
        }
        if !keepAlive {
            output.append(contentsOf: "Connection: close\r\n".utf8)
        } else if isHTTP10 {
            output.append(contentsOf: "Connection: keep-alive\r\n".utf8)
        }
        output.append(contentsOf: server.dates.headerLine)
        output.append(contentsOf: [13, 10])
        afterAppend()
    }

    /// Queues response bytes for this iteration's single write; large output
    /// goes at once.
    private func send(_ bytes: [UInt8]) {
        output.append(contentsOf: bytes)
        afterAppend()
    }

    private func send(_ bytes: UnsafeRawBufferPointer) {
        output.append(contentsOf: bytes)
        afterAppend()
    }

    private func afterAppend() {
        if output.count >= 64 * 1024 {
            flushOutput()
        } else if !flushScheduled {
            flushScheduled = true
            server.loop.scheduleFlush(self)
        }
    }

    func flushOutput() {
        flushScheduled = false
        guard !output.isEmpty else { return }
        stream.write(output)
        output.removeAll(keepingCapacity: true)
    }

    func exchange(_ exchange: HTTPExchange, writeBody bytes: UnsafeRawBufferPointer) {
        guard exchange === self.exchange, !isHeadRequest else { return }
        if chunkedResponse {
            output.append(contentsOf: String(bytes.count, radix: 16).utf8)
            output.append(contentsOf: [13, 10])
            output.append(contentsOf: bytes)
            output.append(contentsOf: [13, 10])
            afterAppend()
        } else {
            send(bytes)
        }
    }

    func exchangeDidEnd(_ exchange: HTTPExchange) {
        guard exchange === self.exchange else { return }
        if chunkedResponse { send(HTTP1ServerConnection.lastChunk) }
        if inParse {
            responseEndedDuringParse = true
        } else {
            afterResponse()
        }
    }

    func exchangePendingBytes(_ exchange: HTTPExchange) -> Int { stream.pendingWriteBytes + output.count }

    func exchangeAbort(_ exchange: HTTPExchange) {
        guard exchange === self.exchange else { return }
        self.exchange = nil
        enterClosing()
        flushOutput()
        stream.reset()
    }

    func exchange(_ exchange: HTTPExchange, setBodyPaused paused: Bool) {
        guard exchange === self.exchange, !requestComplete else { return }
        bodyPaused = paused
        if paused {
            stream.stopReading()
        } else {
            stream.startReading()
            armReadTimer()
        }
    }

    /// The current response has ended: close, or get ready for the next request.
    private func afterResponse() {
        exchange = nil
        if state == .closing { return }
        if !keepAlive || closeAfterResponse {
            if requestComplete {
                enterClosing()
                flushOutput()
                stream.closeAfterFlush()
            } else {
                lingerAndClose()
            }
            return
        }
        if !requestComplete {
            // Answered before the body arrived: the rest of the body is unread.
            lingerAndClose()
            return
        }
        state = .idle
        bodyPaused = false
        timer.rearm(after: configuration.keepAliveTimeoutMilliseconds)
        armedPhase = .idle
        if !pendingInput.isEmpty, !inParse {
            server.loop.deferToNextTick { [weak self] in
                guard let self, self.state == .idle, !self.pendingInput.isEmpty else { return }
                let input = self.pendingInput
                self.pendingInput = []
                self.stream.startReading()
                input.withUnsafeBytes { self.process($0) }
            }
        } else {
            stream.startReading()
        }
    }

    // MARK: Draining

    func beginDrain() {
        keepAlive = false
        if state == .idle { closeNow() }
    }

    func closeNow() {
        enterClosing()
        exchange?.cancel()
        exchange = nil
        stream.close()
    }

    static let contentLengthPrefix = Array("Content-Length: ".utf8)
    static let continueLine = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
    static let lastChunk = Array("0\r\n\r\n".utf8)

    /// Headers the server writes itself: length, framing and connection management.
    static func isManagedHeader(_ name: String) -> Bool {
        KnownHeader.classify(name)?.isManagedByHTTP == true
    }
}
