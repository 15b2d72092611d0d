import HerdRuntime
/// What an HTTP exchange's response goes through: an HTTP/1.1 connection or an
/// h2 stream. Loop-thread only.
protocol HTTPExchangeTransport: AnyObject {
    func exchange(_ exchange: HTTPExchange, startResponse head: HTTPResponseHead, contentLength: Int?)
    func exchange(_ exchange: HTTPExchange, writeBody bytes: UnsafeRawBufferPointer)
    func exchangeDidEnd(_ exchange: HTTPExchange)
    func exchangePendingBytes(_ exchange: HTTPExchange) -> Int
    func exchange(_ exchange: HTTPExchange, setBodyPaused paused: Bool)
    func exchangeAbort(_ exchange: HTTPExchange)
    func exchange(_ exchange: HTTPExchange, limitSendBuffer bytes: Int)
}

/// One request and its response, as a handler sees it, whatever the protocol
/// (HTTP/1.1 or h2). Loop-thread only.
///
/// The handler is called once the head has arrived. It sets `onBody` / `onEnd`
/// (or calls `collectBody`) before returning, answers with `respond` or with
/// `startResponse`, `write`… `end`, and watches `onCancel` for a client that goes
/// away. Writes after the end or after a cancel are ignored.
public final class HTTPExchange {
    public let head: HTTPRequestHead
    /// The loop the exchange lives on (for the handler's timers and connections).
    public let loop: EventLoop
    /// The client's address (TCP clients).
    public let remoteAddress: SocketAddress?
    /// `remoteAddress`'s numeric host, formatted once per connection (it goes
    /// into every request's `X-Forwarded-For` and client identity).
    public let remoteHost: String?
    /// Request body bytes as they arrive (de-chunked); valid only during the call.
    public var onBody: ((UnsafeRawBufferPointer) -> Void)?
    /// The request body is complete.
    public var onEnd: (() -> Void)?
    /// The client went away (or the connection failed) before the response ended.
    public var onCancel: (() -> Void)?
    /// The response's pending bytes have been written: more may be produced.
    public var onWritable: (() -> Void)?

    public internal(set) var isRequestComplete = false
    public private(set) var isResponseStarted = false
    public private(set) var isResponseEnded = false
    public private(set) var isCancelled = false
    /// Held strongly while the exchange is open (no weak-reference traffic per
    /// request); dropped when the response ends or the client goes away, which
    /// breaks the transport ↔ exchange cycle.
    var transport: (any HTTPExchangeTransport)?

    init(head: HTTPRequestHead, remoteAddress: SocketAddress?, remoteHost: String?, loop: EventLoop, transport: any HTTPExchangeTransport) {
        self.head = head
        self.loop = loop
        self.remoteAddress = remoteAddress
        self.remoteHost = remoteHost
        self.transport = transport
    }

    /// Whether a response may still be written.
    public var isOpen: Bool { !isResponseEnded && !isCancelled }

    /// Starts a streaming response. `contentLength: nil` streams with chunked
    /// encoding (HTTP/1.1) or DATA frames (h2). Hop-by-hop and length headers
    /// in `headers` are replaced by the server's own.
    public func startResponse(status: Int, headers: HTTPHeaders = HTTPHeaders(), contentLength: Int? = nil) {
        guard isOpen, !isResponseStarted else { return }
        isResponseStarted = true
        transport?.exchange(self, startResponse: HTTPResponseHead(status: status, headers: headers), contentLength: contentLength)
    }

