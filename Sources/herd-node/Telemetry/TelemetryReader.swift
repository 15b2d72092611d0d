import Glibc
import HerdHTTP
import HerdRuntime
import HerdWire

/// Reads the machine's telemetry from `/proc`, `/sys` and `nvidia-smi` under
/// `root` (tests point it at fixture trees). Blocking: call it off the loop.
/// The costly parts (nvidia-smi, scanning open files for a camera) run only
/// when `slow` is set, every few beats.
struct TelemetryReader: Sendable {
    var root = ""
    var meetingDetection = true
    /// Where nvidia-smi is looked for (nil: not used).
    var nvidiaSMI: String? = "/usr/bin/nvidia-smi"
    /// How long a command (nvidia-smi) may take before it is killed and its
    /// reading skipped: a hung driver must not stop the heartbeats.
    var commandTimeoutMilliseconds: Int32 = 5_000

    struct Reading: Sendable {
        var telemetry = Telemetry()
        var memoryTotal = 0
        var memoryAvailable = 0
    }

    func read(cpuBusy: Double, slow: Bool, previous: Telemetry?) -> Reading {
        var reading = Reading()
        var t = Telemetry()
        t.load1 = LinuxParsers.loadAverage(file("/proc/loadavg"))
        if let memory = LinuxParsers.memory(file("/proc/meminfo")) {
            reading.memoryTotal = memory.total
            reading.memoryAvailable = memory.available
            t.swapTotalBytes = memory.swapTotal
            t.swapFreeBytes = memory.swapFree
        }
        t.pressureStallPercent = LinuxParsers.pressureStall(file("/proc/pressure/memory"))
        t.pressure = LinuxParsers.pressure(stall: t.pressureStallPercent, total: reading.memoryTotal, available: reading.memoryAvailable)

        // GPUs: NVIDIA through nvidia-smi (slow beats), AMD through sysfs.
        if slow, let smi = nvidiaSMI, access(root + smi, X_OK) == 0 {
            t.gpus = LinuxParsers.nvidiaSMI(run(root + smi, ["--query-gpu=" + LinuxParsers.nvidiaQuery, "--format=csv,noheader,nounits"]))
        } else if let previous {
            t.gpus = previous.gpus.filter { $0.vendor == "nvidia" }
        }
        for card in list("/sys/class/drm").filter({ $0.hasPrefix("card") && !$0.contains("-") }).sorted() {
            let device = "/sys/class/drm/\(card)/device"
            let hwmon = list(device + "/hwmon").first.map { device + "/hwmon/" + $0 + "/temp1_input" }
            if let gpu = LinuxParsers.amdGPU(name: card, used: file(device + "/mem_info_vram_used"), total: file(device + "/mem_info_vram_total"),
                                             busy: file(device + "/gpu_busy_percent"), temperature: hwmon.flatMap { file($0) }) {
                t.gpus.append(gpu)
            }
        }

        // Thermal: the hottest zone, and CPU frequency against its maximum.
        let temperatures = list("/sys/class/thermal").filter { $0.hasPrefix("thermal_zone") }
            .compactMap { LinuxParsers.zoneTemperature(file("/sys/class/thermal/\($0)/temp")) }
        t.maxTemperatureCelsius = temperatures.max()
        let cpus = list("/sys/devices/system/cpu").filter { $0.hasPrefix("cpu") && $0.dropFirst(3).allSatisfy(\.isNumber) && $0.count > 3 }
        var ratios: [Double] = []
        for cpu in cpus {
            let base = "/sys/devices/system/cpu/\(cpu)/cpufreq/"
            if let current = file(base + "scaling_cur_freq").flatMap({ Double($0.trimmingSpaces) }),
               let maximum = file(base + "cpuinfo_max_freq").flatMap({ Double($0.trimmingSpaces) }), maximum > 0 {
                ratios.append(current / maximum)
            }
        }
        let ratio = ratios.isEmpty ? nil : ratios.reduce(0, +) / Double(ratios.count)
        (t.thermal, t.cpuThrottled) = LinuxParsers.thermalState(maxTemperature: t.maxTemperatureCelsius, frequencyRatio: ratio, cpuBusy: cpuBusy, gpus: t.gpus)

        // Meeting: a microphone capturing (cheap) and a camera open (slow beats).
        if meetingDetection {
            for card in list("/proc/asound").filter({ $0.hasPrefix("card") }) {
                for pcm in list("/proc/asound/\(card)").filter({ $0.hasPrefix("pcm") && $0.hasSuffix("c") }) {
                    for sub in list("/proc/asound/\(card)/\(pcm)").filter({ $0.hasPrefix("sub") })
                    where LinuxParsers.captureRunning(file("/proc/asound/\(card)/\(pcm)/\(sub)/status")) {
                        t.microphoneInUse = true
                    }
                }
            }
            if slow {
                t.cameraInUse = cameraOpen()
            } else {
                t.cameraInUse = previous?.cameraInUse ?? false
            }
        }
        reading.telemetry = t
        return reading
    }

