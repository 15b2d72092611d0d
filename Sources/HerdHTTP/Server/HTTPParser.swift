internal import CHttpParser

/// Why a message could not be parsed; each maps to the status a server answers.
public enum HTTPParseFailure: Error, Equatable, Sendable {
    /// The head (request line + headers) exceeded the configured limit → 431.
    case headerTooLarge
    /// `Content-Length` together with `Transfer-Encoding`, or conflicting
    /// `Content-Length`s: a request-smuggling shape → 400 and close.
    case ambiguousLength(String)
    /// Anything else malformed → 400 (the parser's own description).
    case invalid(String)
    /// The consumer aborted parsing from a callback.
    case aborted

    /// The status a server answers for this failure.
    public var status: Int {
        switch self {
        case .headerTooLarge: 431
        case .ambiguousLength, .invalid, .aborted: 400
        }
    }
}

/// What the consumer wants after a head.
public enum HTTPHeadDisposition {
    case readBody
    /// The message has no body whatever its headers say (a response to HEAD).
    case skipBody
    /// Stop parsing; `feed` returns `.failed(.aborted)`.
    case abort
}

/// A parsed message head, for requests and responses alike.
public struct HTTPParsedHead {
    public var method: String
    public var target: String
    public var status: Int
    public var versionMajor: Int
    public var versionMinor: Int
    public var headers: HTTPHeaders
    public var keepAlive: Bool
    /// The declared body length; `nil` when chunked or unknown.
    public var contentLength: Int?
    public var isChunked: Bool
}

/// Receives a parser's events, synchronously, during `feed`.
public protocol HTTPParserDelegate: AnyObject {
    func parser(_ parser: HTTPParser, didParseHead head: HTTPParsedHead) -> HTTPHeadDisposition
    /// A piece of the (de-chunked) body; valid only during the call. Return false to abort.
    func parser(_ parser: HTTPParser, didParseBody bytes: UnsafeRawBufferPointer) -> Bool
    /// The message is complete. The parser pauses here: `feed` returns at the boundary.
    func parserDidCompleteMessage(_ parser: HTTPParser)
}

/// An incremental HTTP/1.x parser over http_parser: bytes may be split at any
/// point; it pauses at each message boundary so that pipelined messages are
/// handled one at a time. Enforces a head-size limit and rejects ambiguous
/// message lengths (request smuggling).
public final class HTTPParser {
    public enum Kind { case request, response }

    /// The result of feeding bytes.
    public enum Outcome: Equatable {
        /// Every byte was consumed; the message (if any) continues.
        case needMore
        /// A message ended after `consumed` bytes; the rest belongs to the next one.
        case messageComplete(consumed: Int)
        case failed(HTTPParseFailure)
    }

    private let raw: UnsafeMutablePointer<http_parser>
    public let kind: Kind
    public unowned(unsafe) var delegate: (any HTTPParserDelegate)!
    /// Maximum bytes of request line / status line plus headers.
    public var maxHeadBytes: Int

    private var url: [UInt8] = []
    private var completedTarget: String?
    private var field: [UInt8] = []
    private var value: [UInt8] = []
    private var headers = HTTPHeaders(capacity: 16)
    private var inValue = false
    private var headBytes = 0
    private var failure: HTTPParseFailure?
    private var isPaused = false

    public init(kind: Kind, maxHeadBytes: Int = 32 * 1024) {
        self.kind = kind
        self.maxHeadBytes = maxHeadBytes
        raw = .allocate(capacity: 1)
        http_parser_init(raw, kind == .request ? HTTP_REQUEST : HTTP_RESPONSE)
        raw.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { raw.deallocate() }

    /// Parses `bytes`. After `.messageComplete` the next call continues with the
    /// next message (the caller passes the unconsumed rest again).
    public func feed(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        if isPaused {
            http_parser_pause(raw, 0)
            isPaused = false
        }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return .needMore }
        let consumed = http_parser_execute(raw, HTTPParser.callbacks.settings, base.assumingMemoryBound(to: CChar.self), bytes.count)
        return outcome(consumed: consumed, total: bytes.count)
    }

    /// Tells the parser the stream ended (a close-delimited response ends here).
    public func finish() -> Outcome {
        if isPaused {
            http_parser_pause(raw, 0)
            isPaused = false
        }
        let consumed = http_parser_execute(raw, HTTPParser.callbacks.settings, nil, 0)
        return outcome(consumed: consumed, total: 0)
    }

    private func outcome(consumed: Int, total: Int) -> Outcome {
        let errno = http_errno(raw.pointee.http_errno)
        if errno == HPE_PAUSED {
            isPaused = true
            return .messageComplete(consumed: consumed)
        }
        if let failure { return .failed(failure) }
        if errno != HPE_OK {
            switch errno {
            case HPE_HEADER_OVERFLOW: return .failed(.headerTooLarge)
            case HPE_UNEXPECTED_CONTENT_LENGTH:
                return .failed(.ambiguousLength("Content-Length with Transfer-Encoding or repeated Content-Length"))
            default:
                return .failed(.invalid(String(cString: http_errno_description(errno))))
            }
        }
        if raw.pointee.upgrade == 1 {
            return .failed(.invalid("protocol upgrade is not supported"))
        }
        return .needMore
    }

    /// The request target of the message being parsed: as much of it as has
    /// arrived, else the last complete head's (error answers pick their
    /// format by it).
    public var lastTarget: String? { url.isEmpty ? completedTarget : String(decoding: url, as: UTF8.self) }

