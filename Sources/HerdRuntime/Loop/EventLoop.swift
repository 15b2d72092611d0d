internal import CUV
#if canImport(Glibc)
import Glibc
#endif

/// One libuv loop: the single thread every handle of a process lives on.
///
/// Confinement rule: every method is loop-thread only, except `execute(_:)`,
/// `stop()` and `offload(_:then:)`'s worker half, which are thread-safe. Handles
/// (streams, timers, listeners) must be created and used on the loop thread.
public final class EventLoop: @unchecked Sendable {
    /// The libuv loop, for the runtime's own handle wrappers.
    let raw: UnsafeMutablePointer<uv_loop_t>
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    private let pending = Locked<[@Sendable () -> Void]>([])
    /// One read buffer shared by every stream of the loop: read callbacks run one
    /// at a time and consume (or copy) their bytes before returning.
    let readBuffer: UnsafeMutableRawPointer
    static let readBufferSize = 64 * 1024
    private var closed = false
    private var nextTick: [() -> Void] = []
    private var nextTickTimer: LoopTimer?
    private let flushCheck: UnsafeMutablePointer<uv_check_t>
    private let flushPrepare: UnsafeMutablePointer<uv_prepare_t>
    private var flushList: [any LoopFlushable] = []

    public init() throws(UVError) {
        raw = .allocate(capacity: 1)
        wakeup = .allocate(capacity: 1)
        flushCheck = .allocate(capacity: 1)
        flushPrepare = .allocate(capacity: 1)
        readBuffer = .allocate(byteCount: EventLoop.readBufferSize, alignment: 16)
        let freeAll = { [raw, wakeup, flushCheck, flushPrepare, readBuffer] in
            raw.deallocate(); wakeup.deallocate(); flushCheck.deallocate(); flushPrepare.deallocate(); readBuffer.deallocate()
        }
        do {
            try UVError.check(uv_loop_init(raw), "uv_loop_init")
        } catch {
            freeAll()
            throw error
        }
        // The wake-up needs an eventfd, which the system may refuse.
        let rc = uv_async_init(raw, wakeup) { handle in
            let loop = Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            loop.drainPending()
        }
        if rc < 0 {
            _ = uv_loop_close(raw) // nothing is open on it yet
            freeAll()
            throw UVError(code: rc, operation: "uv_async_init")
        }
        // These handles belong to the loop itself (no owner: `data` is the loop,
        // unretained) and close with it.
        wakeup.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        UVError.mustSucceed(uv_check_init(raw, flushCheck), "uv_check_init")
        flushCheck.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        UVError.mustSucceed(uv_check_start(flushCheck) { handle in
            let loop = Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            loop.flushOutputs()
        }, "uv_check_start")
        uv_unref(UnsafeMutableRawPointer(flushCheck).assumingMemoryBound(to: uv_handle_t.self))
        // Output queued by timer callbacks (which run before the poll phase)
        // leaves before the loop blocks, not one poll later.
        UVError.mustSucceed(uv_prepare_init(raw, flushPrepare), "uv_prepare_init")
        flushPrepare.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        UVError.mustSucceed(uv_prepare_start(flushPrepare) { handle in
            let loop = Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            loop.flushOutputs()
        }, "uv_prepare_start")
        uv_unref(UnsafeMutableRawPointer(flushPrepare).assumingMemoryBound(to: uv_handle_t.self))
    }

    /// Asks for `target.flushOutput()` once, after this iteration's callbacks
    /// (a `uv_check` pass after I/O, a `uv_prepare` pass before the loop
    /// blocks): writes produced in one iteration leave in one system call.
    /// Loop-thread only.
    public func scheduleFlush(_ target: any LoopFlushable) {
        flushList.append(target)
    }

    private func flushOutputs() {
        while !flushList.isEmpty {
            let targets = flushList
            flushList.removeAll(keepingCapacity: true)
            for target in targets { target.flushOutput() }
        }
    }

    deinit {
        close()
        readBuffer.deallocate()
    }

    /// Runs the loop on the calling thread until `stop()`.
    public func run() {
        _ = uv_run(raw, UV_RUN_DEFAULT) // returns whether handles remain, not an error
    }

    /// Stops `run()` at the end of the current iteration. Thread-safe.
    public func stop() {
        execute { [self] in uv_stop(self.raw) }
    }

    /// Schedules `work` on the loop thread. Thread-safe; runs in FIFO order.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        pending.withLock { $0.append(work) }
        // Fails only for a closed handle: executing on a closed loop is a bug.
        UVError.mustSucceed(uv_async_send(wakeup), "uv_async_send")
    }

    private func drainPending() {
        let jobs = pending.withLock { jobs in
            let taken = jobs
            jobs.removeAll(keepingCapacity: true)
            return taken
        }
        for job in jobs { job() }
    }

    /// Runs `work` on the loop thread after the current callback has returned
    /// (so that callbacks never fire re-entrantly inside their caller). Loop-thread only.
    public func deferToNextTick(_ work: @escaping () -> Void) {
        nextTick.append(work)
        guard nextTick.count == 1 else { return }
        let timer = nextTickTimer ?? LoopTimer(loop: self)
        nextTickTimer = timer
        timer.start(after: 0) { [unowned self] in
            let jobs = self.nextTick
            self.nextTick.removeAll(keepingCapacity: true)
            for job in jobs { job() }
        }
    }

    /// The loop's cached clock in milliseconds (updated once per iteration).
    public var nowMilliseconds: UInt64 { uv_now(raw) }

    /// Wall-clock time in milliseconds since 1970 (for records, not for timeouts).
    public static func wallClockMilliseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(clamping: now.tv_sec) * 1000 + UInt64(clamping: now.tv_nsec) / 1_000_000
    }

    /// A monotonic clock in nanoseconds.
    public static func monotonicNanoseconds() -> UInt64 { uv_hrtime() }

    /// Closes every handle still open on the loop, lets their close callbacks run
    /// and releases the loop. Loop thread only, after `run()` has returned.
    public func close() {
        guard !closed else { return }
        closed = true
        drainPending()
        nextTickTimer?.close()
        nextTickTimer = nil
        uv_walk(raw, { handle, _ in
            if let handle, uv_is_closing(handle) == 0 {
                // Owners release their memory in their own close callbacks; handles
                // without an owner (the wake-up) have no callback.
                if handle.pointee.type == UV_ASYNC || handle.pointee.type == UV_CHECK || handle.pointee.type == UV_PREPARE {
                    uv_close(handle, nil)
                } else if let data = handle.pointee.data,
                          let owner = Unmanaged<AnyObject>.fromOpaque(data).takeUnretainedValue() as? any LoopHandleOwner {
                    owner.forceClose()
                } else {
                    uv_close(handle, nil) // a handle nobody owns (libuv's own)
                }
            }
        }, nil)
        while uv_run(raw, UV_RUN_NOWAIT) != 0 {}
        let rc = uv_loop_close(raw)
        if rc < 0 { Logger(label: "herd-runtime").error("\(UVError(code: rc, operation: "uv_loop_close")): a handle outlived its loop") }
        raw.deallocate()
        wakeup.deallocate()
        flushCheck.deallocate()
        flushPrepare.deallocate()
    }
}

/// Something that buffers output during a loop iteration and writes it once
/// (see `EventLoop.scheduleFlush`).
public protocol LoopFlushable: AnyObject {
    func flushOutput()
}
