#if canImport(Glibc)
import Glibc
#endif

/// The `Date` header value, formatted once per second (RFC 9110 IMF-fixdate).
final class HTTPDateCache {
    private var second: time_t = 0
    private var cached: [UInt8] = []

    /// `Date: <IMF-fixdate>\r\n` for the current second.
    var headerLine: [UInt8] {
        let now = time(nil)
        if now != second {
            second = now
            var parts = tm()
            var t = now
            gmtime_r(&t, &parts)
            var buffer = [CChar](repeating: 0, count: 64)
            let length = strftime(&buffer, buffer.count, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &parts)
            cached = buffer.prefix(length).map { UInt8(bitPattern: $0) }
        }
        return cached
    }
}
