import Glibc
import HerdShared

/// This host's address on the route to another host: a UDP socket is
/// connected (no packet leaves) and its local address read back.
enum LocalAddress {
    static func facing(_ remote: SocketAddress) -> String? {
        let fd = socket(remote.family, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let connected = remote.withUnsafeSockaddr { connect(fd, $0, $1) }
        guard connected == 0 else { return nil }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        guard rc == 0 else { return nil }
        return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress(sockaddrPointer: $0)?.host } }
    }
}
