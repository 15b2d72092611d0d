internal import CUV
#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 socket address (numeric host and port).
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address family's storage, large enough for either family.
    var storage: sockaddr_storage

    /// Parses a numeric host (`127.0.0.1`, `::1`, `[::1]`) or `localhost`.
    /// Throws for names that need DNS: those go through `SocketAddress.resolve`.
    public init(host: String, port: Int) throws(UVError) {
        storage = sockaddr_storage()
        var bare = host
        if bare.hasPrefix("["), bare.hasSuffix("]") { bare = String(bare.dropFirst().dropLast()) }
        if bare == "localhost" { bare = "127.0.0.1" }
        if bare.contains(":") {
            var sin6 = sockaddr_in6()
            try UVError.check(uv_ip6_addr(bare, Int32(clamping: port), &sin6), "uv_ip6_addr(\(host))")
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.storeBytes(of: sin6, as: sockaddr_in6.self)
            }
        } else {
            var sin = sockaddr_in()
            try UVError.check(uv_ip4_addr(bare, Int32(clamping: port), &sin), "uv_ip4_addr(\(host))")
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.storeBytes(of: sin, as: sockaddr_in.self)
            }
        }
    }

    /// Resolves `host` (numeric, or a name through the system resolver:
    /// blocking, call it through `EventLoop.offload`).
    public static func resolve(host: String, port: Int) throws(AddressResolutionError) -> SocketAddress {
        if let numeric = try? SocketAddress(host: host, port: port) { return numeric }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else { throw AddressResolutionError(message: "cannot resolve \(host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(result) }
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let e = entry {
            if let sa = e.pointee.ai_addr, let address = SocketAddress(sockaddr: sa) { return address }
            entry = e.pointee.ai_next
        }
        throw AddressResolutionError(message: "cannot resolve \(host): no address")
    }

    init(storage: sockaddr_storage) {
        self.storage = storage
    }

    init?(sockaddr pointer: UnsafePointer<sockaddr>) {
        var storage = sockaddr_storage()
        switch Int32(pointer.pointee.sa_family) {
        case AF_INET:
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: MemoryLayout<sockaddr_in>.size)) }
        case AF_INET6:
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: MemoryLayout<sockaddr_in6>.size)) }
        default:
            return nil
        }
        self.storage = storage
    }

    public var family: Int32 { Int32(storage.ss_family) }
    public var isIPv6: Bool { family == AF_INET6 }

    /// The numeric host without brackets.
    public var host: String {
        var buffer = [CChar](repeating: 0, count: 64)
        withUnsafePointer(to: storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                if isIPv6 {
                    sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UVError.mustSucceed(uv_ip6_name($0, &buffer, buffer.count), "uv_ip6_name") }
                } else {
                    sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UVError.mustSucceed(uv_ip4_name($0, &buffer, buffer.count), "uv_ip4_name") }
                }
            }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var port: Int {
        withUnsafeBytes(of: storage) { raw in
            if isIPv6 {
                return Int(UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port))
            }
            return Int(UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port))
        }
    }

    var length: socklen_t {
        socklen_t(clamping: isIPv6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
    }

    /// `host:port`, with brackets around an IPv6 host.
    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>) throws -> R) rethrows -> R {
        try withUnsafePointer(to: storage) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0) }
        }
    }

    /// Connects the blocking socket `fd` to this address (tools and tests that
    /// drive their own sockets). Returns `connect(2)`'s result.
    public func connect(socket fd: Int32) -> Int32 {
        withSockaddr { Glibc.connect(fd, $0, length) }
    }

    /// This host's address on the route to `remote`: a UDP socket is connected
    /// (no packet leaves) and its local address read back. `nil` when there is
    /// no route.
    public static func local(towards remote: SocketAddress) -> SocketAddress? {
        let fd = socket(remote.family, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        guard remote.connect(socket: fd) == 0 else { return nil }
        var storage = sockaddr_storage()
        var length = socklen_t(clamping: MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        guard rc == 0 else { return nil }
        return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress(sockaddr: $0) } }
    }

    /// Equal when family, address and port (and an IPv6 scope) are: compared
    /// as bytes, without formatting either (pools are found by address per request).
    public static func == (lhs: SocketAddress, rhs: SocketAddress) -> Bool {
        guard lhs.family == rhs.family else { return false }
        return lhs.withSignificantBytes { a in rhs.withSignificantBytes { b in a.elementsEqual(b) } }
    }

    public func hash(into hasher: inout Hasher) {
        withSignificantBytes { hasher.combine(bytes: $0) }
    }

    /// The bytes that say which endpoint this is: family, port, address (and
    /// for IPv6 the scope id); not the padding nor the flow label.
    private func withSignificantBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeBytes(of: storage) { raw in
            if isIPv6 {
                let v6 = raw.load(as: sockaddr_in6.self)
                var key = (v6.sin6_family, v6.sin6_port, v6.sin6_addr, v6.sin6_scope_id)
                return withUnsafeBytes(of: &key) { body($0) }
            }
            let v4 = raw.load(as: sockaddr_in.self)
            var key = (v4.sin_family, v4.sin_port, v4.sin_addr.s_addr)
            return withUnsafeBytes(of: &key) { body($0) }
        }
    }
}

/// A host name that did not resolve to an address.
public struct AddressResolutionError: Error, Equatable, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}
