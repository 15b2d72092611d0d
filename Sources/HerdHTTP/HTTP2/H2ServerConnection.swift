import HerdRuntime
internal import CNghttp2

/// One h2c (HTTP/2 with prior knowledge) client connection, driven by nghttp2.
/// Each stream becomes an `HTTPExchange` served by the same handler as HTTP/1.1,
/// streaming included. Its timeouts are an `H2ServerFlow` on the server's
/// clock (one timer). Loop-thread only.
final class H2ServerConnection: StreamConnectionDelegate, HTTPExchangeTransport, DrainableConnection {
    /// The client connection preface that opens every HTTP/2 connection.
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    enum Sniff { case h2, http1, undecided }

    /// Classifies a connection's first bytes.
    static func classify(_ bytes: UnsafeRawBufferPointer) -> Sniff {
        let n = min(bytes.count, preface.count)
        for i in 0..<n where bytes[i] != preface[i] { return .http1 }
        return bytes.count >= preface.count ? .h2 : .undecided
    }

    /// State of one h2 stream.
    final class Stream {
        let id: Int32
        var method = ""
        var path = ""
        var authority: String?
        var headers = HTTPHeaders()
        var headBytes = 0
        var exchange: HTTPExchange?
        var isHead = false
        var output: [UInt8] = []
        var outputOffset = 0
        var ended = false
        var dataDeferred = false
        var bodyBytes = 0
        /// Body bytes received and not yet acknowledged (WINDOW_UPDATE held
        /// back: the connection's bodies are over their budget).
        var heldBytes = 0
        /// Every DATA byte received on this stream (counted in the connection's budget).
        var receivedBytes = 0
        /// The handler paused the body (an upload relayed to a backend that has
        /// not taken the last bytes): nothing is acknowledged, so the client's
        /// stream window closes until it resumes.
        var bodyPaused = false
        /// END_STREAM arrived (or the request was given up on).
        var requestComplete = false
        init(id: Int32) { self.id = id }
        var buffered: Int { output.count - outputOffset }
    }

    private let server: HTTPServer
    private let stream: StreamConnection
    private var session: OpaquePointer?
    private var streams: [Int32: Stream] = [:]
    private var isClosing = false
    private var sendBlocked = false
    private var flow: H2ServerFlow
    private var timer: DeadlineTimer?
    /// Request body bytes of this connection's open streams (in memory until
    /// their responses end). Flow control keeps it near the budget: past it,
    /// received DATA is not acknowledged, so the client's windows close.
    private var bodyBytesInMemory = 0
    private var bodyBudget: Int { server.configuration.maxConnectionBodyBytes }
    /// Above this many unwritten bytes nghttp2 is told to wait (backpressure).
    private static let writeHighWatermark = 256 * 1024

    init(server: HTTPServer, stream: StreamConnection) {
        self.server = server
        self.stream = stream
        flow = H2ServerFlow(limits: H2ServerFlow.Limits(server.configuration))
    }

    func start(initial bytes: UnsafeRawBufferPointer) {
        stream.delegate = self
        timer = DeadlineTimer(clock: server.clock) { [unowned self] in self.timerFired() }
        flow.start(now: server.clock.now)
        syncTimer()
        do throws(H2Error) {
            try startSession()
        } catch {
            // No session (out of memory): nothing can be said in h2; the client sees the close.
            closeNow()
            return
        }
        stream.startReading()
        receive(bytes)
    }

