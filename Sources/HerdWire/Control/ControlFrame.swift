import HerdJSON
/// The proxy ↔ control protocol's framing (documented in `ControlProtocol.md`).
///
/// A frame is a 4-byte big-endian length `n`, then `n` bytes: a 1-byte message
/// type and its body: a JSON object (HELLO, HELLO_OK, SNAPSHOT, SNAPSHOT_DELTA) or the
/// message's compact encoding (`WireBinary.swift`; every per-request message).
/// A length over `maxFrameBytes`, an unknown type or a body that does not
/// decode is a protocol error: the receiver drops that connection (and only
/// that connection).
public enum ControlFrame {
    /// Largest frame accepted (type byte + JSON), 4 MiB: snapshots of big fleets fit.
    public static let maxFrameBytes = 4 * 1024 * 1024

    /// Appends a JSON frame of `type` with `body` to `out`.
    public static func encode(_ type: ControlMessageType, _ body: JSONValue, into out: inout [UInt8]) {
        let start = begin(type, &out)
        body.write(to: &out)
        finish(start, &out)
    }

    /// Appends a compact frame of `type` with `message` to `out`.
    public static func encode(_ type: ControlMessageType, _ message: some WireBinaryMessage, into out: inout [UInt8]) {
        let start = begin(type, &out)
        message.write(to: &out)
        finish(start, &out)
    }

    @inline(__always)
    private static func begin(_ type: ControlMessageType, _ out: inout [UInt8]) -> Int {
        let start = out.count
        out.append(0)
        out.append(0)
        out.append(0)
        out.append(0)
        out.append(type.rawValue)
        return start
    }

    @inline(__always)
    private static func finish(_ start: Int, _ out: inout [UInt8]) {
        let length = UInt32(clamping: out.count - start - 4)
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
    case grant = 12
    case ticketReturn = 13
    case revoke = 14
    case snapshotDelta = 15
    case cacheStats = 16
    case pullClaim = 17
    case pullAnswer = 18
    case pullDone = 19

    /// Its name in errors (literals: decoding a frame builds no string).
    public var name: String {
        switch self {
        case .hello: "HELLO"
        case .helloOK: "HELLO_OK"
        case .route: "ROUTE"
        case .routeOK: "ROUTE_OK"
        case .routeError: "ROUTE_ERROR"
        case .retry: "RETRY"
        case .result: "RESULT"
        case .cancel: "CANCEL"
        case .snapshot: "SNAPSHOT"
        case .started: "STARTED"
        case .queued: "QUEUED"
        case .grant: "GRANT"
        case .ticketReturn: "RETURN"
        case .revoke: "REVOKE"
        case .snapshotDelta: "SNAPSHOT_DELTA"
        case .cacheStats: "CACHE_STATS"
        case .pullClaim: "PULL_CLAIM"
        case .pullAnswer: "PULL_ANSWER"
        case .pullDone: "PULL_DONE"
        }
    }
}

/// Why a control connection was dropped.
public struct ControlProtocolError: Error, Equatable, CustomStringConvertible, Sendable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "control protocol error: \(reason)" }
}

/// One received frame, valid during the callback that hands it over (its
/// bytes are the channel's buffer, not a copy).
public struct ControlFrameBody {
    public let type: ControlMessageType
    public let bytes: UnsafeRawBufferPointer

    public init(type: ControlMessageType, bytes: UnsafeRawBufferPointer) {
        self.type = type
        self.bytes = bytes
    }

    /// A JSON frame's object (HELLO, HELLO_OK, SNAPSHOT).
    public func json() throws(ControlProtocolError) -> JSONValue {
        let parsed: JSONValue
        do {
            parsed = try JSONValue.parse(bytes, maxDepth: 64)
        } catch {
            throw ControlProtocolError("bad JSON in \(type) frame: \(error)")
        }
        guard parsed.objectValue != nil else { throw ControlProtocolError("\(type) frame is not a JSON object") }
        return parsed
    }

    /// A compact frame's message (every per-request message).
    public func decode<M: WireBinaryMessage>(_: M.Type) throws(ControlProtocolError) -> M {
        try M(binary: bytes, context: type.name)
    }
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
        } else if offset > 64 * 1024, offset * 2 > buffer.count {
            buffer.removeFirst(offset)
            offset = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Hands each complete frame to `body` in order, until `body` returns
    /// false or more bytes are needed; throws on a malformed frame (the
    /// connection must then be dropped) and rethrows what `body` throws.
    public mutating func forEachFrame(_ body: (ControlFrameBody) throws(ControlProtocolError) -> Bool) throws(ControlProtocolError) {
        while buffer.count - offset >= 4 {
            let length = Int(buffer[offset]) << 24 | Int(buffer[offset + 1]) << 16 | Int(buffer[offset + 2]) << 8 | Int(buffer[offset + 3])
            guard length >= 1, length <= ControlFrame.maxFrameBytes else {
                throw ControlProtocolError("frame length \(length) out of range")
            }
            guard buffer.count - offset - 4 >= length else { return }
            let typeByte = buffer[offset + 4]
            guard let type = ControlMessageType(rawValue: typeByte) else {
                throw ControlProtocolError("unknown message type \(typeByte)")
            }
            let start = offset + 5
            let end = offset + 4 + length
            offset = end
            var failure: ControlProtocolError?
            let more = buffer.withUnsafeBytes { raw in
                do throws(ControlProtocolError) {
                    return try body(ControlFrameBody(type: type, bytes: UnsafeRawBufferPointer(rebasing: raw[start..<end])))
                } catch {
                    failure = error
                    return false
                }
            }
            if let failure { throw failure }
            if !more { return }
        }
    }

    /// The frames received so far, copied (tests and tools).
    public mutating func frames() throws(ControlProtocolError) -> [(ControlMessageType, [UInt8])] {
        var out: [(ControlMessageType, [UInt8])] = []
        try forEachFrame { frame throws(ControlProtocolError) in
            out.append((frame.type, Array(frame.bytes)))
            return true
        }
        return out
    }
}
