import Glibc
import HerdRuntime

/// Runs `count` herd-proxy children, restarts one that dies (with backoff),
/// and stops them all on shutdown. Loop-thread only.
final class ProxySupervisor {
    struct Settings: Sendable {
        var count: Int
        var executable: String
        var host: String
        var port: Int
        var controlSocket: String
        var extraArguments: [String] = []
    }

    private let loop: EventLoop
    private let settings: Settings
    private let log: Logger
    private var children: [Int: ChildProcess] = [:]
    private var restartDelays: [Int: UInt64] = [:]
    private var stopping = false
    private var onAllExited: (() -> Void)?

    init(loop: EventLoop, settings: Settings, log: Logger) {
        self.loop = loop
        self.settings = settings
        self.log = log
    }

    var runningCount: Int { children.count }

    func start() {
        for index in 0..<settings.count { spawn(index) }
    }

    private func spawn(_ index: Int) {
        guard !stopping else { return }
        let arguments = ["--host", settings.host, "--port", String(settings.port), "--control-socket", settings.controlSocket,
                         "--proxy-id", "proxy-\(index)", "--exit-with-parent"] + settings.extraArguments
        do {
            let child = try ChildProcess(loop: loop, path: settings.executable, arguments: arguments) { [weak self] status, signal in
                self?.exited(index, status: status, signal: signal)
            }
            children[index] = child
            log.info("started herd-proxy proxy-\(index) (pid \(child.pid)) on \(settings.host):\(settings.port)")
        } catch {
            log.error("cannot start \(settings.executable): \(error)")
            scheduleRestart(index)
        }
    }

    private func exited(_ index: Int, status: Int64, signal: Int32) {
        children[index] = nil
        if stopping {
            if children.isEmpty {
                let callback = onAllExited
                onAllExited = nil
                callback?()
            }
            return
        }
        log.warning("herd-proxy proxy-\(index) exited (status \(status), signal \(signal)); restarting")
        scheduleRestart(index)
    }

    private func scheduleRestart(_ index: Int) {
        let delay = restartDelays[index].map { min($0 * 2, 30_000) } ?? 250
        restartDelays[index] = delay
        let timer = LoopTimer(loop: loop)
        timer.start(after: delay) { [weak self] in
            timer.close()
            self?.spawn(index)
        }
        // A child that stays up a minute has its backoff reset.
        let reset = LoopTimer(loop: loop)
        reset.start(after: delay + 60_000) { [weak self] in
            reset.close()
            if self?.children[index] != nil { self?.restartDelays[index] = nil }
        }
    }

    /// SIGTERMs every child (they drain), SIGKILLs stragglers after `deadline`
    /// milliseconds, and calls `completion` when all have exited.
    func stop(deadline: UInt64, completion: @escaping () -> Void) {
        stopping = true
        if children.isEmpty {
            completion()
            return
        }
        onAllExited = completion
        for child in children.values { signal(child, SIGTERM) }
        let timer = LoopTimer(loop: loop)
        timer.start(after: deadline) { [weak self] in
            timer.close()
            guard let self else { return }
            for child in self.children.values { self.signal(child, SIGKILL) }
        }
    }

    private func signal(_ child: ChildProcess, _ signal: Int32) {
        do {
            try child.kill(signal)
        } catch {
            log.warning("cannot signal herd-proxy (pid \(child.pid)): \(error)")
        }
    }
}
