import HerdRuntime
/// One keep-alive connection to an upstream, owned by its `UpstreamPool`.
/// Loop-thread only.
///
/// States: connecting → busy (a request in flight) ⇄ idle (parked in the pool,
/// still reading so that a close by the upstream is noticed at once) → closed.
final class HTTP1ClientConnection: StreamConnectionDelegate, HTTPParserDelegate {
    private enum State { case connecting, busy, idle, closed }

    private let pool: UpstreamPool
    private let stream: StreamConnection
    private let parser: HTTPParser
    private let timer: LoopTimer
    private var state = State.connecting
    private var task: HTTPClientTask?
    private var sawResponseBytes = false
    private var responseComplete = false
    private var keepAlive = true
    private var isHeadRequest = false
    private var scratch: [UInt8] = []

    init(pool: UpstreamPool) {
        self.pool = pool
        stream = StreamConnection(loop: pool.loop, kind: .tcp)
        parser = HTTPParser(kind: .response, maxHeadBytes: pool.configuration.maxHeadBytes)
        timer = LoopTimer(loop: pool.loop)
        parser.delegate = self
        stream.delegate = self
        // One callback for every phase (re-armed without allocating per request).
        timer.start(after: pool.configuration.connectTimeoutMilliseconds) { [unowned self] in self.timerFired() }
    }

    private func timerFired() {
        switch state {
        case .connecting: fail(.connectTimeout)
        case .busy: fail(sawResponseBytes ? .readTimeout : .firstByteTimeout)
        case .idle: close()
        case .closed: break
        }
    }

    func connect(then task: HTTPClientTask) {
        self.task = task
        task.connection = self
        stream.connect(to: pool.address) { [weak self] error in
            guard let self, self.state == .connecting else { return }
            if let error {
                self.fail(.connectFailed(error))
            } else if let task = self.task {
                self.send(task, reused: false)
            }
        }
    }

    /// Writes `task`'s request and waits for its response.
    func send(_ task: HTTPClientTask, reused: Bool) {
        self.task = task
        task.connection = self
        task.reusedConnection = reused
        state = .busy
        sawResponseBytes = false
        responseComplete = false
        keepAlive = true
        isHeadRequest = task.request.method == "HEAD"
        serialize(task.request)
        stream.write(scratch)
        timer.rearm(after: pool.configuration.firstByteTimeoutMilliseconds)
        if task.isPaused { stream.stopReading() } else { stream.startReading() }
    }

    private func serialize(_ request: HTTPClientRequest) {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: request.method.utf8)
        scratch.append(32)
        scratch.append(contentsOf: request.target.utf8)
        scratch.append(contentsOf: " HTTP/1.1\r\n".utf8)
        var hasHost = false
        for (i, (name, value)) in request.headers.fields.enumerated() {
            let kind = request.headers.kinds[i]
            if kind?.isManagedByHTTP == true { continue }
            if kind == .host { hasHost = true }
            scratch.append(contentsOf: name.utf8)
            scratch.append(contentsOf: [58, 32])
            scratch.append(contentsOf: value.utf8)
            scratch.append(contentsOf: [13, 10])
        }
        if !hasHost { scratch.append(contentsOf: "Host: \(pool.address)\r\n".utf8) }
        let method = request.method
        if !request.body.isEmpty || method == "POST" || method == "PUT" || method == "PATCH" {
            scratch.append(contentsOf: "Content-Length: \(request.body.count)\r\n".utf8)
        }
        scratch.append(contentsOf: [13, 10])
        scratch.append(contentsOf: request.body)
    }

    /// Parks the connection in the pool: reading on, idle timer armed.
    func parkIdle() {
        state = .idle
        task = nil
        stream.startReading()
        timer.rearm(after: pool.configuration.idleTimeoutMilliseconds)
    }

    func setReading(_ on: Bool) {
        guard state == .busy else { return }
        if on { stream.startReading() } else { stream.stopReading() }
    }

    /// The caller gave up on `task`: the connection cannot be reused mid-response.
    func abandon(_ task: HTTPClientTask) {
        guard self.task === task else { return }
        self.task = nil
        close()
    }

    func close() {
        guard state != .closed else { return }
        state = .closed
        timer.close()
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
        guard state == .busy else {
            // Bytes on an idle connection: the upstream misbehaves or says goodbye.
            close()
            return
        }
        if !sawResponseBytes {
            sawResponseBytes = true
            if pool.configuration.readIdleTimeoutMilliseconds > 0 {
                timer.rearm(after: pool.configuration.readIdleTimeoutMilliseconds)
            } else {
                timer.stop()
            }
        } else if pool.configuration.readIdleTimeoutMilliseconds > 0 {
            timer.rearm(after: pool.configuration.readIdleTimeoutMilliseconds)
        }
        switch parser.feed(bytes) {
        case .needMore:
            break
        case let .messageComplete(consumed):
            if consumed < bytes.count { keepAlive = false } // bytes past the response: do not reuse
            finishResponse()
        case let .failed(failure):
            fail(.invalidResponse("\(failure)"))
        }
    }

    func connection(_ connection: StreamConnection, didEndWith error: UVError?) {
        guard state == .busy, let task else {
            close()
            return
        }
        if !sawResponseBytes, task.reusedConnection, !task.retriedOnFreshConnection {
            // A pooled connection the upstream had closed: send again on a fresh
            // one; the caller never notices.
            task.retriedOnFreshConnection = true
            self.task = nil
            close()
            pool.openConnection(for: task)
            return
        }
        if sawResponseBytes, error == nil, case .messageComplete = parser.finish() {
            keepAlive = false
            finishResponse()
            return
        }
        fail(.connectionLost(error, afterResponseStarted: task.isResponseStarted))
    }

    func connectionDidClose(_ connection: StreamConnection) {
        state = .closed
        timer.close()
        if let task {
            self.task = nil
            task.deliverFailure(.connectionLost(nil, afterResponseStarted: task.isResponseStarted))
        }
        pool.connectionDidClose(self)
    }

    private func finishResponse() {
        guard let finished = task else { return }
        task = nil
        timer.stop()
        if keepAlive, state == .busy {
            pool.connectionBecameIdle(self)
        } else {
            close()
        }
        finished.deliverFinish()
    }

    // MARK: Parser events

    func parser(_ parser: HTTPParser, didParseHead head: HTTPParsedHead) -> HTTPHeadDisposition {
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

    func parserDidCompleteMessage(_ parser: HTTPParser) {
        responseComplete = true
    }
}
