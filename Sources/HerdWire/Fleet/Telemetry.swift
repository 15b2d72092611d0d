import HerdJSON

/// Machine telemetry carried in a heartbeat: `Codable` over `JSONValue`,
/// every field optional on the wire (older agents send none of it).
public struct Telemetry: Equatable, Sendable, Codable {
    public enum Unknown: WireDefault { public static var value: Telemetry { Telemetry() } }

    /// Memory pressure, from PSI (`/proc/pressure/memory`) or, without PSI, from
    /// the share of memory available.
    public enum Pressure: String, Sendable, Comparable, Codable, CaseIterable {
        case low, medium, high, critical
        var rank: Int { Pressure.allCases.firstIndex(of: self)! }
        public static func < (a: Pressure, b: Pressure) -> Bool { a.rank < b.rank }

        /// A level a newer agent knows and this control does not reads as `low`.
        public init(from decoder: any Decoder) throws {
            self = Pressure(rawValue: try decoder.singleValueContainer().decode(String.self)) ?? .low
        }
    }

    /// Thermal state, from thermal zones and CPU frequency against its maximum.
    public enum ThermalState: String, Sendable, Comparable, Codable, CaseIterable {
        case nominal, fair, serious, critical
        var rank: Int { ThermalState.allCases.firstIndex(of: self)! }
        public static func < (a: ThermalState, b: ThermalState) -> Bool { a.rank < b.rank }

        /// A state a newer agent knows and this control does not reads as `nominal`.
        public init(from decoder: any Decoder) throws {
            self = ThermalState(rawValue: try decoder.singleValueContainer().decode(String.self)) ?? .nominal
        }
    }

    public struct GPU: Equatable, Sendable, Codable {
        @Defaulted<WireDefaults.EmptyString> public var vendor: String
        @Defaulted<WireDefaults.EmptyString> public var name: String
        @Defaulted<WireDefaults.Zero> public var memoryUsedBytes: Int
        @Defaulted<WireDefaults.Zero> public var memoryTotalBytes: Int
        /// 0…1.
        @Defaulted<WireDefaults.ZeroNumber> public var utilization: Double
        public var temperatureCelsius: Double?
        public var powerWatts: Double?
        /// The driver reports a throttling reason other than idle.
        @Defaulted<WireDefaults.False> public var throttled: Bool

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

        enum CodingKeys: String, CodingKey {
            case vendor, name, memoryUsedBytes = "memory_used_bytes", memoryTotalBytes = "memory_total_bytes", utilization,
                 temperatureCelsius = "temperature_c", powerWatts = "power_w", throttled
        }
    }

    public enum Low: WireDefault { public static var value: Pressure { .low } }
    public enum Nominal: WireDefault { public static var value: ThermalState { .nominal } }

    @Defaulted<WireDefaults.ZeroNumber> public var load1: Double = 0
    @Defaulted<WireDefaults.Zero> public var swapTotalBytes: Int = 0
    @Defaulted<WireDefaults.Zero> public var swapFreeBytes: Int = 0
    @Defaulted<Low> public var pressure: Pressure = .low
    /// PSI `some avg10` (% of time stalled on memory), when the kernel has PSI.
    public var pressureStallPercent: Double?
    @Defaulted<WireDefaults.Empty<GPU>> public var gpus: [GPU] = []
    @Defaulted<Nominal> public var thermal: ThermalState = .nominal
    public var maxTemperatureCelsius: Double?
    /// CPU frequency well under its maximum while busy.
    @Defaulted<WireDefaults.False> public var cpuThrottled = false
    /// A camera is open (a process holds /dev/video*).
    @Defaulted<WireDefaults.False> public var cameraInUse = false
    /// A microphone is capturing (an ALSA capture stream is RUNNING).
    @Defaulted<WireDefaults.False> public var microphoneInUse = false

    public init() {}

    enum CodingKeys: String, CodingKey {
        case load1, swapTotalBytes = "swap_total_bytes", swapFreeBytes = "swap_free_bytes", pressure,
             pressureStallPercent = "pressure_some_avg10", gpus, thermal, maxTemperatureCelsius = "max_temperature_c",
             cpuThrottled = "cpu_throttled", cameraInUse = "camera_in_use", microphoneInUse = "microphone_in_use"
    }

    /// In a video call: camera or microphone in use.
    public var inMeeting: Bool { cameraInUse || microphoneInUse }

    /// The JSON a heartbeat (and the fleet API) carries.
    public var json: JSONValue { JSONValueEncoder().encode(self) }
}
