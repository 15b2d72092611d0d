import Glibc
import Synchronization
import HerdJSON
import HerdRuntime
import HerdTestSupport
import HerdLink
import HerdWire
import Testing

/// A control channel over a real Unix socket whose peer stops reading.
@Suite struct ControlChannelTests {
    /// Found under a heartbeat flood: snapshots for a proxy that did not read
    /// piled up in an unbounded write buffer (control grew past 12 GB).
    @Test func aPeerThatDoesNotReadIsDroppedAtTheBound() throws {
        let folder = temporaryDirectory("herd-channel")
        defer { removeTemporaryDirectory(folder) }
        let path = folder + "/c.sock"
        let thread = try LoopThread()
        let closed = SyncFlag()
        let reason = Mutex<String>("")
        let state = UncheckedSendable(ChannelBox())
        try thread.sync {
            state.value.listener = try StreamListener(loop: thread.loop, path: path) { stream in
                let channel = ControlChannel(stream: stream)
                channel.maxPendingBytes = 1 << 20
                channel.onClose = { error in
                    reason.withLock { $0 = error?.reason ?? "orderly" }
                    closed.set()
                }
                channel.start()
                state.value.channel = channel
                // A peer that never reads: 8 MiB of snapshots, 64 KiB at a time.
                let body = JSONValue.object([("padding", .string(String(repeating: "x", count: 64 << 10)))])
                for _ in 0..<128 where channel.isOpen { channel.send(.snapshot, body) }
            }
        }
        // The peer connects and reads nothing.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            _ = path.utf8CString.withUnsafeBytes { memcpy(raw.baseAddress!, $0.baseAddress!, $0.count) }
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(rc == 0)
        #expect(closed.wait(milliseconds: 5_000), "dropped, not buffered without bound")
        #expect(reason.withLock { $0 }.contains("not reading"), "\(reason.withLock { $0 })")
        try thread.sync {
            state.value.listener?.close()
            state.value.channel = nil
        }
        thread.shutdown()
    }
}

private final class ChannelBox {
    var listener: StreamListener?
    var channel: ControlChannel?
}
