import HerdRuntime

/// A `LoopClock` that only moves when a test says so: timeouts are tested in
/// virtual time, without sleeping. `advance(by:)` fires every timer whose
/// deadline it passes, in deadline order (ties in arming order), with `now`
/// set to that deadline while the timer's callback runs.
///
/// Used from one thread at a time: the test thread for pure drivers, or the
/// loop thread (through `LoopThread.sync`) when real sockets are involved.
public final class ManualClock: LoopClock, @unchecked Sendable {
    public private(set) var now: UInt64
    private var timers: [ManualTimer] = []
    private var sequence: UInt64 = 0

    public init(now: UInt64 = 1_000) {
        self.now = now
    }

    public func makeTimer(_ fire: @escaping () -> Void) -> any ClockTimer {
        let timer = ManualTimer(clock: self, fire: fire)
        timers.append(timer)
        return timer
    }

    /// Moves time forward by `milliseconds`, firing what expires on the way.
    public func advance(by milliseconds: UInt64) {
        let target = now + milliseconds
        while let next = nextDue(before: target) {
            now = max(now, next.deadline!)
            next.deadline = nil
            next.fire?()
        }
        now = target
    }

    /// Timers armed now (for assertions that nothing is left pending).
    public var armedCount: Int { timers.filter { $0.deadline != nil }.count }

    /// The earliest pending deadline, if any.
    public var nextDeadline: UInt64? { timers.compactMap(\.deadline).min() }

    func nextSequence() -> UInt64 {
        sequence += 1
        return sequence
    }

    func remove(_ timer: ManualTimer) {
        timers.removeAll { $0 === timer }
    }

    private func nextDue(before target: UInt64) -> ManualTimer? {
        var best: ManualTimer?
        for timer in timers {
            guard let deadline = timer.deadline, deadline <= target else { continue }
            if let b = best, (b.deadline!, b.armedAt) <= (deadline, timer.armedAt) { continue }
            best = timer
        }
        return best
    }
}

/// A timer of a `ManualClock`.
final class ManualTimer: ClockTimer {
    private unowned let clock: ManualClock
    var fire: (() -> Void)?
    var deadline: UInt64?
    var armedAt: UInt64 = 0

    init(clock: ManualClock, fire: @escaping () -> Void) {
        self.clock = clock
        self.fire = fire
    }

    func arm(after milliseconds: UInt64) {
        guard fire != nil else { return }
        deadline = clock.now + milliseconds
        armedAt = clock.nextSequence()
    }

    func disarm() { deadline = nil }

    var isArmed: Bool { deadline != nil }

    func close() {
        deadline = nil
        fire = nil
        clock.remove(self)
    }
}
