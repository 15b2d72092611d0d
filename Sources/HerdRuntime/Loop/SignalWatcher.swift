internal import CUV
#if canImport(Glibc)
import Glibc
#endif

/// Watches a POSIX signal (SIGTERM, SIGINT, …) on the loop. Loop-thread only.
/// Like every handle owner it lives until `close()`.
public final class SignalWatcher: LoopClosable {
    private let handle: UnsafeMutablePointer<uv_signal_t>
    private var callback: ((Int32) -> Void)?
    private var isClosed = false

    /// Starts watching `signal`; `callback` runs on the loop thread each time it arrives.
    public init(loop: EventLoop, signal: Int32, _ callback: @escaping (Int32) -> Void) throws(UVError) {
        handle = .allocate(capacity: 1)
        self.callback = callback
        uv_signal_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        let rc = uv_signal_start(handle, { raw, signum in
            let watcher = Unmanaged<SignalWatcher>.fromOpaque(raw!.pointee.data).takeUnretainedValue()
            watcher.callback?(signum)
        }, signal)
        if rc < 0 {
            close()
            throw UVError(code: rc, operation: "uv_signal_start")
        }
        // A parent may have started us with the signal blocked (threads of test
        // runners do): unblock it on the loop thread so that it is delivered.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        // A signal watcher alone must not keep the loop running.
        uv_unref(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self))
    }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        callback = nil
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { raw in
            let watcher = Unmanaged<SignalWatcher>.fromOpaque(raw!.pointee.data)
            raw!.deallocate()
            watcher.release()
        }
    }

    func forceClose() { close() }
}
