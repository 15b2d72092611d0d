import Glibc
import Synchronization

/// A process started by a test, its stdout and stderr going to a log file the
/// test can wait on. Killed when released.
public final class RunningProcess: @unchecked Sendable {
    public let name: String
    public let pid: pid_t
    public let logPath: String
    private var reaped = false
    private var exitStatus: Int32 = 0

    public init(name: String, path: String, arguments: [String], logDirectory: String, environment: [String: String] = [:]) throws {
        self.name = name
        logPath = logDirectory + "/" + name + ".log"
        let fd = open(logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { throw TestError("cannot open \(logPath)") }
        defer { close(fd) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fd, 1)
        posix_spawn_file_actions_adddup2(&actions, fd, 2)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var env: [UnsafeMutablePointer<CChar>?] = []
        var e = environ
        while let entry = e.pointee {
            let text = String(cString: entry)
            let key = text.split(separator: "=", maxSplits: 1).first.map(String.init) ?? text
            if !text.hasPrefix("HERD_"), environment[key] == nil { env.append(strdup(entry)) }
            e += 1
        }
        for (key, value) in environment { env.append(strdup("\(key)=\(value)")) }
        env.append(nil)
        defer { for p in env { free(p) } }
        // The test runner's threads block signals (libdispatch); a child inherits
        // the mask, so start it with none blocked and default dispositions.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGUSR1, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attributes, argv, env)
        guard rc == 0 else { throw TestError("cannot start \(path): \(rc)") }
        pid = child
    }

    deinit { kill(signal: SIGKILL) }

    /// Everything the process has written so far.
    public var output: String {
        guard let file = fopen(logPath, "r") else { return "" }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Waits until the output contains `text`.
    @discardableResult
    public func waitForOutput(_ text: String, seconds: Double = 10) -> Bool {
        waitUntil(seconds: seconds) { self.output.contains(text) }
    }

    public var isRunning: Bool {
        if reaped { return false }
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == pid {
            reaped = true
            exitStatus = status
            return false
        }
        return rc == 0
    }

    /// The exit code once the process has ended (`nil` while running or if killed by a signal).
    public var exitCode: Int32? {
        guard !isRunning else { return nil }
        return (exitStatus & 0x7f) == 0 ? (exitStatus >> 8) & 0xff : nil
    }

    public func kill(signal: Int32) {
        guard !reaped else { return }
        Glibc.kill(pid, signal)
        if signal == SIGKILL {
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            reaped = true
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `seconds`. Returns whether it exited on its own.
    @discardableResult
    public func stop(seconds: Double = 10) -> Bool {
        guard isRunning else { return true }
        kill(signal: SIGTERM)
        if waitUntil(seconds: seconds, { !self.isRunning }) { return true }
        kill(signal: SIGKILL)
        return false
    }
}

/// Seconds on the monotonic clock (for whole-process tests that measure a wait).
public func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass.
@discardableResult
public func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = monotonicSeconds() + seconds
    while true {
        if condition() { return true }
        if monotonicSeconds() > deadline { return false }
        usleep(20_000)
    }
}

/// Ports handed out in this test process (never twice).
private let portsHandedOut = Mutex<Set<Int>>([])

/// A TCP port on 127.0.0.1 that nothing listens on right now, chosen below the
/// kernel's ephemeral range (so that no outgoing connection takes it before the
/// process under test binds it) and never handed out twice.
public func freePort() -> Int {
    portsHandedOut.withLock { used in
        while true {
            let port = Int.random(in: 20_000...32_000)
            guard !used.contains(port), portIsFree(port) else { continue }
            used.insert(port)
            return port
        }
    }
}

private func portIsFree(_ port: Int) -> Bool {
    // Close-on-exec: a process spawned by another test at this instant must not
    // inherit the probe (it would hold the port, and its owner's bind would fail).
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// A fresh temporary folder.
public func temporaryDirectory(_ prefix: String) -> String {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    return String(cString: mkdtemp(&template))
}

/// Removes a folder made by `temporaryDirectory` and all in it, unless
/// `HERD_KEEP_TEST_DIRS` is set (to read a run's logs afterwards).
public func removeTemporaryDirectory(_ path: String) {
    guard getenv("HERD_KEEP_TEST_DIRS") == nil, path.hasPrefix("/tmp/herd-") else { return }
    _ = ProcessRunner.run("/bin/rm", ["-rf", "--", path])
}
