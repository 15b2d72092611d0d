import HerdRuntime

/// One HTTP/1.1 client connection: the driver of an `HTTP1ServerFlow`. It
/// feeds the flow what the socket and the parser report, hands each request
/// to the server's handler as an `HTTPExchange`, writes responses in request
/// order as the flow frames them, and keeps one timer armed at the flow's
/// deadline. Loop-thread only.
final class HTTP1ServerConnection: StreamConnectionDelegate, HTTPParserDelegate, HTTPExchangeTransport, DrainableConnection, LoopFlushable {
    private let server: HTTPServer
    private let stream: StreamConnection
    private let parser: HTTPParser
    private let clock: any LoopClock
    private var timer: DeadlineTimer?
    private var flow: HTTP1ServerFlow
    private let configuration: HTTPServerConfiguration
    private var exchange: HTTPExchange?
    private var pendingInput: [UInt8] = []
    private var inParse = false
    private var responseEndedDuringParse = false
    /// Response bytes of this loop iteration, written once by `flushOutput`.
    private var output: [UInt8] = []
    private var flushScheduled = false
    private lazy var peerAddress: SocketAddress? = stream.peerAddress
    private lazy var peerHost: String? = peerAddress?.host
    private var sniffedPreface = false

    init(server: HTTPServer, stream: StreamConnection) {
        self.server = server
        self.stream = stream
        self.configuration = server.configuration
        clock = server.clock
        flow = HTTP1ServerFlow(limits: HTTP1ServerFlow.Limits(server.configuration))
        parser = HTTPParser(kind: .request, maxHeadBytes: server.configuration.maxHeadBytes)
        output.reserveCapacity(1024)
        parser.delegate = self
        stream.delegate = self
    }

    var phase: HTTP1ServerFlow.Phase { flow.phase }

    func start() {
        // One callback for the connection's life (re-armed without allocating).
        timer = DeadlineTimer(clock: clock) { [unowned self] in self.timerFired() }
        flow.start(now: clock.now)
        syncTimer()
        stream.startReading()
    }

    /// Keeps the timer at the flow's deadline.
    private func syncTimer() { timer?.follow(flow.deadline) }

    private func timerFired() {
        switch flow.timerFired(now: clock.now) {
        case .none:
            syncTimer()
        case .close:
            stream.close()
        case let .requestTimeout(message):
            respondError(408, message, linger: false)
        case .abortResponse:
            exchange?.cancel()
            exchange = nil
            closeNow()
        }
    }

    // MARK: Reading

    func connection(_ connection: StreamConnection, didRead bytes: UnsafeRawBufferPointer) {
        if flow.phase == .closing { return } // lingering: discard
        if !sniffedPreface, sniffForH2(bytes) { return }
        if flow.phase == .responding || !pendingInput.isEmpty {
            bufferPipelined(bytes)
            return
        }
        process(bytes)
        // Answers produced while handling this read leave now, in one write.
        flushOutput()
    }

    private func bufferPipelined(_ bytes: UnsafeRawBufferPointer) {
        pendingInput.append(contentsOf: bytes)
        if pendingInput.count > configuration.maxPipelinedBytes { stream.stopReading() }
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
        flow.closing()
        timer?.close()
        timer = nil
        let h2 = H2ServerConnection(server: server, stream: stream)
        server.adopt(h2, replacing: self)
        h2.start(initial: bytes)
    }

