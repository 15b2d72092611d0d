import Glibc

/// Runs the package's own binaries in tests (whole-process tests).
public enum ProcessRunner {
    /// The build folder holding the test bundle and the executables.
    public static var buildDirectory: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let path = String(decoding: buffer[0..<max(n, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var parts = path.split(separator: "/", omittingEmptySubsequences: false)
        // Linux: …/.build/debug/herdPackageTests.xctest is the test binary itself.
        parts.removeLast()
        return parts.joined(separator: "/")
    }

    /// The path of the executable `name` built with the tests.
    public static func executable(_ name: String) -> String { buildDirectory + "/" + name }

    /// Runs `path` with `arguments` to completion; returns its exit status and
    /// everything it wrote to stdout and stderr.
    public static func run(_ path: String, _ arguments: [String], environment: [String: String] = [:]) -> (status: Int32, output: String) {
        var pipeFDs: [Int32] = [0, 0]
        pipe(&pipeFDs)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
        posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        var env: [UnsafeMutablePointer<CChar>?] = []
        var e = environ
        while let entry = e.pointee {
            env.append(strdup(entry))
            e += 1
        }
        for (key, value) in environment { env.append(strdup("\(key)=\(value)")) }
        env.append(nil)
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, env)
        posix_spawn_file_actions_destroy(&actions)
        close(pipeFDs[1])
        for p in argv { free(p) }
        for p in env { free(p) }
        guard rc == 0 else {
            close(pipeFDs[0])
            return (-1, "spawn failed: \(rc)")
        }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
            if n <= 0 { break }
            output.append(contentsOf: chunk[0..<n])
        }
        close(pipeFDs[0])
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1
        return (exitCode, String(decoding: output, as: UTF8.self))
    }
}
