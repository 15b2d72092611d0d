/// The logic of one HTTP/1.1 server connection, as a value: which phase the
/// connection is in, how each response is framed, whether the connection
/// stays open, and which timeout runs until when. Events in, decisions out;
/// the driver (`HTTP1ServerConnection`) owns the socket, the parser, the
/// exchange and one timer that it keeps armed at `deadline`. Time comes in
/// as a parameter (milliseconds of a `LoopClock`), so every timeout is tested
/// in virtual time.
///
/// Phases: idle (between requests; the first request gets the head timeout,
/// later ones the keep-alive timeout) → head (head timer from the head's first
/// byte: a slow head cannot extend it) → body (idle timer from the latest
/// body bytes, paused while the handler applies backpressure) → responding
/// (no read timer; pipelined bytes wait, bounded) → idle again, or closing
/// (after an error the connection lingers, discarding input, so that a client
/// still sending sees the answer).
struct HTTP1ServerFlow: Equatable {
    enum Phase: Equatable { case idle, head, body, responding, closing }

    /// What the running timer stands for.
    enum Timeout: Equatable {
        /// No request began in time: close without a word.
        case idle
        /// The request head did not complete in time: 408.
        case head
        /// The request body stalled: 408 (or a cut if the response began).
        case body
        /// The lingering close after an error: close.
        case linger
    }

    /// The limits and timeouts the flow enforces (from `HTTPServerConfiguration`).
    struct Limits: Equatable {
        var maxBodyBytes: Int
        var headTimeout: UInt64
        var bodyIdleTimeout: UInt64
        var keepAliveTimeout: UInt64
        var linger: UInt64

        init(_ configuration: HTTPServerConfiguration) {
            maxBodyBytes = configuration.maxBodyBytes
            headTimeout = configuration.headTimeoutMilliseconds
            bodyIdleTimeout = configuration.bodyIdleTimeoutMilliseconds
            keepAliveTimeout = configuration.keepAliveTimeoutMilliseconds
            linger = configuration.lingerMilliseconds
        }
    }

    /// What a parsed request head says about the exchange.
    struct Head: Equatable {
        var isHEAD: Bool
        var versionMinor: Int
        var keepAlive: Bool
        var contentLength: Int?
    }

    enum HeadVerdict: Equatable {
        /// Hand the request to the handler.
        case dispatch
        /// The declared body is over the limit: answer 413 before reading it.
        case tooLarge(String)
    }

    /// How the driver writes a response head.
    struct Framing: Equatable {
        enum ConnectionHeader: Equatable { case none, close, keepAlive }
        /// Write `Content-Length: n` (only when a body is allowed).
        var contentLength: Int?
        /// Encode the body in chunks.
        var chunked: Bool
        var connection: ConnectionHeader
    }

    enum AfterResponse: Equatable {
        /// Ready for the next request: read (pipelined bytes first).
        case nextRequest
        /// Write what is queued, then close.
        case closeAfterFlush
        /// Half-close, discard the unread request until the client closes or
        /// the linger time ends.
        case linger
        /// Nothing to do (the connection is closing already).
        case none
    }

    enum TimeoutAction: Equatable {
        case none
        /// Close the connection.
        case close
        /// Answer 408 with this message and close.
        case requestTimeout(String)
        /// The body stalled after the response began: cut the response and close.
        case abortResponse
    }

    let limits: Limits
    private(set) var phase = Phase.idle
    /// When the running timeout ends (`nil`: no timer should run).
    private(set) var deadline: UInt64?
    private(set) var timeout: Timeout?
    private(set) var keepAlive = true
    private(set) var requestComplete = false
    private(set) var bodyPaused = false
    private(set) var responseStarted = false
    private var isHEAD = false
    private var isHTTP10 = false
    private var chunked = false
    private var closeAfterResponse = false
    private var bodyBytes = 0

    init(limits: Limits) {
        self.limits = limits
    }

    private mutating func arm(_ timeout: Timeout, _ milliseconds: UInt64, now: UInt64) {
        self.timeout = timeout
        deadline = now + milliseconds
    }

    private mutating func disarm() {
        timeout = nil
        deadline = nil
    }

    // MARK: Reading

    /// The connection was accepted: the first request must begin in time.
    mutating func start(now: UInt64) {
        arm(.idle, limits.headTimeout, now: now)
    }

    /// Bytes of a request are about to be parsed: an idle connection enters
    /// the head, whose timer counts from here.
    mutating func requestBytes(now: UInt64) {
        guard phase == .idle else { return }
        phase = .head
        arm(.head, limits.headTimeout, now: now)
    }

    /// A read was processed: a body that is still arriving gets its idle timer
    /// re-armed from now.
    mutating func readProcessed(now: UInt64) {
        if phase == .body, !bodyPaused, !requestComplete { arm(.body, limits.bodyIdleTimeout, now: now) }
    }