    // MARK: Callbacks

    fileprivate func append(_ data: UnsafePointer<CChar>?, _ length: Int, to buffer: inout [UInt8]) -> Int32 {
        headBytes += length
        if headBytes > maxHeadBytes {
            failure = .headerTooLarge
            return 1
        }
        guard let data else { return 0 }
        buffer.append(contentsOf: UnsafeRawBufferPointer(start: data, count: length))
        return 0
    }

    fileprivate func onHeaderField(_ data: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        if inValue {
            flushHeader()
            inValue = false
        }
        headBytes += 4 // ": " and CRLF
        return append(data, length, to: &field)
    }

    fileprivate func onHeaderValue(_ data: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        inValue = true
        return append(data, length, to: &value)
    }

    private func flushHeader() {
        let kind = field.withUnsafeBytes { KnownHeader.classify(bytes: $0) }
        headers.add(String(decoding: field, as: UTF8.self), String(decoding: value, as: UTF8.self), kind: kind)
        field.removeAll(keepingCapacity: true)
        value.removeAll(keepingCapacity: true)
    }

    fileprivate func onHeadersComplete() -> Int32 {
        if inValue || !field.isEmpty { flushHeader() }
        inValue = false
        let p = raw.pointee
        let chunked = (p.flags & UInt32(F_CHUNKED.rawValue)) != 0
        // Request smuggling: a length that two parties could read differently.
        var length: Substring?
        var hasTransferEncoding = false
        for (i, field) in headers.fields.enumerated() {
            switch headers.kinds[i] {
            case .contentLength:
                let value = field.value.trimmingSpaces
                if let length, length != value {
                    failure = .ambiguousLength("conflicting Content-Length values")
                    return -1
                }
                length = value
            case .transferEncoding:
                hasTransferEncoding = true
            default:
                break
            }
        }
        if length != nil, hasTransferEncoding {
            failure = .ambiguousLength("both Content-Length and Transfer-Encoding")
            return -1
        }
        let hasLength = (p.flags & UInt32(F_CONTENTLENGTH.rawValue)) != 0
        let head = HTTPParsedHead(
            method: kind == .request ? HTTPParser.methodName(Int(p.method)) : "",
            target: String(decoding: url, as: UTF8.self),
            status: Int(p.status_code),
            versionMajor: Int(p.http_major),
            versionMinor: Int(p.http_minor),
            headers: headers,
            keepAlive: http_should_keep_alive(raw) != 0,
            contentLength: hasLength ? Int(clamping: p.content_length) : (chunked ? nil : (kind == .request ? 0 : nil)),
            isChunked: chunked)
        url.removeAll(keepingCapacity: true)
        completedTarget = head.target
        headers = HTTPHeaders(capacity: 16)
        headBytes = 0
        switch delegate.parser(self, didParseHead: head) {
        case .readBody: return 0
        case .skipBody: return 1
        case .abort:
            failure = .aborted
            return -1
        }
    }

    fileprivate func onBody(_ data: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        guard let data else { return 0 }
        if delegate.parser(self, didParseBody: UnsafeRawBufferPointer(start: data, count: length)) { return 0 }
        failure = .aborted
        return 1
    }

    fileprivate func onMessageComplete() -> Int32 {
        delegate.parserDidCompleteMessage(self)
        // Pause so that execute returns at the message boundary (pipelining).
        http_parser_pause(raw, 1)
        return 0
    }

    fileprivate func onMessageBegin() -> Int32 {
        url.removeAll(keepingCapacity: true)
        headers = HTTPHeaders(capacity: 16)
        headBytes = 0
        inValue = false
        return 0
    }

    private static let methodNames: [String] = (0..<40).map { String(cString: http_method_str(http_method(rawValue: UInt32(clamping: $0)))) }

    static func methodName(_ raw: Int) -> String {
        raw < methodNames.count ? methodNames[raw] : "UNKNOWN"
    }

    /// http_parser's callbacks, made once in an allocation that is never
    /// written again: every parser of every thread reads the same table.
    struct Callbacks: @unchecked Sendable {
        let settings: UnsafePointer<http_parser_settings>
    }

    static let callbacks: Callbacks = {
        var s = http_parser_settings()
        s.on_message_begin = { p in owner(p).onMessageBegin() }
        s.on_url = { p, at, length in
            let parser = owner(p)
            return parser.append(at, length, to: &parser.url)
        }
        s.on_status = { p, _, length in
            let parser = owner(p)
            parser.headBytes += length
            return parser.headBytes > parser.maxHeadBytes ? { parser.failure = .headerTooLarge; return 1 }() : 0
        }
        s.on_header_field = { p, at, length in owner(p).onHeaderField(at, length) }
        s.on_header_value = { p, at, length in owner(p).onHeaderValue(at, length) }
        s.on_headers_complete = { p in owner(p).onHeadersComplete() }
        s.on_body = { p, at, length in owner(p).onBody(at, length) }
        s.on_message_complete = { p in owner(p).onMessageComplete() }
        let table = UnsafeMutablePointer<http_parser_settings>.allocate(capacity: 1)
        table.initialize(to: s)
        return Callbacks(settings: UnsafePointer(table))
    }()
}

@inline(__always)
private func owner(_ p: UnsafeMutablePointer<http_parser>?) -> HTTPParser {
    Unmanaged<HTTPParser>.fromOpaque(p!.pointee.data).takeUnretainedValue()
}