    /// Creates the nghttp2 server session and queues the server's SETTINGS.
    private func startSession() throws(H2Error) {
        var callbacks: OpaquePointer?
        try H2Error.check(nghttp2_session_callbacks_new(&callbacks), "nghttp2_session_callbacks_new")
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_send_callback(callbacks) { _, data, length, _, user in
            H2ServerConnection.owner(user).send(data!, length)
        }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, user in
            let connection = H2ServerConnection.owner(user)
            let id = frame!.pointee.hd.stream_id
            if frame!.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), connection.streams[id] == nil {
                connection.streams[id] = Stream(id: id)
                connection.flow.streamOpened(now: connection.server.clock.now)
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, namelen, value, valuelen, _, user in
            H2ServerConnection.owner(user).header(frame!.pointee.hd.stream_id, name!, namelen, value!, valuelen)
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, user in
            H2ServerConnection.owner(user).frameReceived(frame!)
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, id, data, length, user in
            H2ServerConnection.owner(user).data(id, data!, length)
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, id, _, user in
            H2ServerConnection.owner(user).streamClosed(id)
        }
        // Window updates are ours to send (`consume`): request bodies are flow controlled.
        var option: OpaquePointer?
        try H2Error.check(nghttp2_option_new(&option), "nghttp2_option_new")
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_auto_window_update(option, 1)
        try H2Error.check(nghttp2_session_server_new2(&session, callbacks, Unmanaged.passUnretained(self).toOpaque(), option),
                          "nghttp2_session_server_new")
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: 256),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: 1 << 20),
        ]
        try H2Error.check(nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count), "nghttp2_submit_settings")
    }

    /// Resets one stream (its exchange hears it is cancelled); when even that
    /// fails the connection closes.
    private func reset(_ s: Stream, _ error: UInt32) {
        guard let session else { return }
        do throws(H2Error) {
            try H2Error.check(nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), s.id, error), "nghttp2_submit_rst_stream")
        } catch {
            closeNow()
        }
    }

    /// Says GOAWAY (the last stream processed is still answered); on failure closes.
    private func goAway() -> Bool {
        guard let session else { return false }
        do throws(H2Error) {
            try H2Error.check(nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
                                                    NGHTTP2_NO_ERROR.rawValue, nil, 0), "nghttp2_submit_goaway")
            return true
        } catch {
            closeNow()
            return false
        }
    }

    private static func owner(_ user: UnsafeMutableRawPointer?) -> H2ServerConnection {
        Unmanaged<H2ServerConnection>.fromOpaque(user!).takeUnretainedValue()
    }

    // MARK: I/O

    func connection(_ connection: StreamConnection, didRead bytes: UnsafeRawBufferPointer) {
        receive(bytes)
    }

    private func receive(_ bytes: UnsafeRawBufferPointer) {
        guard !isClosing, let session, let base = bytes.baseAddress else { return }
        let rc = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        if rc < 0 {
            closeNow()
            return
        }
        flow.readProcessed(now: server.clock.now)
        syncTimer()
        flush()
    }

    // MARK: Timeouts

    /// Keeps the timer at the flow's deadline.
    private func syncTimer() { timer?.follow(flow.deadline) }

    private func timerFired() {
        switch flow.timerFired(now: server.clock.now) {
        case .none:
            break
        case .goAway:
            guard !isClosing, goAway() else { return }
            flush()
            isClosing = true
            stream.closeAfterFlush()
        case .timeOutIncompleteRequests:
            let now = server.clock.now
            for s in streams.values.sorted(by: { $0.id < $1.id }) where !s.requestComplete {
                s.requestComplete = true
                flow.requestCompleted(now: now)
                if let exchange = s.exchange, exchange.isResponseStarted {
                    exchangeAbort(exchange)
                    exchange.cancel()
                } else {
                    s.exchange?.cancel() // the handler hears that the request is gone
                    let answer = makeExchange(s)
                    s.exchange = answer
                    let (type, body) = server.errorBody(408, "request body not received in time", s.path)
                    answer.respond(status: 408, headers: ["content-type": type], body: body)
                }
            }
        }
        syncTimer()
    }

    private func makeExchange(_ s: Stream) -> HTTPExchange {
        HTTPExchange(head: HTTPRequestHead(method: s.method, target: s.path, versionMajor: 2, versionMinor: 0, headers: s.headers),
                     remoteAddress: nil, remoteHost: nil, loop: server.loop, transport: self)
    }

    /// Lets nghttp2 write what it has queued, then closes when it has nothing
    /// more to say.
    private func flush() {
        guard !isClosing, let session else { return }
        if nghttp2_session_send(session) != 0 {
            closeNow()
            return
        }
        if nghttp2_session_want_read(session) == 0, nghttp2_session_want_write(session) == 0 {
            isClosing = true
            stream.closeAfterFlush()
        }
    }

    private func send(_ data: UnsafePointer<UInt8>, _ length: Int) -> Int {
        if stream.pendingWriteBytes > H2ServerConnection.writeHighWatermark {
            sendBlocked = true
            return Int(NGHTTP2_ERR_WOULDBLOCK.rawValue)
        }
        stream.write(UnsafeRawBufferPointer(start: data, count: length))
        return length
    }

    func connection(_ connection: StreamConnection, didEndWith error: UVError?) {
        closeNow()
    }

    func connectionDidDrain(_ connection: StreamConnection) {
        if sendBlocked {
            sendBlocked = false
            flush()
        }
        for s in streams.values { s.exchange?.deliverWritable() }
    }

    func connectionDidClose(_ connection: StreamConnection) {
        isClosing = true
        timer?.close()
        timer = nil
        let open = streams.values
        streams.removeAll()
        for s in open { s.exchange?.cancel() }
        if let session { nghttp2_session_del(session) }
        session = nil
        server.connectionDidClose(self)
    }

    // MARK: Request side

    private func header(_ id: Int32, _ name: UnsafePointer<UInt8>, _ nameLength: Int, _ value: UnsafePointer<UInt8>, _ valueLength: Int) -> Int32 {
        guard let s = streams[id] else { return 0 }
        s.headBytes += nameLength + valueLength + 4
        if s.headBytes > server.configuration.maxHeadBytes {
            return Int32(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        let n = String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self)
        let v = String(decoding: UnsafeBufferPointer(start: value, count: valueLength), as: UTF8.self)
        switch n {
        case ":method": s.method = v
        case ":path": s.path = v
        case ":authority": s.authority = v
        case ":scheme": break
        default: s.headers.add(n, v)
        }
        return 0
    }

    private func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let hd = frame.pointee.hd
        guard let s = streams[hd.stream_id] else { return 0 }
        let endStream = (hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue)) != 0
        if hd.type == UInt8(NGHTTP2_HEADERS.rawValue), s.exchange == nil, !s.method.isEmpty {
            dispatch(s)
        }
        if endStream, !s.requestComplete {
            s.requestComplete = true
            flow.requestCompleted(now: server.clock.now)
            s.exchange?.deliverEnd()
        }
        return 0
    }

    private func dispatch(_ s: Stream) {
        if let authority = s.authority, !s.headers.contains("host") { s.headers.add("host", authority) }
        s.isHead = s.method == "HEAD"
        if let length = s.headers["content-length"].flatMap({ Int($0) }), length > server.configuration.maxBodyBytes {
            let exchange = makeExchange(s)
            s.exchange = exchange
            s.requestComplete = true // answered: the rest of the body does not matter
            flow.requestCompleted(now: server.clock.now)
            let (type, body) = server.errorBody(413, "request body of \(length) bytes is over the limit of \(server.configuration.maxBodyBytes) bytes", s.path)
            exchange.respond(status: 413, headers: ["content-type": type], body: body)
            return
        }
        let head = HTTPRequestHead(method: s.method, target: s.path, versionMajor: 2, versionMinor: 0, headers: s.headers, keepAlive: true)
        let exchange = HTTPExchange(head: head, remoteAddress: stream.peerAddress, remoteHost: stream.peerAddress?.host, loop: server.loop, transport: self)
        s.exchange = exchange
        server.handler(exchange)
    }

    private func data(_ id: Int32, _ data: UnsafePointer<UInt8>, _ length: Int) -> Int32 {
        guard let s = streams[id] else {
            consume(id, length)
            return 0
        }
        // Acknowledged while the connection's bodies fit the budget, else held
        // until a stream closes.
        s.receivedBytes += length
        bodyBytesInMemory += length
        if !s.bodyPaused, bodyBytesInMemory <= bodyBudget, s.heldBytes == 0 { consume(id, length) } else { s.heldBytes += length }
        guard let exchange = s.exchange else { return 0 }
        s.bodyBytes += length
        if s.bodyBytes > server.configuration.maxBodyBytes {
            if !exchange.isResponseStarted {
                let (type, body) = server.errorBody(413, "request body is over the limit of \(server.configuration.maxBodyBytes) bytes", s.path)
                exchange.respond(status: 413, headers: ["content-type": type], body: body)
            }
            reset(s, NGHTTP2_CANCEL.rawValue)
            return 0
        }
        exchange.deliverBody(UnsafeRawBufferPointer(start: data, count: length))
        return 0
    }

    private func streamClosed(_ id: Int32) -> Int32 {
        if let s = streams.removeValue(forKey: id) {
            flow.streamClosed(requestWasComplete: s.requestComplete, now: server.clock.now)
            releaseBody(of: s)
            s.exchange?.cancel()
        }
        return 0
    }

    /// Tells nghttp2 the application consumed `length` bytes of `id` (it sends
    /// WINDOW_UPDATE when enough are); a closed stream's count only for the connection.
    private func consume(_ id: Int32, _ length: Int) {
        guard let session, length > 0 else { return }
        _ = nghttp2_session_consume(session, id, length)
    }

    /// A closed stream's body leaves memory: acknowledge what it held, then
    /// what other streams held, while they fit the budget again.
    private func releaseBody(of closed: Stream) {
        bodyBytesInMemory -= closed.receivedBytes
        consume(closed.id, closed.heldBytes)
        closed.heldBytes = 0
        // Nearly always nothing is held: no sort per closed stream then.
        guard bodyBytesInMemory <= bodyBudget, streams.values.contains(where: { $0.heldBytes > 0 }) else { return }
        for s in streams.values.sorted(by: { $0.id < $1.id }) where s.heldBytes > 0 && !s.bodyPaused {
            consume(s.id, s.heldBytes)
            s.heldBytes = 0
        }
    }

    // MARK: Response side (HTTPExchangeTransport)

    private func stream(for exchange: HTTPExchange) -> Stream? {
        streams.values.first { $0.exchange === exchange }
    }

    func exchange(_ exchange: HTTPExchange, startResponse head: HTTPResponseHead, contentLength: Int?) {
        guard let s = stream(for: exchange), let session else { return }
        var fields: [(String, String)] = [(":status", String(head.status))]
        for (name, value) in head.headers where !H2ServerConnection.isConnectionSpecific(name) {
            fields.append((name.lowercased(), value))
        }
        if let contentLength, !HTTPStatus.forbidsBody(head.status) { fields.append(("content-length", String(contentLength))) }
        let noBody = s.isHead || HTTPStatus.forbidsBody(head.status) || contentLength == 0
        if noBody { s.ended = true }
        let rc = withNameValues(fields) { nva in
            if noBody {
                return nghttp2_submit_response(session, s.id, nva.baseAddress, nva.count, nil)
            }
            var provider = nghttp2_data_provider()
            provider.source.ptr = Unmanaged.passUnretained(s).toOpaque()
            provider.read_callback = { _, id, buf, length, flags, source, user in
                H2ServerConnection.owner(user).readData(id, buf!, length, flags!)
            }
            return nghttp2_submit_response(session, s.id, nva.baseAddress, nva.count, &provider)
        }
        do throws(H2Error) {
            try H2Error.check(rc, "nghttp2_submit_response")
        } catch {
            // A head nghttp2 will not send (a header it refuses): the stream is reset.
            s.exchange = nil
            reset(s, NGHTTP2_INTERNAL_ERROR.rawValue)
            exchange.cancel()
        }
        flush()
    }

    private func readData(_ id: Int32, _ buf: UnsafeMutablePointer<UInt8>, _ length: Int, _ flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let s = streams[id] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        let n = min(length, s.buffered)
        if n > 0 {
            s.output.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(buf).copyMemory(from: raw.baseAddress! + s.outputOffset, byteCount: n)
            }
            s.outputOffset += n
            if s.outputOffset == s.output.count {
                s.output.removeAll(keepingCapacity: true)
                s.outputOffset = 0
            }
        }
        if s.buffered == 0 {
            if s.ended {
                flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            } else if n == 0 {
                s.dataDeferred = true
                return Int(NGHTTP2_ERR_DEFERRED.rawValue)
            }
        }
        return n
    }

    func exchange(_ exchange: HTTPExchange, writeBody bytes: UnsafeRawBufferPointer) {
        guard let s = stream(for: exchange), !s.isHead, !s.ended else { return }
        s.output.append(contentsOf: bytes)
        resume(s)
    }

    func exchangeDidEnd(_ exchange: HTTPExchange) {
        guard let s = stream(for: exchange) else { return }
        if !s.ended {
            s.ended = true
            resume(s)
        } else {
            flush()
        }
    }

    private func resume(_ s: Stream) {
        if s.dataDeferred, let session {
            s.dataDeferred = false
            do throws(H2Error) {
                try H2Error.check(nghttp2_session_resume_data(session, s.id), "nghttp2_session_resume_data")
            } catch {
                reset(s, NGHTTP2_INTERNAL_ERROR.rawValue)
            }
        }
        flush()
    }

    func exchangeAbort(_ exchange: HTTPExchange) {
        guard let s = stream(for: exchange) else { return }
        s.exchange = nil
        reset(s, NGHTTP2_INTERNAL_ERROR.rawValue)
        flush()
    }

    func exchangePendingBytes(_ exchange: HTTPExchange) -> Int {
        (stream(for: exchange)?.buffered ?? 0) + stream.pendingWriteBytes
    }

    /// The connection's socket is shared by its streams: no per-stream cap.
    func exchange(_ exchange: HTTPExchange, limitSendBuffer bytes: Int) {}

    /// Backpressure on one stream's body: while paused its DATA is not
    /// acknowledged (the client's window closes); on resume what it held is.
    func exchange(_ exchange: HTTPExchange, setBodyPaused paused: Bool) {
        guard let s = stream(for: exchange), s.bodyPaused != paused else { return }
        s.bodyPaused = paused
        guard !paused, s.heldBytes > 0, bodyBytesInMemory <= bodyBudget else { return }
        consume(s.id, s.heldBytes)
        s.heldBytes = 0
        // The WINDOW_UPDATE goes out after this tick: this may run inside an
        // nghttp2 callback (a body's end), where the session must not send.
        server.loop.deferToNextTick { [weak self] in self?.flush() }
    }

    // MARK: Draining

    func beginDrain() {
        guard session != nil, !isClosing, goAway() else { return }
        flush()
        if streams.isEmpty { closeNow() }
    }

    func closeNow() {
        guard !stream.isClosing else { return }
        isClosing = true
        stream.close()
    }

    static func isConnectionSpecific(_ name: String) -> Bool {
        HTTP1ServerConnection.isManagedHeader(name) || HTTPHeaders.namesEqual(name, "Upgrade")
            || HTTPHeaders.namesEqual(name, "Proxy-Connection") || HTTPHeaders.namesEqual(name, "TE")
    }
}

/// Calls `body` with nghttp2 name/value pairs pointing into temporary copies of
/// `fields` (nghttp2 copies them during the submit call).
private func withNameValues<R>(_ fields: [(String, String)], _ body: (UnsafeMutableBufferPointer<nghttp2_nv>) -> R) -> R {
    var storage: [UnsafeMutablePointer<UInt8>] = []
    var nva: [nghttp2_nv] = []
    for (name, value) in fields {
        let n = Array(name.utf8), v = Array(value.utf8)
        let np = UnsafeMutablePointer<UInt8>.allocate(capacity: max(n.count, 1))
        let vp = UnsafeMutablePointer<UInt8>.allocate(capacity: max(v.count, 1))
        np.initialize(from: n, count: n.count)
        vp.initialize(from: v, count: v.count)
        storage.append(np)
        storage.append(vp)
        nva.append(nghttp2_nv(name: np, value: vp, namelen: n.count, valuelen: v.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
    }
    defer { for p in storage { p.deallocate() } }
    return nva.withUnsafeMutableBufferPointer { body($0) }
}
