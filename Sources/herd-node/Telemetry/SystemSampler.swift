import Glibc

/// CPU and memory from the kernel (`/proc/stat`, `/proc/meminfo`), parsed by
/// pure functions so that they are tested on fixture text.
struct SystemSampler {
    private var lastTotal: UInt64 = 0
    private var lastIdle: UInt64 = 0

    struct Sample: Equatable {
        var cores: Int
        var cpuUtilization: Double
        var memoryTotalBytes: Int
        var memoryAvailableBytes: Int
    }

    /// Reads the current sample; CPU utilisation is over the time since the last call.
    mutating func sample() -> Sample {
        let cores = Int(sysconf(Int32(clamping: _SC_NPROCESSORS_ONLN)))
        var utilization = 0.0
        if let stat = SystemSampler.read("/proc/stat"), let (total, idle) = SystemSampler.parseCPU(stat) {
            if lastTotal > 0, total > lastTotal {
                utilization = 1 - Double(idle - min(idle, lastIdle)) / Double(total - lastTotal)
            }
            lastTotal = total
            lastIdle = idle
        }
        let memory = SystemSampler.read("/proc/meminfo").flatMap(SystemSampler.parseMemory) ?? (0, 0)
        return Sample(cores: cores, cpuUtilization: max(0, min(1, utilization)), memoryTotalBytes: memory.total, memoryAvailableBytes: memory.available)
    }

    /// `cpu  user nice system idle iowait irq softirq steal …` → (total, idle+iowait) jiffies.
    static func parseCPU(_ text: String) -> (UInt64, UInt64)? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let values = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard values.count >= 4 else { return nil }
        let total = values.prefix(8).reduce(0, +)
        let idle = values[3] + (values.count > 4 ? values[4] : 0)
        return (total, idle)
    }

    /// `MemTotal:` and `MemAvailable:` (kB) → bytes.
    static func parseMemory(_ text: String) -> (total: Int, available: Int)? {
        var total: Int?
        var available: Int?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let kb = Int(parts[1]) else { continue }
            if parts[0] == "MemTotal:" { total = kb * 1024 }
            if parts[0] == "MemAvailable:" { available = kb * 1024 }
        }
        guard let total, let available else { return nil }
        return (total, available)
    }

    static func read(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            out.append(contentsOf: buffer[0..<n])
            if out.count > 1 << 20 { break }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
