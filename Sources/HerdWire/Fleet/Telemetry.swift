import HerdJSON
/// Machine telemetry carried in a heartbeat (all optional on the wire; older
/// agents send none of it).
public struct Telemetry: Equatable, Sendable {
    /// Memory pressure, from PSI (`/proc/pressure/memory`) or, without PSI, from
    /// the share of memory available.
    public enum Pressure: String, Sendable, Comparable {
        case low, medium, high, critical
        var rank: Int { [Pressure.low, .medium, .high, .critical].firstIndex(of: self)! }
        public static func < (a: Pressure, b: Pressure) -> Bool { a.rank < b.rank }
    }

    /// Thermal state, from thermal zones and CPU frequency against its maximum.
    public enum ThermalState: String, Sendable, Comparable {
        case nominal, fair, serious, critical
        var rank: Int { [ThermalState.nominal, .fair, .serious, .critical].firstIndex(of: self)! }
        public static func < (a: ThermalState, b: ThermalState) -> Bool { a.rank < b.rank }
    }

    public struct GPU: Equatable, Sendable {
        public var vendor: String
        public var name: String
        public var memoryUsedBytes: Int
        public var memoryTotalBytes: Int
        /// 0…1.
        public var utilization: Double
        public var temperatureCelsius: Double?
        public var powerWatts: Double?
        /// The driver reports a throttling reason other than idle.
        public var throttled: Bool

        public init(vendor: String, name: String, memoryUsedBytes: Int, memoryTotalBytes: Int, utilization: Double = 0,
                    temperatureCelsius: Double? = nil, powerWatts: Double? = nil, throttled: Bool = false) {
            self.vendor = vendor
            self.name = name
            self.memoryUsedBytes = memoryUsedBytes
            self.memoryTotalBytes = memoryTotalBytes
            self.utilization = utilization
            self.temperatureCelsius = temperatureCelsius
            self.powerWatts = powerWatts
            self.throttled = throttled
        }
    }

    public var load1: Double = 0
    public var swapTotalBytes: Int = 0
    public var swapFreeBytes: Int = 0
    public var pressure: Pressure = .low
    /// PSI `some avg10` (% of time stalled on memory), when the kernel has PSI.
    public var pressureStallPercent: Double?
    public var gpus: [GPU] = []
    public var thermal: ThermalState = .nominal
    public var maxTemperatureCelsius: Double?
    /// CPU frequency well under its maximum while busy.
    public var cpuThrottled = false
    /// A camera is open (a process holds /dev/video*).
    public var cameraInUse = false
    /// A microphone is capturing (an ALSA capture stream is RUNNING).
    public var microphoneInUse = false

    public init() {}

    /// In a video call: camera or microphone in use.
    public var inMeeting: Bool { cameraInUse || microphoneInUse }

    public var json: JSONValue {
        var members: [(String, JSONValue)] = [
            ("load1", .number(load1)), ("swap_total_bytes", .int(swapTotalBytes)), ("swap_free_bytes", .int(swapFreeBytes)),
            ("pressure", .string(pressure.rawValue)), ("thermal", .string(thermal.rawValue)), ("cpu_throttled", .bool(cpuThrottled)),
            ("camera_in_use", .bool(cameraInUse)), ("microphone_in_use", .bool(microphoneInUse)),
            ("gpus", .array(gpus.map { g in
                var gpu: [(String, JSONValue)] = [("vendor", .string(g.vendor)), ("name", .string(g.name)), ("memory_used_bytes", .int(g.memoryUsedBytes)),
                                                  ("memory_total_bytes", .int(g.memoryTotalBytes)), ("utilization", .number(g.utilization)),
                                                  ("throttled", .bool(g.throttled))]
                if let t = g.temperatureCelsius { gpu.append(("temperature_c", .number(t))) }
                if let p = g.powerWatts { gpu.append(("power_w", .number(p))) }
                return .object(gpu)
            })),
        ]
        if let p = pressureStallPercent { members.append(("pressure_some_avg10", .number(p))) }
        if let t = maxTemperatureCelsius { members.append(("max_temperature_c", .number(t))) }
        return .object(members)
    }

    public init(json: JSONValue) throws(JSONFieldError) {
        let f = try JSONFields(json, context: "telemetry")
        load1 = try f.double("load1", default: 0)
        swapTotalBytes = try f.optionalInt("swap_total_bytes") ?? 0
        swapFreeBytes = try f.optionalInt("swap_free_bytes") ?? 0
        pressure = Pressure(rawValue: try f.optionalString("pressure") ?? "low") ?? .low
        pressureStallPercent = json["pressure_some_avg10"]?.doubleValue
        thermal = ThermalState(rawValue: try f.optionalString("thermal") ?? "nominal") ?? .nominal
        maxTemperatureCelsius = json["max_temperature_c"]?.doubleValue
        cpuThrottled = try f.bool("cpu_throttled", default: false)
        cameraInUse = try f.bool("camera_in_use", default: false)
        microphoneInUse = try f.bool("microphone_in_use", default: false)
        var gpus: [GPU] = []
        for g in try f.objects("gpus").prefix(16) {
            gpus.append(GPU(vendor: try g.optionalString("vendor") ?? "", name: try g.optionalString("name") ?? "",
                            memoryUsedBytes: try g.optionalInt("memory_used_bytes") ?? 0, memoryTotalBytes: try g.optionalInt("memory_total_bytes") ?? 0,
                            utilization: try g.double("utilization", default: 0), temperatureCelsius: g.value["temperature_c"]?.doubleValue,
                            powerWatts: g.value["power_w"]?.doubleValue, throttled: try g.bool("throttled", default: false)))
        }
        self.gpus = gpus
    }
}
