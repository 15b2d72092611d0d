/// Signing and checking requests with the fleet key: HMAC-SHA-256 over
/// `"<timestamp ms>\n<METHOD> <path>\n<body>"`, sent as
/// `X-Herd-Timestamp` and `X-Herd-Signature` (hex). A signature is accepted
/// once, within `maxSkewMilliseconds` of control's clock.
public struct FleetKey: Sendable {
    public static let timestampHeader = "X-Herd-Timestamp"
    public static let signatureHeader = "X-Herd-Signature"

    let key: [UInt8]

    /// A key of at least 16 bytes.
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count >= 16 else { return nil }
        key = bytes
    }

    public func signature(timestamp: Int, method: String, path: String, body: [UInt8]) -> String {
        SHA256.hex(mac(timestamp: timestamp, method: method, path: path, body: body))
    }

    /// The signature's 32 bytes.
    func mac(timestamp: Int, method: String, path: String, body: [UInt8]) -> [UInt8] {
        SHA256.hmac(key: key, message: Array("\(timestamp)\n\(method) \(path)\n".utf8) + body)
    }

    /// Whether `text` is this key (constant time): the dashboard's node
    /// actions send it as `Authorization: Bearer <key>`.
    public func matches(_ text: String) -> Bool {
        let given = Array(text.utf8)
        return given.count == key.count && SHA256.constantTimeEqual(given, key)
    }

    /// The header fields (name, value) that sign a request sent now.
    public func headers(method: String, path: String, body: [UInt8], now: Int) -> [(name: String, value: String)] {
        [(FleetKey.timestampHeader, String(now)), (FleetKey.signatureHeader, signature(timestamp: now, method: method, path: path, body: body))]
    }
}

/// Why a signed request was refused (each a 401).
public enum FleetKeyRefusal: Error, Equatable, CustomStringConvertible, Sendable {
    case missing
    case malformed
    case stale(skewMilliseconds: Int)
    case badSignature
    case replayed

    public var description: String {
        switch self {
        case .missing: "this fleet requires signed requests (X-Herd-Timestamp and X-Herd-Signature): start herd-node with the same --fleet-key"
        case .malformed: "malformed X-Herd-Timestamp or X-Herd-Signature"
        case let .stale(skew): "timestamp off by \(skew == .max ? "more than 292 million years" : "\(skew / 1000) s"): check the clocks (NTP) of node and router"
        case .badSignature: "bad signature: the fleet keys differ"
        case .replayed: "this signed request was already used"
        }
    }
}

/// Checks signed requests against the fleet key, refusing stale and replayed ones.
/// Loop-thread only.
public final class FleetKeyVerifier {
    public let key: FleetKey
    public let maxSkewMilliseconds: Int
    /// Signatures already accepted (their bytes: a hex string's case cannot make a new one), with their timestamps.
    private var seen: [[UInt8]: Int] = [:]

    public init(key: FleetKey, maxSkewMilliseconds: Int = 30_000) {
        self.key = key
        self.maxSkewMilliseconds = maxSkewMilliseconds
    }

    /// Checks a request's `X-Herd-Timestamp` (`timestamp`) and `X-Herd-Signature`
    /// (`signature`) against its method, path and body at `now` (ms since 1970).
    public func verify(method: String, path: String, timestamp stamp: String?, signature: String?, body: [UInt8], now: Int) throws(FleetKeyRefusal) {
        guard let stamp, let signature else { throw .missing }
        guard stamp.utf8.count <= 20, let timestamp = Int(stamp), signature.utf8.count == 64, let given = SHA256.bytes(hex: signature) else {
            throw .malformed
        }
        // A timestamp near Int.min or Int.max is the client's choice: the
        // difference saturates instead of trapping.
        let skew = FleetKeyVerifier.skew(now, timestamp)
        guard skew <= maxSkewMilliseconds else { throw .stale(skewMilliseconds: skew) }
        let expected = key.mac(timestamp: timestamp, method: method, path: path, body: body)
        guard SHA256.constantTimeEqual(expected, given) else { throw .badSignature }
        guard seen[expected] == nil else { throw .replayed }
        seen[expected] = timestamp
        if seen.count > 10_000 { seen = seen.filter { FleetKeyVerifier.skew(now, $0.value) <= maxSkewMilliseconds } }
    }

    /// |a − b|, saturating at `Int.max`.
    static func skew(_ a: Int, _ b: Int) -> Int {
        let (difference, overflow) = a.subtractingReportingOverflow(b)
        if overflow || difference == .min { return .max }
        return difference < 0 ? -difference : difference
    }
}