    /// Writes part of the response body. Check `pendingResponseBytes` afterwards
    /// and wait for `onWritable` when it is above your high watermark.
    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard isOpen, isResponseStarted, bytes.count > 0 else { return }
        transport?.exchange(self, writeBody: bytes)
    }

    public func write(_ bytes: [UInt8]) { bytes.withUnsafeBytes { write($0) } }
    public func write(_ string: String) { var s = string; s.withUTF8 { write(UnsafeRawBufferPointer($0)) } }

    /// Ends the response.
    public func end() {
        guard isOpen else { return }
        if !isResponseStarted { startResponse(status: 200, contentLength: 0) }
        isResponseEnded = true
        releaseCallbacks()
        let t = transport
        transport = nil
        t?.exchangeDidEnd(self)
    }

    /// Handlers' closures usually capture the exchange: dropping them once they
    /// can no longer fire breaks those cycles.
    private func releaseCallbacks() {
        onBody = nil
        onEnd = nil
        onCancel = nil
        onWritable = nil
    }

    /// A complete response in one call.
    public func respond(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        guard isOpen, !isResponseStarted else { return }
        startResponse(status: status, headers: headers, contentLength: body.count)
        write(body)
        end()
    }

    /// A complete response with a UTF-8 body.
    public func respond(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: String) {
        respond(status: status, headers: headers, body: Array(body.utf8))
    }

    /// Breaks the response off abruptly: the HTTP/1.1 connection is reset, the
    /// h2 stream gets RST_STREAM. The client can tell it from a complete response.
    public func abort() {
        guard isOpen else { return }
        isResponseEnded = true
        releaseCallbacks()
        let t = transport
        transport = nil
        t?.exchangeAbort(self)
    }

    /// Response bytes accepted but not yet written to the client.
    public var pendingResponseBytes: Int { transport?.exchangePendingBytes(self) ?? 0 }

    /// Caps the kernel's send buffer under a long-lived response (an event
    /// stream) so that a reader that stops reading shows in
    /// `pendingResponseBytes` soon. HTTP/1.1 only: an h2 connection is shared.
    public func limitSendBuffer(bytes: Int) { transport?.exchange(self, limitSendBuffer: bytes) }

    /// Stops (or resumes) reading the request body: backpressure toward the client.
    public func pauseRequestBody() { transport?.exchange(self, setBodyPaused: true) }
    public func resumeRequestBody() { transport?.exchange(self, setBodyPaused: false) }

    /// Buffers the whole request body (the server has already bounded its size)
    /// and hands it over when complete.
    public func collectBody(_ completion: @escaping ([UInt8]) -> Void) {
        var body: [UInt8] = []
        if let length = head.contentLength { body.reserveCapacity(length) }
        if isRequestComplete {
            completion(body)
            return
        }
        onBody = { body.append(contentsOf: $0) }
        onEnd = { completion(body) }
    }

    /// Buffers the request body up to `limit` bytes: past it, `tooLarge` is
    /// called once (answer it; the rest of the body is discarded) and
    /// `completion` never is.
    public func collectBody(limit: Int, tooLarge: @escaping () -> Void, _ completion: @escaping ([UInt8]) -> Void) {
        if let length = head.contentLength, length > limit { return tooLarge() }
        var body: [UInt8] = []
        if let length = head.contentLength { body.reserveCapacity(length) }
        if isRequestComplete {
            completion(body)
            return
        }
        var over = false
        onBody = { bytes in
            guard !over else { return }
            if body.count + bytes.count > limit {
                over = true
                body = []
                tooLarge()
                return
            }
            body.append(contentsOf: bytes)
        }
        onEnd = { if !over { completion(body) } }
    }

    // MARK: Transport side

    func deliverBody(_ bytes: UnsafeRawBufferPointer) {
        guard !isCancelled else { return }
        onBody?(bytes)
    }

    func deliverEnd() {
        guard !isCancelled, !isRequestComplete else { return }
        isRequestComplete = true
        let callback = onEnd
        onEnd = nil
        onBody = nil
        callback?()
    }

    func deliverWritable() {
        guard isOpen, isResponseStarted else { return }
        onWritable?()
    }

    /// The client is gone: the handler hears it once; later writes are ignored.
    func cancel() {
        guard !isCancelled, !isResponseEnded else { return }
        isCancelled = true
        let callback = onCancel
        releaseCallbacks()
        transport = nil
        callback?()
    }
}
