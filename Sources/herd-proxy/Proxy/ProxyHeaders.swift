import HerdHTTP

/// Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded by a proxy.
enum ProxyHeaders {
    /// The end-to-end fields of `headers`: without hop-by-hop fields, the names
    /// listed in `Connection`, and the kinds in `dropping`.
    static func endToEnd(_ headers: HTTPHeaders, dropping: KnownHeaderSet) -> HTTPHeaders {
        var named: [Substring] = []
        for (i, field) in headers.fields.enumerated() where headers.kinds[i] == .connection {
            for token in field.value.split(separator: ",") {
                let name = token.trimmingSpaces
                // `keep-alive` and `close` are options, not header names to drop.
                if !HTTPHeaders.namesEqual(name, "keep-alive"), !HTTPHeaders.namesEqual(name, "close") { named.append(name) }
            }
        }
        var out = HTTPHeaders(capacity: headers.count + 8)
        for (i, field) in headers.fields.enumerated() {
            let kind = headers.kinds[i]
            if let kind, kind.isHopByHop || dropping.contains(kind) { continue }
            if !named.isEmpty, named.contains(where: { HTTPHeaders.namesEqual($0, field.name) }) { continue }
            out.add(field.name, field.value, kind: kind)
        }
        return out
    }
}
