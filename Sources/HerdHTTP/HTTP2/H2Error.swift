internal import CNghttp2

/// An nghttp2 failure: the negative code a call returned, nghttp2's words for
/// it and the operation. Every nghttp2 return code goes through `check`, the
/// one funnel from its codes to Swift errors (as `UVError.check` is libuv's).
struct H2Error: Error, CustomStringConvertible {
    let code: Int32
    let operation: String

    var description: String { "\(operation): \(String(cString: nghttp2_strerror(code)))" }

    @inline(__always)
    static func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(H2Error) {
        if rc < 0 { throw H2Error(code: rc, operation: operation()) }
    }
}
