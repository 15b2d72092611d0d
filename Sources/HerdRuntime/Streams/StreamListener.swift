internal import CUV
#if canImport(Glibc)
import Glibc
#endif

/// A listening TCP or Unix-domain socket. Loop-thread only; lives until `close()`.
public final class StreamListener: LoopHandleOwner {
    public let loop: EventLoop
    public let kind: StreamConnection.Kind
    private let handle: LoopHandle<uv_stream_t>
    private var onAccept: ((StreamConnection) -> Void)?
    private var isClosed = false
    /// The Unix socket path this listener created (removed again on close).
    public let path: String?

    /// Listens on TCP `address`. The socket is made here (not by libuv) so that
    /// `SO_REUSEPORT` can be set: libuv 1.44 has no `UV_TCP_REUSEPORT`.
    /// Accepted connections have `TCP_NODELAY` set and are handed to `onAccept`,
    /// which must set a delegate and start reading.
    public init(
        loop: EventLoop, address: SocketAddress, reusePort: Bool = false, backlog: Int32 = 1024,
        onAccept: @escaping (StreamConnection) -> Void
    ) throws(UVError) {
        self.loop = loop
        self.kind = .tcp
        self.path = nil
        self.onAccept = onAccept
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw UVError(code: -errno, operation: "socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(clamping: MemoryLayout<Int32>.size))
        if reusePort, setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(clamping: MemoryLayout<Int32>.size)) != 0 {
            let code = -errno
            Glibc.close(fd)
            throw UVError(code: code, operation: "setsockopt(SO_REUSEPORT)")
        }
        if address.withSockaddr({ bind(fd, $0, address.length) }) != 0 {
            let code = -errno
            Glibc.close(fd)
            throw UVError(code: code, operation: "bind(\(address))")
        }
        handle = .allocate(as: uv_tcp_t.self)
        let tcp = handle.as(uv_tcp_t.self)
        handle.initialiseInfallibly(for: self, "uv_tcp_init") { _ in uv_tcp_init(loop.raw, tcp) }
        let rc = uv_tcp_open(tcp, fd)
        if rc < 0 {
            Glibc.close(fd)
            close()
            throw UVError(code: rc, operation: "uv_tcp_open")
        }
        try listen(backlog: backlog)
    }

    /// Listens on the Unix socket `path`. A stale socket file nobody listens on is
    /// replaced; a live one makes this throw `EADDRINUSE`.
    public init(loop: EventLoop, path: String, backlog: Int32 = 128, onAccept: @escaping (StreamConnection) -> Void) throws(UVError) {
        self.loop = loop
        self.kind = .pipe
        self.path = path
        self.onAccept = onAccept
        handle = .allocate(as: uv_pipe_t.self)
        let pipe = handle.as(uv_pipe_t.self)
        handle.initialiseInfallibly(for: self, "uv_pipe_init") { _ in uv_pipe_init(loop.raw, pipe, 0) }
        var rc = uv_pipe_bind(pipe, path)
        if rc == UV_EADDRINUSE.rawValue, !StreamListener.someoneListens(at: path) {
            unlink(path)
            rc = uv_pipe_bind(pipe, path)
        }
        if rc < 0 {
            close(removingPath: false)
            throw UVError(code: rc, operation: "uv_pipe_bind(\(path))")
        }
        try listen(backlog: backlog)
    }

    private func listen(backlog: Int32) throws(UVError) {
        let rc = uv_listen(handle.pointer, backlog) { server, status in
            // A failed accept (EMFILE, …) leaves the connection in the kernel's queue.
            guard status >= 0 else { return }
            LoopHandle<uv_stream_t>.owner(of: server, as: StreamListener.self).acceptOne()
        }
        if rc < 0 {
            close(removingPath: false)
            throw UVError(code: rc, operation: "uv_listen")
        }
    }

    private func acceptOne() {
        guard !isClosed, let onAccept else { return }
        let connection = StreamConnection(loop: loop, kind: kind)
        do {
            try UVError.check(uv_accept(handle.pointer, connection.stream), "uv_accept")
            try connection.setNoDelay()
        } catch {
            connection.close() // the client saw its connection accepted and closed
            return
        }
        onAccept(connection)
    }

    /// The bound address (TCP): read back the port when listening on port 0.
    public var localAddress: SocketAddress? {
        guard kind == .tcp, !isClosed else { return nil }
        var storage = sockaddr_storage()
        var length = Int32(clamping: MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                uv_tcp_getsockname(handle.as(uv_tcp_t.self), $0, &length)
            }
        }
        return rc == 0 ? SocketAddress(storage: storage) : nil
    }

    /// Stops listening. A Unix socket file this listener made is removed.
    public func close() { close(removingPath: true) }

    private func close(removingPath: Bool) {
        guard !isClosed else { return }
        isClosed = true
        onAccept = nil
        if removingPath, let path { unlink(path) }
        handle.close()
    }

    func forceClose() { close() }

    /// Whether a process accepts connections on the Unix socket at `path`.
    static func someoneListens(at path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let rc = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(clamping: MemoryLayout<sockaddr_un>.size))
            }
        }
        return rc == 0
    }
}
