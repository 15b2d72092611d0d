/// One timer kept at a state machine's deadline: the drivers of the value-type
/// machines (HTTP/1.1 and h2 connections, the scheduler's queue) tell it the
/// machine's `deadline` after each event, and it re-arms only when that
/// moved. A deadline that went away is not disarmed: the machines ignore a
/// stale fire (they compare their own deadline with the time), and requests
/// that come and go do not pay a timer stop each. Loop-thread only.
public final class DeadlineTimer {
    private let clock: any LoopClock
    private var timer: (any ClockTimer)?
    private var armed: UInt64?

    /// A timer on `clock` that calls `fire` when a followed deadline comes.
    public init(clock: any LoopClock, fire: @escaping () -> Void) {
        self.clock = clock
        timer = clock.makeTimer { [unowned(unsafe) self] in
            self.armed = nil
            fire()
        }
    }

    /// Keeps the timer armed at `deadline` (milliseconds of the clock).
    public func follow(_ deadline: UInt64?) {
        guard let deadline, deadline != armed else { return }
        armed = deadline
        timer?.arm(at: deadline, on: clock)
    }

    /// Stops for good. Idempotent.
    public func close() {
        timer?.close()
        timer = nil
    }
}
