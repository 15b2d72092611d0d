/// The timeouts of one h2c connection, as a value. Events in (with the time,
/// in milliseconds of a `LoopClock`), decisions out; the driver
/// (`H2ServerConnection`) keeps one timer armed at `deadline`.
///
/// - No stream open: the connection is idle. The first stream must open within
///   the head timeout (a client that sent the preface and nothing else does
///   not hold its socket forever), later ones within the keep-alive timeout;
///   then the server says GOAWAY and closes.
/// - A request still arriving (headers or body incomplete): the body idle
///   timeout runs from the latest bytes; then the stalled requests are
///   answered 408 (or cut, if their response began).
/// - Every request complete, responses under way: no timer (the handler and
///   the upstream timeouts own that time).
struct H2ServerFlow: Equatable {
    enum Timeout: Equatable { case idle, requestStalled }

    enum Action: Equatable {
        case none
        /// Idle too long: GOAWAY, then close.
        case goAway
        /// Requests stopped arriving: time out the incomplete ones.
        case timeOutIncompleteRequests
    }

    struct Limits: Equatable {
        var firstStream: UInt64
        var idle: UInt64
        var requestIdle: UInt64

        init(_ configuration: HTTPServerConfiguration) {
            firstStream = configuration.headTimeoutMilliseconds
            idle = configuration.keepAliveTimeoutMilliseconds
            requestIdle = configuration.bodyIdleTimeoutMilliseconds
        }
    }

    let limits: Limits
    private(set) var openStreams = 0
    private(set) var incompleteRequests = 0
    private(set) var deadline: UInt64?
    private(set) var timeout: Timeout?
    private var sawStream = false

    init(limits: Limits) {
        self.limits = limits
    }

    mutating func start(now: UInt64) {
        timeout = .idle
        deadline = now + limits.firstStream
    }

    /// A stream opened (its request begins).
    mutating func streamOpened(now: UInt64) {
        openStreams += 1
        incompleteRequests += 1
        sawStream = true
        rearm(now: now)
    }

    /// A stream's request is complete (END_STREAM received, or given up on).
    mutating func requestCompleted(now: UInt64) {
        incompleteRequests = max(0, incompleteRequests - 1)
        rearm(now: now)
    }

    /// A stream closed; `requestWasComplete` says whether its request had ended.
    mutating func streamClosed(requestWasComplete: Bool, now: UInt64) {
        openStreams = max(0, openStreams - 1)
        if !requestWasComplete { incompleteRequests = max(0, incompleteRequests - 1) }
        rearm(now: now)
    }

    /// Frames were read: activity that re-arms the running timeout.
    mutating func readProcessed(now: UInt64) {
        rearm(now: now)
    }

    private mutating func rearm(now: UInt64) {
        if incompleteRequests > 0 {
            timeout = .requestStalled
            deadline = now + limits.requestIdle
        } else if openStreams == 0 {
            if timeout != .idle || deadline == nil {
                timeout = .idle
                deadline = now + (sawStream ? limits.idle : limits.firstStream)
            } else if sawStream {
                // Frames on an idle connection (PING, SETTINGS) keep it up for a while.
                deadline = now + limits.idle
            }
        } else {
            timeout = nil
            deadline = nil
        }
    }

    mutating func timerFired(now: UInt64) -> Action {
        guard let deadline, deadline <= now, let timeout else { return .none }
        self.deadline = nil
        self.timeout = nil
        switch timeout {
        case .idle: return openStreams == 0 ? .goAway : .none
        case .requestStalled: return incompleteRequests > 0 ? .timeOutIncompleteRequests : .none
        }
    }
}