    /// Whether some process holds a `/dev/video*` device open. Skipped at once
    /// when the machine has no video device.
    private func cameraOpen() -> Bool {
        guard list("/dev").contains(where: { $0.hasPrefix("video") }) else { return false }
        for pid in processIDs() {
            let fdDirectory = "/proc/\(pid)/fd"
            let targets = list(fdDirectory).compactMap { link(fdDirectory + "/" + $0) }
            if LinuxParsers.holdsCamera(targets) { return true }
        }
        return false
    }

    /// `OLLAMA_NUM_PARALLEL` of each `ollama serve` process this user may
    /// read the environment of (its own, or any as root), by the port it
    /// serves on: set to a number, or unset (then Ollama picks it by its
    /// version's rule, `LinuxParsers.ollamaDefaultParallel`). Unreadable:
    /// absent (the router learns it instead).
    func ollamaParallelism() -> [Int: OllamaParallel] {
        var byPort: [Int: OllamaParallel] = [:]
        for pid in processIDs() {
            guard let cmdline = file("/proc/\(pid)/cmdline"), LinuxParsers.isOllamaServe(cmdline: cmdline),
                  let environ = file("/proc/\(pid)/environ") else { continue }
            let found = LinuxParsers.ollamaEnvironment(environ)
            byPort[found.port] = found.parallel.map(OllamaParallel.set) ?? .unset
        }
        return byPort
    }

    /// CPU time (clock ticks, all threads) and resident memory of the model
    /// servers on this machine — Ollama and its runners, llama.cpp's server,
    /// vLLM — so that the owner's own use can be told apart from herd's work.
    func backendProcessUsage() -> (ticks: UInt64, residentBytes: Int) {
        var ticks: UInt64 = 0
        var resident = 0
        let page = Int(sysconf(Int32(clamping: _SC_PAGESIZE)))
        for pid in processIDs() {
            guard let comm = file("/proc/\(pid)/comm"), LinuxParsers.isModelServer(comm: comm),
                  let stat = file("/proc/\(pid)/stat"), let used = LinuxParsers.processTicks(stat) else { continue }
            ticks += used
            if let statm = file("/proc/\(pid)/statm"), let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
                resident += pages * page
            }
        }
        return (ticks, resident)
    }

    // MARK: Filesystem under root

    /// The process ids under `/proc`.
    func processIDs() -> [String] {
        list("/proc").filter { !$0.isEmpty && $0.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } }
    }

    func file(_ path: String) -> String? { SystemSampler.read(root + path) }

    func list(_ path: String) -> [String] {
        guard let directory = opendir(root + path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    private func link(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 512)
        let n = readlink(root + path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Runs a tool and returns what it printed (nil if it failed).
    private func run(_ path: String, _ arguments: [String]) -> String? {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return nil }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            return nil
        }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let deadline = EventLoop.monotonicNanoseconds() + UInt64(clamping: commandTimeoutMilliseconds) * 1_000_000
        var timedOut = false
        while output.count < 1 << 20 {
            let now = EventLoop.monotonicNanoseconds()
            guard now < deadline else {
                timedOut = true
                break
            }
            var ready = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
            let waited = poll(&ready, 1, Int32(clamping: (deadline - now) / 1_000_000) + 1)
            if waited < 0, errno == EINTR { continue }
            if waited <= 0 { continue } // the deadline check above ends it
            let n = Glibc.read(fds[0], &chunk, chunk.count)
            if n <= 0 { break }
            output.append(contentsOf: chunk[0..<n])
        }
        close(fds[0])
        if timedOut { kill(pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        return !timedOut && status == 0 ? String(decoding: output, as: UTF8.self) : nil
    }
}

/// An `ollama serve` process's `OLLAMA_NUM_PARALLEL`.
enum OllamaParallel: Equatable, Sendable {
    case set(Int)
    /// Not in its environment: Ollama picks it (`LinuxParsers.ollamaDefaultParallel`).
    case unset
}
