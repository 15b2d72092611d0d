/// The logic of one keep-alive connection to an upstream, as a value: its
/// phase and its timeouts. Events in (with the time, in milliseconds of a
/// `LoopClock`), decisions out; the driver (`HTTP1ClientConnection`) owns the
/// socket, the parser and the request, and keeps one timer armed at
/// `deadline`.
///
/// Phases: connecting (connect timeout) → busy (a request in flight: the
/// first-byte timeout until the response begins, then the read idle timeout
/// between bytes; the total timeout over the whole exchange) ⇄ idle (parked in
/// the pool, closed when unused for the pool's idle timeout) → closed.
struct HTTP1ClientFlow: Equatable {
    enum Phase: Equatable { case connecting, busy, idle, closed }

    /// The timeouts, in milliseconds (0: none, where allowed).
    struct Limits: Equatable {
        var connect: UInt64
        var firstByte: UInt64
        /// Between response bytes once the response has begun (0: none).
        var readIdle: UInt64
        /// From the request written to the end of its response (0: none).
        var total: UInt64
        /// A parked connection unused this long is closed.
        var poolIdle: UInt64

        init(_ configuration: HTTPClientConfiguration) {
            connect = configuration.connectTimeoutMilliseconds
            firstByte = configuration.firstByteTimeoutMilliseconds
            readIdle = configuration.readIdleTimeoutMilliseconds
            total = configuration.totalTimeoutMilliseconds
            poolIdle = configuration.idleTimeoutMilliseconds
        }
    }

    /// What a fired timer means.
    enum Expiry: Equatable {
        case none
        case connectTimeout
        case firstByteTimeout
        case readTimeout
        case totalTimeout(afterResponseStarted: Bool)
        /// A parked connection was unused too long: close it quietly.
        case idleClose

        /// The error a request in flight fails with (nil: none is in flight).
        var error: HTTPClientError? {
            switch self {
            case .none, .idleClose: nil
            case .connectTimeout: .connectTimeout
            case .firstByteTimeout: .firstByteTimeout
            case .readTimeout: .readTimeout
            case let .totalTimeout(started): .totalTimeout(afterResponseStarted: started)
            }
        }
    }

    /// What to do when the upstream ends the connection during an exchange.
    enum EndVerdict: Equatable {
        /// A pooled connection died before any response byte: send the request
        /// again on a fresh connection; the caller never notices.
        case retryOnFreshConnection
        /// The response may have no length and end with the connection: it is
        /// complete if the parser agrees (else a failure).
        case finishIfCloseDelimited
        case fail
    }

    let limits: Limits
    private(set) var phase = Phase.connecting
    private(set) var sawResponseBytes = false
    private(set) var paused = false
    /// The phase timer: connect, first byte, read idle or pool idle.
    private var phaseDeadline: UInt64?
    private var phaseExpiry = Expiry.none
    private var totalDeadline: UInt64?

    init(limits: Limits) {
        self.limits = limits
    }

    /// When the driver's timer must fire next (`nil`: no timer).
    var deadline: UInt64? {
        switch (phaseDeadline, totalDeadline) {
        case let (a?, b?): min(a, b)
        case let (a?, nil): a
        case let (nil, b?): b
        case (nil, nil): nil
        }
    }

    private mutating func armPhase(_ expiry: Expiry, _ milliseconds: UInt64, now: UInt64) {
        phaseExpiry = expiry
        phaseDeadline = now + milliseconds
    }

    private mutating func disarmPhase() {
        phaseExpiry = .none
        phaseDeadline = nil
    }

    mutating func connecting(now: UInt64) {
        phase = .connecting
        armPhase(.connectTimeout, limits.connect, now: now)
    }

    /// A request was written: wait for its first response byte.
    mutating func requestSent(now: UInt64) {
        phase = .busy
        sawResponseBytes = false
        armPhase(.firstByteTimeout, limits.firstByte, now: now)
        totalDeadline = limits.total > 0 ? now + limits.total : nil
    }

    /// Response bytes arrived.
    mutating func bytesReceived(now: UInt64) {
        guard phase == .busy else { return }
        sawResponseBytes = true
        if limits.readIdle > 0, !paused {
            armPhase(.readTimeout, limits.readIdle, now: now)
        } else {
            disarmPhase()
        }
    }

    /// The caller stopped (or resumed) reading: a paused reader is not the
    /// upstream's silence, so the read idle timer waits while paused.
    mutating func setPaused(_ paused: Bool, now: UInt64) {
        self.paused = paused
        guard phase == .busy, sawResponseBytes, limits.readIdle > 0 else { return }
        if paused { disarmPhase() } else { armPhase(.readTimeout, limits.readIdle, now: now) }
    }

    /// The response is complete.
    mutating func responseFinished() {
        disarmPhase()
        totalDeadline = nil
        paused = false
    }

    /// Parked in the pool, reading (to notice a close at once).
    mutating func parked(now: UInt64) {
        phase = .idle
        totalDeadline = nil
        paused = false
        armPhase(.idleClose, limits.poolIdle, now: now)
    }

    mutating func closed() {
        phase = .closed
        disarmPhase()
        totalDeadline = nil
    }

    /// The timer fired at `now`.
    mutating func timerFired(now: UInt64) -> Expiry {
        if let total = totalDeadline, total <= now, phase == .busy {
            totalDeadline = nil
            disarmPhase()
            return .totalTimeout(afterResponseStarted: sawResponseBytes)
        }
        guard let deadline = phaseDeadline, deadline <= now else { return .none }
        let expiry = phaseExpiry
        disarmPhase()
        return expiry
    }

    /// The upstream ended the connection during an exchange (`cleanly`: with
    /// a FIN, not an error) on a connection `reused` from the pool.
    func connectionEnded(cleanly: Bool, reused: Bool, alreadyRetried: Bool) -> EndVerdict {
        if !sawResponseBytes, reused, !alreadyRetried { return .retryOnFreshConnection }
        if sawResponseBytes, cleanly { return .finishIfCloseDelimited }
        return .fail
    }
}
