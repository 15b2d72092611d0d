import HerdRuntime
internal import CAvahi
#if canImport(Glibc)
import Glibc
#endif

/// Avahi's poll vtable implemented on the libuv loop, so that Avahi's D-Bus
/// traffic and timers run on the process's one loop: a watch is a `uv_poll_t`,
/// a timeout a `LoopTimer`. Loop-thread only.
///
/// Avahi hands the watch and timeout objects back as opaque `AvahiWatch*` /
/// `AvahiTimeout*`: here they are retained Swift boxes, released when Avahi frees them.
public final class AvahiLoopPoll {
    public let loop: EventLoop
    let vtable: UnsafeMutablePointer<AvahiPoll>

    public init(loop: EventLoop) {
        self.loop = loop
        vtable = .allocate(capacity: 1)
        vtable.initialize(to: AvahiPoll())
        vtable.pointee.userdata = Unmanaged.passUnretained(self).toOpaque()
        vtable.pointee.watch_new = { api, fd, events, callback, userdata in
            let poll = Unmanaged<AvahiLoopPoll>.fromOpaque(api!.pointee.userdata).takeUnretainedValue()
            let watch = AvahiWatchBox(loop: poll.loop, fd: fd, callback: callback, userdata: userdata)
            watch.update(events)
            return OpaquePointer(Unmanaged.passRetained(watch).toOpaque())
        }
        vtable.pointee.watch_update = { watch, events in
            AvahiWatchBox.from(watch).update(events)
        }
        vtable.pointee.watch_get_events = { watch in
            AvahiWatchBox.from(watch).happened
        }
        vtable.pointee.watch_free = { watch in
            let box = Unmanaged<AvahiWatchBox>.fromOpaque(UnsafeRawPointer(watch!))
            box.takeUnretainedValue().free()
            box.release()
        }
        vtable.pointee.timeout_new = { api, tv, callback, userdata in
            let poll = Unmanaged<AvahiLoopPoll>.fromOpaque(api!.pointee.userdata).takeUnretainedValue()
            let timeout = AvahiTimeoutBox(loop: poll.loop, callback: callback, userdata: userdata)
            timeout.update(tv)
            return OpaquePointer(Unmanaged.passRetained(timeout).toOpaque())
        }
        vtable.pointee.timeout_update = { timeout, tv in
            AvahiTimeoutBox.from(timeout).update(tv)
        }
        vtable.pointee.timeout_free = { timeout in
            let box = Unmanaged<AvahiTimeoutBox>.fromOpaque(UnsafeRawPointer(timeout!))
            box.takeUnretainedValue().free()
            box.release()
        }
    }

    deinit {
        vtable.deinitialize(count: 1)
        vtable.deallocate()
    }

    /// The vtable to pass to `avahi_client_new`.
    var api: UnsafePointer<AvahiPoll> { UnsafePointer(vtable) }
}

/// An `AvahiWatch`: a file descriptor watched on the loop.
final class AvahiWatchBox {
    private var watcher: FileDescriptorWatcher?
    private let fd: Int32
    private let callback: AvahiWatchCallback?
    private let userdata: UnsafeMutableRawPointer?
    private var isFreed = false
    /// The events of the last callback (`watch_get_events`).
    var happened = AvahiWatchEvent(rawValue: 0)

    /// A descriptor libuv refuses leaves the box without a watcher: Avahi hears
    /// of it as an error event on its first update.
    init(loop: EventLoop, fd: Int32, callback: AvahiWatchCallback?, userdata: UnsafeMutableRawPointer?) {
        self.fd = fd
        self.callback = callback
        self.userdata = userdata
        watcher = try? FileDescriptorWatcher(loop: loop, descriptor: fd) { [weak self] events in self?.fire(events) }
        if watcher == nil {
            loop.deferToNextTick { [weak self] in self?.fire(.error) }
        }
    }

    static func from(_ watch: OpaquePointer?) -> AvahiWatchBox {
        Unmanaged<AvahiWatchBox>.fromOpaque(UnsafeRawPointer(watch!)).takeUnretainedValue()
    }

    func update(_ events: AvahiWatchEvent) {
        guard !isFreed else { return }
        var wanted: FileDescriptorWatcher.Events = []
        if events.rawValue & AVAHI_WATCH_IN.rawValue != 0 { wanted.insert(.readable) }
        if events.rawValue & AVAHI_WATCH_OUT.rawValue != 0 { wanted.insert(.writable) }
        watcher?.watch(wanted)
    }

    private func fire(_ events: FileDescriptorWatcher.Events) {
        guard !isFreed, let callback else { return }
        var happened: UInt32 = 0
        if events.contains(.error) { happened |= AVAHI_WATCH_ERR.rawValue }
        if events.contains(.readable) { happened |= AVAHI_WATCH_IN.rawValue }
        if events.contains(.writable) { happened |= AVAHI_WATCH_OUT.rawValue }
        self.happened = AvahiWatchEvent(rawValue: happened)
        let me = OpaquePointer(Unmanaged.passUnretained(self).toOpaque())
        callback(me, fd, self.happened, userdata)
        self.happened = AvahiWatchEvent(rawValue: 0)
    }

    func free() {
        guard !isFreed else { return }
        isFreed = true
        watcher?.close()
    }
}

/// An `AvahiTimeout`: an absolute wake-up time on a `LoopTimer`.
final class AvahiTimeoutBox {
    private let timer: LoopTimer
    private let callback: AvahiTimeoutCallback?
    private let userdata: UnsafeMutableRawPointer?
    private var isFreed = false

    init(loop: EventLoop, callback: AvahiTimeoutCallback?, userdata: UnsafeMutableRawPointer?) {
        timer = LoopTimer(loop: loop)
        self.callback = callback
        self.userdata = userdata
    }

    static func from(_ timeout: OpaquePointer?) -> AvahiTimeoutBox {
        Unmanaged<AvahiTimeoutBox>.fromOpaque(UnsafeRawPointer(timeout!)).takeUnretainedValue()
    }

    /// Arms the timer for the absolute time `tv` (gettimeofday clock), or disarms it.
    func update(_ tv: UnsafePointer<timeval>?) {
        guard !isFreed else { return }
        guard let tv else {
            timer.stop()
            return
        }
        var now = timeval()
        gettimeofday(&now, nil)
        let deltaMicros = (Int64(tv.pointee.tv_sec) - Int64(now.tv_sec)) * 1_000_000 + Int64(tv.pointee.tv_usec) - Int64(now.tv_usec)
        let milliseconds = UInt64(clamping: (deltaMicros + 999) / 1000)
        timer.start(after: milliseconds) { [unowned self] in
            guard !self.isFreed, let callback = self.callback else { return }
            callback(OpaquePointer(Unmanaged.passUnretained(self).toOpaque()), self.userdata)
        }
    }

    func free() {
        guard !isFreed else { return }
        isFreed = true
        timer.close()
    }
}
