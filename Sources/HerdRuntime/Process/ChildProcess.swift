internal import CUV
#if canImport(Glibc)
import Glibc
#endif

/// A child process started on the loop (`uv_spawn`), with stdin closed and
/// stdout/stderr inherited. Loop-thread only; lives until it has exited and
/// been closed.
public final class ChildProcess: LoopHandleOwner {
    private let handle: LoopHandle<uv_process_t>
    public let path: String
    public let arguments: [String]
    public private(set) var pid: Int32 = 0
    public private(set) var exited = false
    private var onExit: ((Int64, Int32) -> Void)?
    private var closed = false

    /// Starts `path` with `arguments`; `onExit(status, signal)` runs on the loop when it ends.
    public init(loop: EventLoop, path: String, arguments: [String], onExit: @escaping (Int64, Int32) -> Void) throws(UVError) {
        self.path = path
        self.arguments = arguments
        self.onExit = onExit
        handle = .allocate()
        handle.pointer.initialize(to: uv_process_t())
        var options = uv_process_options_t()
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var stdio = [uv_stdio_container_t](repeating: uv_stdio_container_t(), count: 3)
        stdio[0].flags = UV_IGNORE
        stdio[1].flags = UV_INHERIT_FD
        stdio[1].data.fd = 1
        stdio[2].flags = UV_INHERIT_FD
        stdio[2].data.fd = 2
        let rc: Int32 = path.withCString { file in
            argv.withUnsafeBufferPointer { args in
                stdio.withUnsafeMutableBufferPointer { containers in
                    options.file = file
                    options.args = UnsafeMutablePointer(mutating: args.baseAddress)
                    options.stdio_count = 3
                    options.stdio = containers.baseAddress
                    options.exit_cb = { process, status, signal in
                        let child = LoopHandle<uv_process_t>.owner(of: process, as: ChildProcess.self)
                        child.exited = true
                        let callback = child.onExit
                        child.onExit = nil
                        callback?(status, signal)
                        child.close()
                    }
                    return uv_spawn(loop.raw, handle.pointer, &options)
                }
            }
        }
        // A failed spawn still initialised the handle: it is owned and closed like any other.
        handle.initialiseInfallibly(for: self, "uv_spawn") { _ in 0 }
        if rc < 0 {
            self.onExit = nil
            exited = true
            close()
            throw UVError(code: rc, operation: "spawn \(path)")
        }
        pid = handle.pointer.pointee.pid
    }

    /// Sends `signal` (e.g. SIGTERM) if the child still runs. `ESRCH` (it has
    /// just exited, its exit not yet seen) is not an error.
    public func kill(_ signal: Int32) throws(UVError) {
        guard !exited, !closed else { return }
        let rc = uv_process_kill(handle.pointer, signal)
        if rc < 0, rc != UV_ESRCH.rawValue { throw UVError(code: rc, operation: "kill \(pid)") }
    }

    private func close() {
        guard !closed else { return }
        closed = true
        handle.close()
    }

    func forceClose() {
        if !exited { _ = uv_process_kill(handle.pointer, SIGKILL) } // shutting down: a child already gone is fine
        close()
    }
}

/// The absolute path of the running executable's folder (`/proc/self/exe`).
public func executableDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return "." }
    let path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return String(path[..<slash])
}

/// Creates `path` and its parents (mode 0700 for new folders).
public func makeDirectories(_ path: String) throws(UVError) {
    var current = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
        current += "/" + part
        if mkdir(current, 0o700) != 0, errno != EEXIST {
            throw UVError(code: -errno, operation: "mkdir \(current)")
        }
    }
}
