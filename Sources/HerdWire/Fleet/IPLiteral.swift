#if canImport(Glibc)
import Glibc
#endif

/// Numeric IP addresses, checked without the runtime (the wire types stay
/// free of libuv): what a heartbeat's backend addresses and direct clients
/// must be.
public enum IPLiteral {
    /// Whether `text` is an IPv4 or IPv6 address in numeric form (an IPv6
    /// zone, `%eth0`, allowed).
    public static func isValid(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 64 else { return false }
        var bare = text
        if let zone = text.firstIndex(of: "%") {
            bare = String(text[..<zone])
            guard text.index(after: zone) < text.endIndex else { return false }
        }
        var v4 = in_addr()
        var v6 = in6_addr()
        return bare.withCString { inet_pton(AF_INET, $0, &v4) == 1 || inet_pton(AF_INET6, $0, &v6) == 1 }
    }
}
