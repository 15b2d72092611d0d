import HerdJSON

/// The range of every number and the length of every string a heartbeat
/// carries. A heartbeat outside them is refused whole (400 naming the
/// field), so nothing a node (or a forger who knows no key) sends can reach
/// the scorer's arithmetic out of range: sizes stay below 2^50 bytes (1 PiB),
/// so a fleet's sums of them cannot overflow.
public enum HeartbeatRanges {
    /// Bytes: memory, VRAM, model sizes, swap.
    public static let bytes = 0...(1 << 50)
    /// A model's context, tokens.
    public static let contextLength = 0...16_777_216
    /// CPU cores.
    public static let cores = 0...65_536
    /// A share of something (utilisation).
    public static let share = 0.0...1.0
    /// Degrees Celsius.
    public static let celsius = -100.0...250.0
    /// Watts.
    public static let watts = 0.0...100_000.0
    /// Load average.
    public static let load = 0.0...1_000_000.0
    /// Percent.
    public static let percent = 0.0...100.0
    /// The node's clock, ms since 1970 (0: not sent) — up to the year 3000.
    public static let sentAt = 0...32_503_680_000_000
    /// Short strings (versions, digests, dates, vendors, GPU names), bytes.
    public static let shortText = 256
    /// Longer strings (a backend's error, its URL), bytes.
    public static let text = 1_024
    /// Capabilities per model, and bytes each.
    public static let capabilities = 32

    /// Throws naming the first field outside its range.
    public static func check(_ h: Heartbeat) throws(JSONFieldError) {
        try within(h.sentAtMilliseconds, sentAt, "heartbeat.sent_at_ms")
        if let interval = h.intervalMilliseconds { try within(interval, Heartbeat.intervalRange, "heartbeat.interval_ms") }
        try length(h.agentVersion, shortText, "heartbeat.agent_version")
        try within(h.cpu.cores, cores, "heartbeat.cpu.cores")
        try within(h.cpu.utilization, share, "heartbeat.cpu.utilization")
        try within(h.memory.totalBytes, bytes, "heartbeat.memory.total_bytes")
        try within(h.memory.availableBytes, bytes, "heartbeat.memory.available_bytes")
        let t = h.telemetry
        try within(t.load1, load, "heartbeat.telemetry.load1")
        try within(t.swapTotalBytes, bytes, "heartbeat.telemetry.swap_total_bytes")
        try within(t.swapFreeBytes, bytes, "heartbeat.telemetry.swap_free_bytes")
        if let p = t.pressureStallPercent { try within(p, percent, "heartbeat.telemetry.pressure_some_avg10") }
        if let c = t.maxTemperatureCelsius { try within(c, celsius, "heartbeat.telemetry.max_temperature_c") }
        for (i, gpu) in t.gpus.prefix(16).enumerated() {
            let path = "heartbeat.telemetry.gpus[\(i)]"
            try length(gpu.vendor, shortText, path + ".vendor")
            try length(gpu.name, shortText, path + ".name")
            try within(gpu.memoryUsedBytes, bytes, path + ".memory_used_bytes")
            try within(gpu.memoryTotalBytes, bytes, path + ".memory_total_bytes")
            try within(gpu.utilization, share, path + ".utilization")
            if let c = gpu.temperatureCelsius { try within(c, celsius, path + ".temperature_c") }
            if let w = gpu.powerWatts { try within(w, watts, path + ".power_w") }
        }
        for (i, backend) in h.backends.enumerated() {
            let path = "heartbeat.backends[\(i)]"
            try length(backend.url, text, path + ".url")
            if let version = backend.version { try length(version, shortText, path + ".version") }
            if let error = backend.error { try length(error, text, path + ".error") }
            for (j, model) in backend.models.enumerated() {
                let m = "\(path).models[\(j)]"
                try within(model.sizeBytes, bytes, m + ".size")
                try length(model.digest, shortText, m + ".digest")
                try length(model.modifiedAt, shortText, m + ".modified_at")
                guard model.capabilities.count <= capabilities, model.capabilities.allSatisfy({ $0.utf8.count <= capabilities }) else {
                    throw JSONFieldError("\(m).capabilities: at most \(capabilities), each at most \(capabilities) bytes")
                }
            }
            for (j, model) in backend.loaded.enumerated() {
                let m = "\(path).loaded[\(j)]"
                try within(model.sizeBytes, bytes, m + ".size")
                try within(model.vramBytes, bytes, m + ".size_vram")
                try within(model.contextLength, contextLength, m + ".context_length")
                try length(model.expiresAt, shortText, m + ".expires_at")
            }
        }
    }

    static func within(_ value: Int, _ range: ClosedRange<Int>, _ field: String) throws(JSONFieldError) {
        guard range.contains(value) else { throw JSONFieldError("\(field) must be \(range.lowerBound)–\(range.upperBound) (got \(value))") }
    }

    static func within(_ value: Double, _ range: ClosedRange<Double>, _ field: String) throws(JSONFieldError) {
        guard value.isFinite, range.contains(value) else {
            throw JSONFieldError("\(field) must be \(range.lowerBound)–\(range.upperBound)")
        }
    }

    static func length(_ value: String, _ maxBytes: Int, _ field: String) throws(JSONFieldError) {
        guard value.utf8.count <= maxBytes else { throw JSONFieldError("\(field): at most \(maxBytes) bytes") }
    }
}
