internal import CUV

/// A libuv timer: the `ClockTimer` of an `EventLoop`. Loop-thread only.
///
/// Lifetime: a `LoopHandle` (the timer lives until `close()`, its memory is
/// released in the close callback).
public final class LoopTimer: LoopHandleOwner, ClockTimer {
    private let handle: LoopHandle<uv_timer_t>
    private var callback: (() -> Void)?
    private var isClosed = false

    public init(loop: EventLoop) {
        handle = .allocate()
        handle.initialiseInfallibly(for: self, "uv_timer_init") { uv_timer_init(loop.raw, $0) }
    }

    /// A timer that calls `fire` each time it expires (arm it with `arm(after:)`).
    public convenience init(loop: EventLoop, fire: @escaping () -> Void) {
        self.init(loop: loop)
        callback = fire
    }

    private static let fired: uv_timer_cb = { raw in
        LoopHandle<uv_timer_t>.owner(of: raw, as: LoopTimer.self).callback?()
    }

    /// Fires `callback` once after `milliseconds` (and then every `repeating`
    /// milliseconds when that is not zero). Restarting replaces the callback.
    public func start(after milliseconds: UInt64, repeating: UInt64 = 0, _ callback: @escaping () -> Void) {
        guard !isClosed else { return }
        self.callback = callback
        UVError.mustSucceed(uv_timer_start(handle.pointer, LoopTimer.fired, milliseconds, repeating), "uv_timer_start")
    }

    /// Fires the callback given at creation (or to the last `start`) once,
    /// `milliseconds` from now.
    public func arm(after milliseconds: UInt64) {
        guard !isClosed, callback != nil else { return }
        UVError.mustSucceed(uv_timer_start(handle.pointer, LoopTimer.fired, milliseconds, 0), "uv_timer_start")
    }

    /// Stops the timer without closing it; `start` or `rearm` may be called again.
    public func stop() {
        guard !isClosed else { return }
        UVError.mustSucceed(uv_timer_stop(handle.pointer), "uv_timer_stop")
    }

    public func disarm() { stop() }

    public var isArmed: Bool { isActive }

    /// Whether the timer is armed.
    public var isActive: Bool { !isClosed && uv_is_active(handle.base) != 0 }

    /// Closes the timer; no callback fires afterwards. Idempotent.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        callback = nil
        handle.close()
    }

    func forceClose() { close() }
}
