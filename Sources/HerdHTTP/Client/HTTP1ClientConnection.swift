import HerdRuntime

/// One keep-alive connection to an upstream, owned by its `UpstreamPool`: the
/// driver of an `HTTP1ClientFlow`. It writes requests, feeds the flow and the
/// parser what the socket reports, delivers the response to the request's
/// task, and keeps one timer armed at the flow's deadline. Loop-thread only.
final class HTTP1ClientConnection: StreamConnectionDelegate, HTTPParserDelegate, HTTPBodySink {
    private let pool: UpstreamPool
    private let stream: StreamConnection
    private let parser: HTTPParser
    private let clock: any LoopClock
    private var timer: DeadlineTimer?
    private var flow: HTTP1ClientFlow
    private var task: HTTPClientTask?
    private var keepAlive = true
    private var isHeadRequest = false
    /// The response being parsed is a 1xx (`100 Continue`): not delivered.
    private var informational = false
    private var scratch: [UInt8] = []
    /// The request body being relayed from its source (an upload), and
    /// whether it goes chunked.
    private var source: (any HTTPBodySource)?
    private var sourceChunked = false
    private var sourceEnded = true
    /// HTTPS: the TLS session every byte goes through, the request written
    /// before its handshake ended, and the plaintext of each read.
    private var tls: TLSSession?
    private var tlsHeld: [UInt8] = []
    private var plain: [UInt8] = []

    init(pool: UpstreamPool) {
        self.pool = pool
        clock = pool.clock
        flow = HTTP1ClientFlow(limits: HTTP1ClientFlow.Limits(pool.configuration))
        stream = StreamConnection(loop: pool.loop, kind: .tcp)
        parser = HTTPParser(kind: .response, maxHeadBytes: pool.configuration.maxHeadBytes)
        parser.delegate = self
        stream.delegate = self
        // One callback for every phase (re-armed without allocating per request).
        timer = DeadlineTimer(clock: clock) { [unowned self] in self.timerFired() }
    }

    /// Keeps the timer at the flow's deadline.
    private func syncTimer() { timer?.follow(flow.deadline) }

    private func timerFired() {
        let expiry = flow.timerFired(now: clock.now)
        if expiry == .idleClose {
            close()
        } else if let error = expiry.error {
            fail(error)
        } else {
            syncTimer()
        }
    }

    func connect(then task: HTTPClientTask) {
        self.task = task
        task.connection = self
        flow.connecting(now: clock.now)
        syncTimer()
        stream.connect(to: pool.address) { [weak self] error in
            guard let self, self.flow.phase == .connecting else { return }
            if let error {
                self.fail(.connectFailed(error))
            } else if let task = self.task {
                if let settings = self.pool.tls {
                    do {
                        let session = try TLSSession(context: settings.context, serverName: settings.serverName)
                        self.tls = session
                        self.stream.write(try session.start())
                    } catch {
                        return self.fail(.tlsFailed("\(error)"))
                    }
                }
                self.send(task, reused: false)
            }
        }
    }

    /// Writes `task`'s request and waits for its response.
    func send(_ task: HTTPClientTask, reused: Bool) {
        self.task = task
        task.connection = self
        task.reusedConnection = reused
        keepAlive = true
        isHeadRequest = task.request.method == "HEAD"
        serialize(task.request)
        task.sentAt = EventLoop.monotonicNanoseconds()
        scratch.withUnsafeBytes { out($0) }
        if scratch.capacity > 2 * HTTP1ClientConnection.scratchKeep { scratch = [] } // not kept large per pooled connection
        if task.request.bodySource == nil, task.request.body.count > HTTP1ClientConnection.scratchKeep {
            task.request.body.withUnsafeBytes { out($0) }
        }
        flow.requestSent(now: clock.now)
        flow.setPaused(task.isPaused, now: clock.now)
        syncTimer()
        if task.isPaused, tls?.handshakeDone ?? true { stream.stopReading() } else { stream.startReading() }
        if let source = task.request.bodySource {
            self.source = source
            sourceChunked = source.totalLength == nil
            sourceEnded = false
            source.attach(self)
        }
    }

    // MARK: A relayed body (HTTPBodySink)