    /// Parses `bytes`, handling as many complete requests as may be answered now.
    private func process(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count, flow.phase != .closing {
            flow.requestBytes(now: clock.now)
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
                    if flow.phase == .closing { return }
                } else {
                    if offset < bytes.count { bufferPipelined(UnsafeRawBufferPointer(rebasing: bytes[offset...])) }
                    syncTimer()
                    return
                }
            case let .failed(failure):
                fail(failure)
                return
            }
        }
        flow.readProcessed(now: clock.now)
        syncTimer()
    }

    func parser(_ parser: HTTPParser, didParseHead head: HTTPParsedHead) -> HTTPHeadDisposition {
        let verdict = flow.head(HTTP1ServerFlow.Head(isHEAD: head.method == "HEAD", versionMinor: head.versionMinor,
                                                      keepAlive: head.keepAlive, contentLength: head.contentLength),
                                draining: server.draining)
        if case let .tooLarge(message) = verdict {
            respondError(413, message, target: head.target)
            return .abort
        }
        let requestHead = HTTPRequestHead(
            method: head.method, target: head.target, versionMajor: head.versionMajor,
            versionMinor: head.versionMinor, headers: head.headers, keepAlive: flow.keepAlive)
        let exchange = HTTPExchange(head: requestHead, remoteAddress: peerAddress, remoteHost: peerHost, loop: server.loop, transport: self)
        self.exchange = exchange
        server.handler(exchange)
        if HTTP1ServerFlow.wantsContinue(versionMinor: head.versionMinor, expectsContinue: head.headers.hasToken("100-continue", in: .expect),
                                         contentLength: head.contentLength, answered: exchange.isResponseStarted || exchange.isCancelled) {
            flushOutput()
            stream.write(HTTP1ServerConnection.continueLine)
        }
        return .readBody
    }

    func parser(_ parser: HTTPParser, didParseBody bytes: UnsafeRawBufferPointer) -> Bool {
        guard flow.body(bytes.count) else {
            respondError(413, flow.bodyLimitMessage, target: exchange?.head.target)
            return false
        }
        exchange?.deliverBody(bytes)
        return flow.phase != .closing
    }

    func parserDidCompleteMessage(_ parser: HTTPParser) {
        flow.messageComplete()
        exchange?.deliverEnd()
    }

    func connection(_ connection: StreamConnection, didEndWith error: UVError?) {
        flow.closing()
        exchange?.cancel()
        exchange = nil
        stream.close()
    }

    func connectionDidDrain(_ connection: StreamConnection) {
        exchange?.deliverWritable()
    }

    func connectionDidClose(_ connection: StreamConnection) {
        flow.closing()
        exchange?.cancel()
        exchange = nil
        timer?.close()
        timer = nil
        server.connectionDidClose(self)
    }

    // MARK: Errors

    private func fail(_ failure: HTTPParseFailure) {
        if flow.phase == .closing { return }
        if failure == .aborted { return } // already answered (413) or closing
        let message: String = switch failure {
        case .headerTooLarge: "request head is over the limit of \(configuration.maxHeadBytes) bytes"
        case let .ambiguousLength(reason): "ambiguous request length: \(reason)"
        case let .invalid(reason): "malformed HTTP request: \(reason)"
        case .aborted: "aborted"
        }
        respondError(failure.status, message, target: parser.lastTarget)
    }

    /// Answers an error the server itself detected and closes the connection
    /// (lingering, so that a client still sending sees the answer). The body
    /// is in the format of the API the request target belongs to.
    private func respondError(_ status: Int, _ message: String, target: String? = nil, linger: Bool = true) {
        let current = exchange
        exchange = nil
        if let current, current.isResponseStarted {
            current.cancel()
            closeNow()
            return
        }
        current?.cancel()
        let (contentType, body) = server.errorBody(status, message, target ?? current?.head.target ?? parser.lastTarget)
        var out = Array("HTTP/1.1 \(status) \(HTTPStatus.reason(status))\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n".utf8)
        out.append(contentsOf: server.dates.headerLine)
        out.appendCRLF()
        out.append(contentsOf: body)
        flushOutput()
        stream.write(out)
        flow.errorAnswered(linger: linger, now: clock.now)
        pendingInput = []
        if linger { lingerAndClose() } else { stream.closeAfterFlush() }
        syncTimer()
    }

    /// Half-closes after the queued writes and discards input until the client
    /// closes or the linger time (the flow's timer) ends.
    private func lingerAndClose() {
        pendingInput = []
        flushOutput()
        stream.shutdownWrite()
        stream.startReading()
    }

    // MARK: Responding (HTTPExchangeTransport)

    func exchange(_ exchange: HTTPExchange, startResponse head: HTTPResponseHead, contentLength: Int?) {
        guard exchange === self.exchange else { return }
        let framing = flow.responseStarts(status: head.status, contentLength: contentLength, draining: server.draining)
        output.append(contentsOf: HTTPStatus.statusLine(head.status))
        for (i, (name, value)) in head.headers.fields.enumerated() where head.headers.kinds[i]?.isManagedByHTTP != true {
            output.appendHeaderLine(name, value)
        }
        if let length = framing.contentLength {
            output.append(contentsOf: HTTP1ServerConnection.contentLengthPrefix)
            output.appendDecimal(length)
            output.appendCRLF()
        } else if framing.chunked {
            output.append(contentsOf: HTTP1ServerConnection.chunkedLine)
        }
        switch framing.connection {
        case .close: output.append(contentsOf: HTTP1ServerConnection.closeLine)
        case .keepAlive: output.append(contentsOf: HTTP1ServerConnection.keepAliveLine)
        case .none: break
        }
        output.append(contentsOf: server.dates.headerLine)
        output.appendCRLF()
        afterAppend()
    }

    /// Queues response bytes for this iteration's single write; large output
    /// goes at once.
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
        guard exchange === self.exchange, flow.writesBody else { return }
        if flow.isChunked {
            output.append(contentsOf: String(bytes.count, radix: 16).utf8)
            output.appendCRLF()
            output.append(contentsOf: bytes)
            output.appendCRLF()
        } else {
            output.append(contentsOf: bytes)
        }
        afterAppend()
    }

    func exchangeDidEnd(_ exchange: HTTPExchange) {
        guard exchange === self.exchange else { return }
        if flow.isChunked, flow.writesBody {
            output.append(contentsOf: HTTP1ServerConnection.lastChunk)
            afterAppend()
        }
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
        flow.closing()
        pendingInput = []
        flushOutput()
        stream.reset()
    }

    func exchange(_ exchange: HTTPExchange, limitSendBuffer bytes: Int) {
        guard exchange === self.exchange else { return }
        try? stream.setSendBuffer(bytes: bytes)
    }

    func exchange(_ exchange: HTTPExchange, setBodyPaused paused: Bool) {
        guard exchange === self.exchange, !flow.requestComplete else { return }
        flow.setBodyPaused(paused, now: clock.now)
        if paused { stream.stopReading() } else { stream.startReading() }
        syncTimer()
    }

    /// The current response has ended: close, or get ready for the next request.
    private func afterResponse() {
        exchange = nil
        switch flow.responseEnded(now: clock.now) {
        case .none:
            return
        case .closeAfterFlush:
            pendingInput = []
            flushOutput()
            stream.closeAfterFlush()
        case .linger:
            lingerAndClose()
        case .nextRequest:
            if !pendingInput.isEmpty, !inParse {
                // Pipelined requests are parsed on the next tick, never inside
                // the handler's own call.
                server.loop.deferToNextTick { [weak self] in
                    guard let self, self.flow.phase == .idle, !self.pendingInput.isEmpty else { return }
                    let input = self.pendingInput
                    self.pendingInput = []
                    self.stream.startReading()
                    input.withUnsafeBytes { self.process($0) }
                    self.flushOutput()
                }
            } else {
                stream.startReading()
            }
        }
        syncTimer()
    }

    // MARK: Draining

    func beginDrain() {
        if flow.drain() { closeNow() }
    }

    func closeNow() {
        flow.closing()
        pendingInput = []
        exchange?.cancel()
        exchange = nil
        stream.close()
    }

    static let contentLengthPrefix = Array("Content-Length: ".utf8)
    static let chunkedLine = Array("Transfer-Encoding: chunked\r\n".utf8)
    static let closeLine = Array("Connection: close\r\n".utf8)
    static let keepAliveLine = Array("Connection: keep-alive\r\n".utf8)
    static let continueLine = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
    static let lastChunk = Array("0\r\n\r\n".utf8)

    /// Headers the server writes itself: length, framing and connection management.
    static func isManagedHeader(_ name: String) -> Bool {
        KnownHeader.classify(name)?.isManagedByHTTP == true
    }
}
