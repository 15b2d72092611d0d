import HerdHTTP
import HerdSecurity
import HerdWire

/// Who a request is from, for fair turns in the queue, the per-client cap and
/// the trace's `client`: `X-Herd-Client` (`c:<value>`; a value that is not
/// 1–64 bytes of `[A-Za-z0-9._:@/-]` is hashed, `c#<hex>`), else the client
/// key's name (`key:<name>`, a key made by herd), else the API key
/// (`Authorization: Bearer …`) as the first 12 hex digits of its SHA-256
/// (`key:<hex>` — the key itself never leaves the proxy), else the client's
/// address.
enum ClientIdentity {
    static func of(_ headers: HTTPHeaders, address: String?, key: String? = nil) -> String {
        if let named = headers[.xHerdClient], !named.isEmpty {
            let bytes = Array(named.utf8)
            if bytes.count <= 64, bytes.allSatisfy(isPlain) { return "c:" + named }
            return "c#" + digest(bytes)
        }
        if let key { return "key:" + key }
        if let authorization = headers[.authorization] {
            let bytes = Array(authorization.utf8)
            if bytes.count > 7, bytes.prefix(7).map({ $0 | 0x20 }) == Array("bearer ".utf8) {
                let key = bytes.dropFirst(7).drop { $0 == 32 }
                if !key.isEmpty { return "key:" + digest(Array(key)) }
            }
        }
        return address ?? ""
    }

    /// The first 12 hex digits of the SHA-256 of `bytes`.
    private static func digest(_ bytes: [UInt8]) -> String { SHA256.hex(Array(SHA256.hash(bytes).prefix(6))) }

    private static func isPlain(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "/"), UInt8(ascii: "-"): true
        default: false
        }
    }
}
