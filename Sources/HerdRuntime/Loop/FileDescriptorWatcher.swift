internal import CUV

/// Watches a file descriptor someone else owns (a D-Bus socket of Avahi's) for
/// readability and writability on the loop (`uv_poll_t`). Loop-thread only;
/// lives until `close()`.
public final class FileDescriptorWatcher: LoopHandleOwner {
    /// What happened (or what to watch for).
    public struct Events: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let readable = Events(rawValue: 1)
        public static let writable = Events(rawValue: 2)
        /// The descriptor failed (reported alone).
        public static let error = Events(rawValue: 4)
    }

    public let descriptor: Int32
    private let loop: EventLoop
    private let handle: LoopHandle<uv_poll_t>
    private var callback: ((Events) -> Void)?
    private var isClosed = false

    /// Starts watching nothing yet; `watch(_:)` chooses the events. Throws when
    /// libuv refuses the descriptor (then nothing is left open).
    public init(loop: EventLoop, descriptor: Int32, callback: @escaping (Events) -> Void) throws(UVError) {
        self.descriptor = descriptor
        self.loop = loop
        self.callback = callback
        handle = .allocate()
        try handle.initialise(for: self, "uv_poll_init") { uv_poll_init(loop.raw, $0, descriptor) }
    }

    /// Watches for `events` (empty: stops watching). A libuv failure is
    /// reported to the callback as `.error`, on the next loop iteration.
    public func watch(_ events: Events) {
        guard !isClosed else { return }
        var flags: Int32 = 0
        if events.contains(.readable) { flags |= Int32(UV_READABLE.rawValue) }
        if events.contains(.writable) { flags |= Int32(UV_WRITABLE.rawValue) }
        let rc: Int32
        if flags == 0 {
            rc = uv_poll_stop(handle.pointer)
        } else {
            rc = uv_poll_start(handle.pointer, flags) { raw, status, events in
                LoopHandle<uv_poll_t>.owner(of: raw, as: FileDescriptorWatcher.self).fire(status: status, events: events)
            }
        }
        if rc < 0 {
            // Never inside the caller's own call: the callback may free this watcher.
            loop.deferToNextTick { [self] in
                guard !isClosed else { return }
                callback?(.error)
            }
        }
    }

    private func fire(status: Int32, events: Int32) {
        guard !isClosed, let callback else { return }
        var happened: Events = []
        if status < 0 {
            happened = .error
        } else {
            if events & Int32(UV_READABLE.rawValue) != 0 { happened.insert(.readable) }
            if events & Int32(UV_WRITABLE.rawValue) != 0 { happened.insert(.writable) }
        }
        callback(happened)
    }

    /// Stops watching and closes the handle (not the descriptor). Idempotent.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        callback = nil
        handle.close()
    }

    func forceClose() { close() }
}
