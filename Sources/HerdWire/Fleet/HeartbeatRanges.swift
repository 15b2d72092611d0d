import HerdBounds
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

extension Heartbeat {
    /// This heartbeat with every value brought within `HeartbeatRanges` and
    /// `validate`'s counts: numbers clamped (a reading that is not a finite
    /// number is left out), strings cut, models with unusable names dropped.
    /// herd-node sends this, so a backend or a sensor that reports nonsense
    /// costs that value, not the whole node's heartbeats.
    public func fittedToRanges() -> Heartbeat {
        var h = self
        let bytes = HeartbeatRanges.bytes
        h.sentAtMilliseconds = sentAtMilliseconds.clamped(to: HeartbeatRanges.sentAt)
        h.intervalMilliseconds = intervalMilliseconds?.clamped(to: Heartbeat.intervalRange)
        h.agentVersion = agentVersion.truncated(toBytes: HeartbeatRanges.shortText)
        h.cpu.cores = cpu.cores.clamped(to: HeartbeatRanges.cores)
        h.cpu.utilization = cpu.utilization.clamped(to: HeartbeatRanges.share)
        h.memory.totalBytes = memory.totalBytes.clamped(to: bytes)
        h.memory.availableBytes = memory.availableBytes.clamped(to: bytes)
        h.telemetry.load1 = telemetry.load1.clamped(to: HeartbeatRanges.load)
        h.telemetry.swapTotalBytes = telemetry.swapTotalBytes.clamped(to: bytes)
        h.telemetry.swapFreeBytes = telemetry.swapFreeBytes.clamped(to: bytes)
        h.telemetry.pressureStallPercent = telemetry.pressureStallPercent.flatMap { Self.fit($0, HeartbeatRanges.percent) }
        h.telemetry.maxTemperatureCelsius = telemetry.maxTemperatureCelsius.flatMap { Self.fit($0, HeartbeatRanges.celsius) }
        h.telemetry.gpus = telemetry.gpus.prefix(16).map { gpu in
            var g = gpu
            g.vendor = gpu.vendor.truncated(toBytes: HeartbeatRanges.shortText)
            g.name = gpu.name.truncated(toBytes: HeartbeatRanges.shortText)
            g.memoryUsedBytes = gpu.memoryUsedBytes.clamped(to: bytes)
            g.memoryTotalBytes = gpu.memoryTotalBytes.clamped(to: bytes)
            g.utilization = gpu.utilization.clamped(to: HeartbeatRanges.share)
            g.temperatureCelsius = gpu.temperatureCelsius.flatMap { Self.fit($0, HeartbeatRanges.celsius) }
            g.powerWatts = gpu.powerWatts.flatMap { Self.fit($0, HeartbeatRanges.watts) }
            return g
        }
        h.backends = backends.prefix(16).map { backend in
            var b = backend
            b.url = backend.url.truncated(toBytes: HeartbeatRanges.text)
            b.version = backend.version?.truncated(toBytes: HeartbeatRanges.shortText)
            b.error = backend.error?.truncated(toBytes: HeartbeatRanges.text)
            if let parallel = backend.parallel, !(1...1024).contains(parallel) { b.parallel = nil }
            if let queue = backend.queue {
                let range = 0...QueueGauges.maxCount
                b.queue = range.contains(queue.running) && range.contains(queue.waiting) && queue.source.utf8.count <= 16 ? queue : nil
            }
            b.directClients = Array(backend.directClients.prefix(Backend.maxDirectClients))
            b.models = backend.models.lazy.filter { !$0.name.isEmpty && $0.name.utf8.count <= 512 }.prefix(4096).map { model in
                var m = model
                m.sizeBytes = model.sizeBytes.clamped(to: bytes)
                m.digest = model.digest.truncated(toBytes: HeartbeatRanges.shortText)
                m.modifiedAt = model.modifiedAt.truncated(toBytes: HeartbeatRanges.shortText)
                m.capabilities = Array(model.capabilities.filter { $0.utf8.count <= HeartbeatRanges.capabilities }.prefix(HeartbeatRanges.capabilities))
                return m
            }
            b.loaded = backend.loaded.lazy.filter { !$0.name.isEmpty && $0.name.utf8.count <= 512 }.prefix(256).map { model in
                var m = model
                m.sizeBytes = model.sizeBytes.clamped(to: bytes)
                m.vramBytes = model.vramBytes.clamped(to: bytes)
                m.contextLength = model.contextLength.clamped(to: HeartbeatRanges.contextLength)
                m.expiresAt = model.expiresAt.truncated(toBytes: HeartbeatRanges.shortText)
                return m
            }
            return b
        }
        if var capacity {
            capacity.availability = capacity.availability.clamped(to: 0...1)
            capacity.memoryCeilingBytes = capacity.memoryCeilingBytes.clamped(to: bytes)
            capacity.learnedHours = capacity.learnedHours.clamped(to: 0...168)
            if let week = capacity.week, week.count != 168 || !week.allSatisfy({ $0 == -1 || (0...1).contains($0) }) { capacity.week = nil }
            h.capacity = capacity
        }
        return h
    }

    /// `value` when finite, clamped to `range`; nil when not a number.
    private static func fit(_ value: Double, _ range: ClosedRange<Double>) -> Double? {
        value.isFinite ? value.clamped(to: range) : nil
    }
}
