import HerdJSON
/// The proxy ↔ control protocol's framing (documented in `ControlProtocol.md`).
///
/// A frame is a 4-byte big-endian length `n`, then `n` bytes: a 1-byte message
/// type and a JSON object. A length over `maxFrameBytes`, an unknown type or a
/// body that is not a JSON object is a protocol error: the receiver drops that
/// connection (and only that connection).
public enum ControlFrame {
    /// Largest frame accepted (type byte + JSON), 4 MiB: snapshots of big fleets fit.
    public static let maxFrameBytes = 4 * 1024 * 1024

    /// Appends a frame of `type` with `body` to `out`.
    public static func encode(_ type: ControlMessageType, _ body: JSONValue, into out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: [0, 0, 0, 0, type.rawValue])
        body.write(to: &out)
        let length = UInt32(out.count - start - 4)
        out[start] = UInt8(length >> 24)
        out[start + 1] = UInt8((length >> 16) & 0xFF)
        out[start + 2] = UInt8((length >> 8) & 0xFF)
        out[start + 3] = UInt8(length & 0xFF)
    }
}

/// Message types on the control socket.
public enum ControlMessageType: UInt8, Sendable {
    case hello = 1
    case helloOK = 2
    case route = 3
    case routeOK = 4
    case routeError = 5
    case retry = 6
    case result = 7
    case cancel = 8
    case snapshot = 9
    case started = 10
    case queued = 11
}

/// Why a control connection was dropped.
public struct ControlProtocolError: Error, Equatable, CustomStringConvertible, Sendable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "control protocol error: \(reason)" }
}

/// Splits a byte stream into frames, incrementally (bytes may be split anywhere).
public struct ControlFrameDecoder {
    private var buffer: [UInt8] = []
    private var offset = 0

    public init() {}

    /// Adds received bytes.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if offset > 0, offset == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            offset = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, `nil` when more bytes are needed; throws on a
    /// malformed frame (the connection must then be dropped).
    public mutating func next() throws(ControlProtocolError) -> (ControlMessageType, JSONValue)? {
        guard buffer.count - offset >= 4 else { return nil }
        let length = Int(buffer[offset]) << 24 | Int(buffer[offset + 1]) << 16 | Int(buffer[offset + 2]) << 8 | Int(buffer[offset + 3])
        guard length >= 1, length <= ControlFrame.maxFrameBytes else {
            throw ControlProtocolError("frame length \(length) out of range")
        }
        guard buffer.count - offset - 4 >= length else { return nil }
        let typeByte = buffer[offset + 4]
        guard let type = ControlMessageType(rawValue: typeByte) else {
            throw ControlProtocolError("unknown message type \(typeByte)")
        }
        let start = offset + 5
        let end = offset + 4 + length
        offset = end
        let parsed: JSONValue
        do {
            parsed = try buffer.withUnsafeBytes { raw throws(JSONParseError) in
                try JSONValue.parse(UnsafeRawBufferPointer(rebasing: raw[start..<end]), maxDepth: 64)
            }
        } catch {
            throw ControlProtocolError("bad JSON in \(type) frame: \(error)")
        }
        guard parsed.objectValue != nil else { throw ControlProtocolError("\(type) frame is not a JSON object") }
        if offset > 64 * 1024, offset * 2 > buffer.count {
            buffer.removeFirst(offset)
            offset = 0
        }
        return (type, parsed)
    }
}