    mutating func head(_ head: Head, draining: Bool) -> HeadVerdict {
        keepAlive = head.keepAlive && !draining
        isHEAD = head.isHEAD
        isHTTP10 = head.versionMinor == 0
        requestComplete = false
        responseStarted = false
        chunked = false
        closeAfterResponse = false
        bodyBytes = 0
        if let length = head.contentLength, length > limits.maxBodyBytes {
            return .tooLarge("request body of \(length) bytes is over the limit of \(limits.maxBodyBytes) bytes")
        }
        phase = .body
        return .dispatch
    }

    /// Body bytes arrived; false when the body is over the limit (413).
    mutating func body(_ count: Int) -> Bool {
        bodyBytes += count
        return bodyBytes <= limits.maxBodyBytes
    }

    var bodyLimitMessage: String { "request body is over the limit of \(limits.maxBodyBytes) bytes" }

    mutating func messageComplete() {
        requestComplete = true
        if phase == .body { phase = .responding }
        if timeout == .head || timeout == .body { disarm() }
    }

    /// The handler stopped (or resumed) reading the body.
    mutating func setBodyPaused(_ paused: Bool, now: UInt64) {
        guard !requestComplete else { return }
        bodyPaused = paused
        if paused {
            if timeout == .body { disarm() }
        } else {
            readProcessed(now: now)
        }
    }

    // MARK: Responding

    /// The handler started its response: how to frame it.
    mutating func responseStarts(status: Int, contentLength: Int?, draining: Bool) -> Framing {
        responseStarted = true
        if draining { keepAlive = false }
        let bodyAllowed = !HTTPStatus.forbidsBody(status)
        chunked = contentLength == nil && bodyAllowed && !isHTTP10 && !isHEAD
        // A body of unknown length to an HTTP/1.0 client ends with the connection.
        if contentLength == nil, bodyAllowed, isHTTP10 || isHEAD { closeAfterResponse = !isHEAD }
        if closeAfterResponse { keepAlive = false }
        let connection: Framing.ConnectionHeader = !keepAlive ? .close : (isHTTP10 ? .keepAlive : .none)
        return Framing(contentLength: bodyAllowed ? contentLength : nil, chunked: chunked, connection: connection)
    }

    /// Whether body bytes are written at all (not for HEAD).
    var writesBody: Bool { !isHEAD }
    var isChunked: Bool { chunked }

    /// The response ended: what becomes of the connection.
    mutating func responseEnded(now: UInt64) -> AfterResponse {
        responseStarted = false
        if phase == .closing { return .none }
        if !keepAlive || closeAfterResponse {
            if requestComplete {
                phase = .closing
                disarm()
                return .closeAfterFlush
            }
            lingering(now: now)
            return .linger
        }
        if !requestComplete {
            // Answered before the body arrived: the rest of the body is unread.
            lingering(now: now)
            return .linger
        }
        phase = .idle
        bodyPaused = false
        arm(.idle, limits.keepAliveTimeout, now: now)
        return .nextRequest
    }

    // MARK: Errors, timeouts, closing

    /// The server answered an error itself; `linger` keeps reading (and
    /// discarding) for a while so that the client sees the answer.
    mutating func errorAnswered(linger: Bool, now: UInt64) {
        if linger {
            lingering(now: now)
        } else {
            phase = .closing
            disarm()
        }
    }

    private mutating func lingering(now: UInt64) {
        phase = .closing
        arm(.linger, limits.linger, now: now)
    }

    /// The connection is going away (peer closed, reset, switched to h2).
    mutating func closing() {
        phase = .closing
        disarm()
    }

    /// The timer fired at `now`: what the timeout means in the current phase.
    mutating func timerFired(now: UInt64) -> TimeoutAction {
        guard let deadline, deadline <= now, let timeout else { return .none }
        disarm()
        switch timeout {
        case .idle, .linger:
            phase = .closing
            return .close
        case .head:
            guard phase == .head else { return .none }
            return .requestTimeout("request head not received in time")
        case .body:
            guard phase == .body, !bodyPaused else { return .none }
            return responseStarted ? .abortResponse : .requestTimeout("request body not received in time")
        }
    }

    /// A graceful stop: no more keep-alive; true when the connection is idle
    /// and can close at once.
    mutating func drain() -> Bool {
        keepAlive = false
        return phase == .idle
    }

    /// Whether the server sends `100 Continue` after dispatching: HTTP/1.1
    /// `Expect: 100-continue` with a body to come and no answer yet.
    static func wantsContinue(versionMinor: Int, expectsContinue: Bool, contentLength: Int?, answered: Bool) -> Bool {
        !answered && versionMinor >= 1 && expectsContinue && (contentLength ?? 1) > 0
    }
}
