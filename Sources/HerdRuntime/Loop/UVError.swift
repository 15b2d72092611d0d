internal import CUV

/// A libuv failure: the negative code a libuv call returned, its symbolic name
/// (`ECONNREFUSED`, `EADDRINUSE`, …) and the operation that failed.
///
/// Every libuv return code in herd goes through `UVError.check`, the one funnel
/// from C error codes to Swift errors.
public struct UVError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The negative libuv error code (`UV_E*`).
    public let code: Int32
    /// What herd was doing, e.g. `"uv_tcp_bind"`.
    public let operation: String

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// The code's symbolic name as libuv spells it, e.g. `ECONNRESET`.
    public var name: String { String(cString: uv_err_name(code)) }

    public var description: String {
        "\(operation): \(name) (\(String(cString: uv_strerror(code))))"
    }

    public static func == (lhs: UVError, rhs: UVError) -> Bool { lhs.code == rhs.code }

    /// Returns `rc` unchanged when it is not negative; throws `UVError` otherwise.
    @discardableResult @inline(__always)
    public static func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(UVError) -> Int32 {
        if rc < 0 { throw UVError(code: rc, operation: operation()) }
        return rc
    }

    /// The end of a stream (`UV_EOF`).
    public static let eofCode: Int32 = UV_EOF.rawValue
    /// A request cancelled because its handle was closed (`UV_ECANCELED`).
    public static let cancelledCode: Int32 = UV_ECANCELED.rawValue
    /// A timeout herd itself enforced (connect, first byte, …).
    public static let timedOutCode: Int32 = UV_ETIMEDOUT.rawValue

    public var isEOF: Bool { code == UVError.eofCode }
    public var isCancelled: Bool { code == UVError.cancelledCode }
}
