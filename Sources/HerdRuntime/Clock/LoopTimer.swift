internal import CUV

/// A libuv timer: the `ClockTimer` of an `EventLoop`. Loop-thread only.
///
/// Lifetime: the timer keeps itself alive (its handle's `data` holds a retain)
/// until `close()`; its memory is released in the close callback.
public final class LoopTimer: LoopClosable, ClockTimer {
    private let handle: UnsafeMutablePointer<uv_timer_t>
    private var callback: (() -> Void)?
    private var isClosed = false

    public init(loop: EventLoop) {
        handle = .allocate(capacity: 1)
        uv_timer_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// A timer that calls `fire` each time it expires (arm it with `arm(after:)`).
    public convenience init(loop: EventLoop, fire: @escaping () -> Void) {
        self.init(loop: loop)
        callback = fire
    }

    /// Fires `callback` once after `milliseconds` (and then every `repeating`
    /// milliseconds when that is not zero). Restarting replaces the callback.
    public func start(after milliseconds: UInt64, repeating: UInt64 = 0, _ callback: @escaping () -> Void) {
        guard !isClosed else { return }
        self.callback = callback
        uv_timer_start(handle, { raw in
            let timer = Unmanaged<LoopTimer>.fromOpaque(raw!.pointee.data).takeUnretainedValue()
            timer.callback?()
        }, milliseconds, repeating)
    }

    /// Re-arms the timer with the callback given to the last `start` (no allocation).
    public func rearm(after milliseconds: UInt64) { arm(after: milliseconds) }

    /// Fires the callback given at creation (or to the last `start`) once,
    /// `milliseconds` from now.
    public func arm(after milliseconds: UInt64) {
        guard !isClosed, callback != nil else { return }
        uv_timer_start(handle, { raw in
            let timer = Unmanaged<LoopTimer>.fromOpaque(raw!.pointee.data).takeUnretainedValue()
            timer.callback?()
        }, milliseconds, 0)
    }

    /// Stops the timer without closing it; `start` or `rearm` may be called again.
    public func stop() {
        guard !isClosed else { return }
        uv_timer_stop(handle)
    }

    public func disarm() { stop() }

    public var isArmed: Bool { isActive }

    /// Whether the timer is armed.
    public var isActive: Bool { !isClosed && uv_is_active(UnsafeRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) != 0 }

    /// Does not keep the loop alive by itself (`uv_unref`).
    public func unref() { uv_unref(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) }

    /// Closes the timer; no callback fires afterwards. Idempotent.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        callback = nil
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { raw in
            let timer = Unmanaged<LoopTimer>.fromOpaque(raw!.pointee.data)
            raw!.deallocate()
            timer.release()
        }
    }

    func forceClose() { close() }
}
