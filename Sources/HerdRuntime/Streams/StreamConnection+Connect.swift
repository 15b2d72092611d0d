internal import CUV

/// The completion of a connect request, kept alive by the request's `data`.
private final class ConnectCompletion {
    let completion: (UVError?) -> Void
    init(completion: @escaping (UVError?) -> Void) {
        self.completion = completion
    }
}

private let connectCallback: uv_connect_cb = { request, status in
    let box = Unmanaged<ConnectCompletion>.fromOpaque(request!.pointee.data).takeRetainedValue()
    request!.deallocate()
    box.completion(status < 0 ? UVError(code: status, operation: "connect") : nil)
}

extension StreamConnection {
    /// Connects a TCP stream to `address` (sets `TCP_NODELAY` on success).
    /// `completion` runs once on the loop, never inside this call: `nil` on
    /// success, the error otherwise (`ECANCELED` when the connection was closed
    /// first, e.g. by a connect timeout).
    public func connect(to address: SocketAddress, completion: @escaping (UVError?) -> Void) {
        precondition(kind == .tcp, "connect(to:) is for TCP streams")
        let request = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        let box = ConnectCompletion { [unowned self] error in
            if let error { return completion(error) }
            do throws(UVError) {
                try self.setNoDelay()
                completion(nil)
            } catch {
                completion(error)
            }
        }
        request.pointee.data = Unmanaged.passRetained(box).toOpaque()
        let rc = address.withSockaddr { uv_tcp_connect(request, handle.as(uv_tcp_t.self), $0, connectCallback) }
        if rc < 0 {
            Unmanaged<ConnectCompletion>.fromOpaque(request.pointee.data).release()
            request.deallocate()
            let error = UVError(code: rc, operation: "uv_tcp_connect(\(address))")
            loop.deferToNextTick { completion(error) }
        }
    }

    /// Connects a pipe stream to the Unix socket at `path` (`uv_pipe_connect`
    /// reports every failure through the callback).
    public func connect(toPath path: String, completion: @escaping (UVError?) -> Void) {
        precondition(kind == .pipe, "connect(toPath:) is for pipe streams")
        let request = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        let box = ConnectCompletion(completion: completion)
        request.pointee.data = Unmanaged.passRetained(box).toOpaque()
        uv_pipe_connect(request, handle.as(uv_pipe_t.self), path, connectCallback)
    }
}