    func write(_ bytes: UnsafeRawBufferPointer) {
        guard source != nil, !sourceEnded, bytes.count > 0 else { return }
        if sourceChunked {
            var line = Array(String(bytes.count, radix: 16).utf8)
            line.appendCRLF()
            line.withUnsafeBytes { out($0) }
            out(bytes)
            HTTP1ClientConnection.crlf.withUnsafeBytes { out($0) }
        } else {
            out(bytes)
        }
    }

    func end() {
        guard source != nil, !sourceEnded else { return }
        sourceEnded = true
        if sourceChunked { HTTP1ClientConnection.lastChunk.withUnsafeBytes { out($0) } }
        // The upstream's time to answer starts when it has the whole upload.
        if flow.phase == .busy, task?.isResponseStarted == false {
            flow.requestSent(now: clock.now)
            syncTimer()
        }
    }

    /// Request bytes to the upstream: as they are, or sealed by TLS (held until its handshake ends).
    private func out(_ bytes: UnsafeRawBufferPointer) {
        guard let tls else { return stream.write(bytes) }
        guard tls.handshakeDone else { return tlsHeld.append(contentsOf: bytes) }
        do {
            stream.write(try tls.seal(bytes))
        } catch {
            fail(.tlsFailed(error.description))
        }
    }

    var pendingBytes: Int { stream.pendingWriteBytes + tlsHeld.count }

    func connectionDidDrain(_ connection: StreamConnection) {
        source?.sinkDrained()
    }

    /// The source may write no more here; a connection whose request body
    /// was cut cannot carry another request.
    private func detachSource() {
        guard let current = source else { return }
        source = nil
        if !sourceEnded { keepAlive = false }
        sourceEnded = true
        current.detach(self)
    }

    private func serialize(_ request: HTTPClientRequest) {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(utf8: request.method)
        scratch.append(32)
        scratch.append(utf8: request.target)
        scratch.append(contentsOf: " HTTP/1.1\r\n".utf8)
        var hasHost = false
        for (i, (name, value)) in request.headers.fields.enumerated() {
            let kind = request.headers.kinds[i]
            if kind?.isManagedByHTTP == true { continue }
            if kind == .host { hasHost = true }
            scratch.appendHeaderLine(name, value)
        }
        if !hasHost { scratch.append(contentsOf: "Host: \(pool.address)\r\n".utf8) }
        let method = request.method
        if let source = request.bodySource {
            if let length = source.totalLength {
                scratch.append(contentsOf: HTTP1ClientConnection.contentLengthPrefix)
                scratch.appendDecimal(length)
                scratch.appendCRLF()
            } else {
                scratch.append(contentsOf: "Transfer-Encoding: chunked\r\n".utf8)
            }
        } else if !request.body.isEmpty || method == "POST" || method == "PUT" || method == "PATCH" {
            scratch.append(contentsOf: HTTP1ClientConnection.contentLengthPrefix)
            scratch.appendDecimal(request.body.count)
            scratch.appendCRLF()
        }
        scratch.appendCRLF()
        // Small bodies go in the same write as the head; large ones are written from their own buffer.
        if request.bodySource == nil, request.body.count <= HTTP1ClientConnection.scratchKeep {
            scratch.append(contentsOf: request.body)
        }
    }

    /// Parks the connection in the pool: reading on, idle timer armed.
    func parkIdle() {
        task = nil
        flow.parked(now: clock.now)
        syncTimer()
        stream.startReading()
    }

    func setReading(_ on: Bool) {
        guard flow.phase == .busy else { return }
        flow.setPaused(!on, now: clock.now)
        syncTimer()
        if on { stream.startReading() } else { stream.stopReading() }
    }

    /// The caller gave up on `task`: the connection cannot be reused mid-response.
    func abandon(_ task: HTTPClientTask) {
        guard self.task === task else { return }
        self.task = nil
        close()
    }

    func close() {
        detachSource()
        guard flow.phase != .closed else { return }
        flow.closed()
        timer?.close()
        timer = nil
        stream.close()
    }

    private func fail(_ error: HTTPClientError) {
        let current = task
        task = nil
        close()
        current?.deliverFailure(error)
    }

    // MARK: Stream events

