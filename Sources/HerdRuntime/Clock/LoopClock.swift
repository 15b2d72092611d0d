/// Time as a loop sees it, and timers on that time. Every timeout in herd is
/// measured on a `LoopClock`: production takes it from libuv (`EventLoop`, whose
/// clock is cached once per loop iteration), tests hold a manual clock and
/// advance it by hand, so that no test waits for a timeout to pass.
///
/// Loop-thread only, like everything on a loop.
public protocol LoopClock: AnyObject {
    /// Milliseconds on a monotonic clock (not wall time: for durations and
    /// deadlines only).
    var now: UInt64 { get }

    /// A timer that calls `fire` each time it expires; it starts disarmed.
    /// The timer holds `fire` until it is closed.
    func makeTimer(_ fire: @escaping () -> Void) -> any ClockTimer
}

/// A reusable one-shot timer of a `LoopClock`: armed, re-armed and disarmed
/// without allocating (connections re-arm theirs on every request).
public protocol ClockTimer: AnyObject {
    /// Fires once, `milliseconds` from now; replaces an earlier arming.
    func arm(after milliseconds: UInt64)
    /// Cancels a pending fire (the timer can be armed again).
    func disarm()
    /// Whether a fire is pending.
    var isArmed: Bool { get }
    /// Disarms for good and drops `fire`. Idempotent.
    func close()
}

extension ClockTimer {
    /// Arms the timer to fire at `deadline` on `clock` (at once when it has passed).
    public func arm(at deadline: UInt64, on clock: any LoopClock) {
        let now = clock.now
        arm(after: deadline > now ? deadline - now : 0)
    }
}

extension EventLoop: LoopClock {
    /// The loop's cached time in milliseconds (updated once per iteration).
    public var now: UInt64 { nowMilliseconds }

    public func makeTimer(_ fire: @escaping () -> Void) -> any ClockTimer {
        LoopTimer(loop: self, fire: fire)
    }
}
