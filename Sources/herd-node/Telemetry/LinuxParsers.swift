import HerdBounds
import HerdHTTP
import HerdWire

/// Pure parsers of what the Linux kernel and vendor tools print. Each takes
/// the text (or nil when the file is absent) and never fails: missing or
/// malformed input gives "unknown" values, never a crash.
enum LinuxParsers {
    /// `/proc/loadavg` → the 1-minute load.
    static func loadAverage(_ text: String?) -> Double {
        guard let first = text?.split(separator: " ").first, let value = Double(first), value.isFinite else { return 0 }
        return value
    }

    /// `/proc/meminfo` → total, available, swap total, swap free (bytes).
    static func memory(_ text: String?) -> (total: Int, available: Int, swapTotal: Int, swapFree: Int)? {
        guard let text else { return nil }
        var values: [Substring: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let kb = Int(parts[1]), kb >= 0 else { continue }
            values[parts[0]] = kb * 1024
        }
        guard let total = values["MemTotal:"] else { return nil }
        let available = values["MemAvailable:"] ?? ((values["MemFree:"] ?? 0) + (values["Cached:"] ?? 0))
        return (total, min(available, total), values["SwapTotal:"] ?? 0, values["SwapFree:"] ?? 0)
    }

    /// `/proc/net/tcp` or `/proc/net/tcp6` → the remote hosts of established
    /// connections to local port `port` (numeric, distinct, in table order).
    /// Addresses are hex in the kernel's byte order: each 32-bit word little-endian.
    static func establishedPeers(_ text: String?, localPort port: Int) -> [String] {
        guard let text else { return [] }
        var peers: [String] = []
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 3, fields[3] == "01" else { continue }
            let local = fields[1].split(separator: ":"), remote = fields[2].split(separator: ":")
            guard local.count == 2, remote.count == 2, Int(local[1], radix: 16) == port,
                  let host = hexAddress(remote[0]), !peers.contains(host) else { continue }
            peers.append(host)
        }
        return peers
    }

    /// A `/proc/net/tcp*` address (8 or 32 hex digits) as a numeric host.
    static func hexAddress(_ hex: Substring) -> String? {
        let digits = Array(hex.utf8)
        guard digits.count == 8 || digits.count == 32 else { return nil }
        var bytes: [UInt8] = []
        for word in stride(from: 0, to: digits.count, by: 8) {
            guard let value = UInt32(String(decoding: digits[word..<word + 8], as: UTF8.self), radix: 16) else { return nil }
            let little = UInt32(littleEndian: value)
            bytes += [UInt8(little & 0xFF), UInt8((little >> 8) & 0xFF), UInt8((little >> 16) & 0xFF), UInt8(little >> 24)]
        }
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        // IPv4-mapped IPv6 (::ffff:a.b.c.d) reads as IPv4.
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return bytes[12...].map(String.init).joined(separator: ".")
        }
        if bytes[0..<15].allSatisfy({ $0 == 0 }), bytes[15] == 1 { return "::1" }
        var groups: [String] = []
        for i in stride(from: 0, to: 16, by: 2) { groups.append(String(UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1]), radix: 16)) }
        return groups.joined(separator: ":")
    }

    /// `/proc/pressure/memory` → `some avg10` (percent of time stalled).
    static func pressureStall(_ text: String?) -> Double? {
        guard let line = text?.split(separator: "\n").first(where: { $0.hasPrefix("some ") }) else { return nil }
        for field in line.split(separator: " ") where field.hasPrefix("avg10=") {
            if let value = Double(field.dropFirst(6)), value.isFinite, value >= 0 { return value }
        }
        return nil
    }

    /// Pressure from PSI when present, else from the share of memory available.
    static func pressure(stall: Double?, total: Int, available: Int) -> Telemetry.Pressure {
        if let stall {
            if stall >= 40 { return .critical }
            if stall >= 10 { return .high }
            if stall >= 1 { return .medium }
            return .low
        }
        guard total > 0 else { return .low }
        let free = Double(available) / Double(total)
        if free < 0.05 { return .critical }
        if free < 0.15 { return .high }
        if free < 0.30 { return .medium }
        return .low
    }

    /// `nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu,temperature.gpu,power.draw,clocks_throttle_reasons.active
    /// --format=csv,noheader,nounits` → GPUs (MiB → bytes). Lines that do not parse are skipped.
    static let nvidiaQuery = "name,memory.used,memory.total,utilization.gpu,temperature.gpu,power.draw,clocks_throttle_reasons.active"

    static func nvidiaSMI(_ text: String?) -> [Telemetry.GPU] {
        guard let text else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingSpaces }
            guard fields.count >= 4, let used = Double(fields[1]), let total = Double(fields[2]), total > 0 else { return nil }
            let utilization = Double(fields[3]).map { max(0, min(1, $0 / 100)) } ?? 0
            let temperature = fields.count > 4 ? Double(fields[4]) : nil
            let power = fields.count > 5 ? Double(fields[5]) : nil
            // Throttle reasons is a bitmask; 0x1 is "GPU idle", which is not throttling.
            var throttled = false
            if fields.count > 6 {
                let mask = fields[6].hasPrefix("0x") ? UInt64(fields[6].dropFirst(2), radix: 16) : UInt64(fields[6])
                throttled = (mask ?? 0) & ~UInt64(1) != 0
            }
            return Telemetry.GPU(vendor: "nvidia", name: String(fields[0]), memoryUsedBytes: Int(saturating: used * 1_048_576),
                                 memoryTotalBytes: Int(saturating: total * 1_048_576), utilization: utilization, temperatureCelsius: temperature,
                                 powerWatts: power, throttled: throttled)
        }
    }

    /// An AMD card from sysfs: `mem_info_vram_used`, `mem_info_vram_total`
    /// (bytes), `gpu_busy_percent`, hwmon `temp1_input` (millidegrees).
    static func amdGPU(name: String, used: String?, total: String?, busy: String?, temperature: String?) -> Telemetry.GPU? {
        guard let total = total.flatMap({ Int($0.trimmingSpaces) }), total > 0 else { return nil }
        let used = used.flatMap { Int($0.trimmingSpaces) } ?? 0
        let busy = busy.flatMap { Double($0.trimmingSpaces) }.map { max(0, min(1, $0 / 100)) } ?? 0
        let temp = temperature.flatMap { Double($0.trimmingSpaces) }.map { $0 / 1000 }
        return Telemetry.GPU(vendor: "amd", name: name, memoryUsedBytes: used, memoryTotalBytes: total, utilization: busy, temperatureCelsius: temp)
    }

    /// A thermal zone's `temp` (millidegrees Celsius) → degrees; nil when absent or absurd.
    static func zoneTemperature(_ text: String?) -> Double? {
        guard let value = text.flatMap({ Double($0.trimmingSpaces) }) else { return nil }
        let celsius = value / 1000
        return celsius > -50 && celsius < 150 ? celsius : nil
    }

    /// The thermal state from the hottest zone, whether the CPU runs well under
    /// its maximum frequency while busy, and the GPUs.
    static func thermalState(maxTemperature: Double?, frequencyRatio: Double?, cpuBusy: Double, gpus: [Telemetry.GPU]) -> (Telemetry.ThermalState, Bool) {
        var state = Telemetry.ThermalState.nominal
        let temperatures = [maxTemperature].compactMap { $0 } + gpus.compactMap(\.temperatureCelsius)
        if let hottest = temperatures.max() {
            if hottest >= 95 { state = .critical } else if hottest >= 85 { state = .serious } else if hottest >= 75 { state = .fair }
        }
        // Frequency well under the maximum while busy: the CPU is being throttled.
        let throttled = (frequencyRatio.map { $0 < 0.6 } ?? false) && cpuBusy > 0.5
        if throttled { state = max(state, .serious) }
        if gpus.contains(where: \.throttled) { state = max(state, .fair) }
        return (state, throttled)
    }

    /// An ALSA capture substream's `status` → whether it is capturing.
    static func captureRunning(_ text: String?) -> Bool {
        guard let text else { return false }
        return text.split(separator: "\n").contains { $0.trimmingSpaces == "state: RUNNING" }
    }

    /// Whether any of a process's open-file link targets is a camera device.
    static func holdsCamera(_ targets: [String]) -> Bool {
        targets.contains { $0.hasPrefix("/dev/video") }
    }

    // MARK: Backend parallelism

    /// What Ollama serves at once per model when `OLLAMA_NUM_PARALLEL` is
    /// unset, by its version: 1 from 0.10.0 (ollama/ollama#11330, July 2025:
    /// "parallelism is explicit"); before, from 0.2.0, 4 when the model fits
    /// in memory at 4 × its context (else 1: the router's learner finds that,
    /// 4 being a ceiling); before 0.2.0, 1. Nil: a version not understood.
    static func ollamaDefaultParallel(version: String?) -> Int? {
        guard let version else { return nil }
        let core = version.split(separator: "-").first ?? ""
        let parts = core.split(separator: ".").map { Int($0) }
        guard parts.count >= 2, let major = parts[0], let minor = parts[1] else { return nil }
        if major > 0 || minor >= 10 { return 1 }
        return minor >= 2 ? 4 : 1
    }

    /// `/proc/<pid>/cmdline` (NUL-separated) of an `ollama serve` process.
    static func isOllamaServe(cmdline: String) -> Bool {
        let argv = cmdline.split(separator: "\0", omittingEmptySubsequences: false)
        guard argv.count >= 2, let program = argv[0].split(separator: "/").last else { return false }
        return (program == "ollama" || program.hasPrefix("ollama-")) && argv[1] == "serve"
    }

    /// From an `ollama serve` process's environment (NUL-separated): its
    /// `OLLAMA_NUM_PARALLEL` (nil when unset or not a number in 1–1024) and
    /// the port of its `OLLAMA_HOST` (11434 when unset or without one).
    static func ollamaEnvironment(_ environ: String) -> (parallel: Int?, port: Int) {
        var parallel: Int?
        var port = 11434
        for entry in environ.split(separator: "\0") {
            if entry.hasPrefix("OLLAMA_NUM_PARALLEL=") {
                if let n = Int(entry.dropFirst("OLLAMA_NUM_PARALLEL=".count)), (1...1024).contains(n) { parallel = n }
            } else if entry.hasPrefix("OLLAMA_HOST=") {
                var host = entry.dropFirst("OLLAMA_HOST=".count)
                if let scheme = host.firstRange(of: "://") { host = host[scheme.upperBound...] }
                if let slash = host.firstIndex(of: "/") { host = host[..<slash] }
                // [v6]:port, host:port; a bare IPv6 address has no port.
                var portText: Substring?
                if host.first == "[" {
                    if let close = host.firstRange(of: "]:") { portText = host[close.upperBound...] }
                } else if host.filter({ $0 == ":" }).count == 1, let colon = host.firstIndex(of: ":") {
                    portText = host[host.index(after: colon)...]
                }
                if let portText, let p = Int(portText), (1...65535).contains(p) { port = p }
            }
        }
        return (parallel, port)
    }

    /// A process that serves herd's requests, not the owner (`/proc/<pid>/comm`,
    /// 15 characters at most): the model servers and herd's own processes.
    static func isModelServer(comm: String) -> Bool {
        let name = comm.split(separator: "\n").first.map(String.init) ?? ""
        return name.hasPrefix("ollama") || name.hasPrefix("llama-server") || name.hasPrefix("llama_server") || name.hasPrefix("vllm")
            || name.hasPrefix("herd-")
    }

    /// utime + stime (clock ticks) from `/proc/<pid>/stat` (fields 14 and 15, counted after the `)` that ends the name).
    static func processTicks(_ stat: String) -> UInt64? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After ")": state is field 3, so utime (14) is index 11, stime (15) index 12.
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return user + system
    }
}