    func connection(_ connection: StreamConnection, didRead bytes: UnsafeRawBufferPointer) {
        guard let tls else { return received(bytes) }
        plain.removeAll(keepingCapacity: true)
        let wasDone = tls.handshakeDone
        do {
            let reply = try tls.receive(bytes, into: &plain)
            if !reply.isEmpty { stream.write(reply) }
            if !wasDone, tls.handshakeDone, !tlsHeld.isEmpty {
                let held = tlsHeld
                tlsHeld = []
                held.withUnsafeBytes { out($0) }
                if task?.isPaused == true { stream.stopReading() }
            }
        } catch {
            return fail(.tlsFailed(error.description))
        }
        // Handshake records and session tickets carry no plaintext.
        guard !plain.isEmpty else { return }
        plain.withUnsafeBytes { received($0) }
    }

    /// The upstream's plaintext (TLS already removed).
    private func received(_ bytes: UnsafeRawBufferPointer) {
        guard flow.phase == .busy else {
            // Bytes on an idle connection: the upstream misbehaves or says goodbye.
            close()
            return
        }
        flow.bytesReceived(now: clock.now)
        syncTimer()
        var rest = bytes
        while true {
            switch parser.feed(rest) {
            case .needMore:
                return
            case let .messageComplete(consumed):
                if informational {
                    // `100 Continue` and the like: the answer is still to come.
                    informational = false
                    guard consumed < rest.count else { return }
                    rest = UnsafeRawBufferPointer(rebasing: rest[consumed...])
                    continue
                }
                if consumed < rest.count { keepAlive = false } // bytes past the response: do not reuse
                finishResponse()
                return
            case let .failed(failure):
                fail(.invalidResponse("\(failure)"))
                return
            }
        }
    }

    func connection(_ connection: StreamConnection, didEndWith error: UVError?) {
        guard flow.phase == .busy, let task else {
            close()
            return
        }
        switch flow.connectionEnded(cleanly: error == nil, reused: task.reusedConnection, alreadyRetried: task.retriedOnFreshConnection) {
        case .retryOnFreshConnection:
            // A relayed upload cannot be sent again once some of it went.
            guard task.request.bodySource?.isSpent != true else {
                return fail(.connectionLost(error, afterResponseStarted: task.isResponseStarted))
            }
            task.retriedOnFreshConnection = true
            self.task = nil
            close()
            pool.openConnection(for: task)
        case .finishIfCloseDelimited:
            if case .messageComplete = parser.finish() {
                keepAlive = false
                finishResponse()
            } else {
                fail(.connectionLost(error, afterResponseStarted: task.isResponseStarted))
            }
        case .fail:
            fail(.connectionLost(error, afterResponseStarted: task.isResponseStarted))
        }
    }

    func connectionDidClose(_ connection: StreamConnection) {
        detachSource()
        flow.closed()
        timer?.close()
        timer = nil
        if let task {
            self.task = nil
            task.deliverFailure(.connectionLost(nil, afterResponseStarted: task.isResponseStarted))
        }
        pool.connectionDidClose(self)
    }

    private func finishResponse() {
        guard let finished = task else { return }
        task = nil
        detachSource() // an answer before the whole upload: the connection is not reused
        flow.responseFinished()
        if keepAlive, flow.phase == .busy {
            pool.connectionBecameIdle(self)
        } else {
            close()
        }
        syncTimer()
        finished.deliverFinish()
    }

    // MARK: Parser events

    func parser(_ parser: HTTPParser, didParseHead head: HTTPParsedHead) -> HTTPHeadDisposition {
        if (100...199).contains(head.status), head.status != 101 {
            informational = true // not the answer: skipped
            return .readBody
        }
        keepAlive = head.keepAlive
        task?.deliverHead(HTTPResponseHead(
            status: head.status, headers: head.headers, versionMajor: head.versionMajor,
            versionMinor: head.versionMinor, keepAlive: head.keepAlive))
        return isHeadRequest ? .skipBody : .readBody
    }

    func parser(_ parser: HTTPParser, didParseBody bytes: UnsafeRawBufferPointer) -> Bool {
        task?.deliverBody(bytes)
        return true
    }

    func parserDidCompleteMessage(_ parser: HTTPParser) {}

    static let contentLengthPrefix = Array("Content-Length: ".utf8)
    static let crlf: [UInt8] = [13, 10]
    static let lastChunk = Array("0\r\n\r\n".utf8)
    /// Bodies up to this size are copied into the head's buffer (one write).
    static let scratchKeep = 64 * 1024
}
