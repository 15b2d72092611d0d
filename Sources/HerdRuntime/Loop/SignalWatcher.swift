internal import CUV
#if canImport(Glibc)
import Glibc
#endif

/// Watches a POSIX signal (SIGTERM, SIGINT, …) on the loop. Loop-thread only.
/// Like every handle owner it lives until `close()`.
public final class SignalWatcher: LoopHandleOwner {
    private let handle: LoopHandle<uv_signal_t>
    private var callback: ((Int32) -> Void)?
    private var isClosed = false

    /// Starts watching `signal`; `callback` runs on the loop thread each time it arrives.
    public init(loop: EventLoop, signal: Int32, _ callback: @escaping (Int32) -> Void) throws(UVError) {
        handle = .allocate()
        self.callback = callback
        try handle.initialise(for: self, "uv_signal_init") { uv_signal_init(loop.raw, $0) }
        let rc = uv_signal_start(handle.pointer, { raw, signum in
            LoopHandle<uv_signal_t>.owner(of: raw, as: SignalWatcher.self).callback?(signum)
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
        uv_unref(handle.base)
    }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        callback = nil
        handle.close()
    }

    func forceClose() { close() }
}
