import HerdHTTP
import HerdRuntime

/// What herd-control asks of a request before any endpoint sees it, so that
/// no web page a LAN user happens to open can act on the fleet:
/// - **Host**: an IP literal, `localhost`, the machine's own name, or a name
///   in `--allowed-hosts`. A DNS-rebinding page's requests carry the
///   attacker's host name, so they read nothing (421).
/// - **State-changing requests** (POST): a JSON content type, an
///   `Authorization` header or a fleet-key signature (none of which a form
///   post or a simple cross-site request can carry without a CORS preflight,
///   which control never grants), and, when the browser says where the
///   request comes from (`Origin`, `Sec-Fetch-Site`), the same origin (403).
/// Pure: the checks are functions of the request head and the settings.
struct RequestGuard: Sendable {
    /// Host names allowed besides IP literals and `localhost` (lowercase).
    let allowedHosts: Set<String>

    /// `names`: the machine's own names and the operator's `--allowed-hosts`
    /// (`*` allows any host).
    init(names: [String]) {
        allowedHosts = Set(names.map { $0.lowercased() }.filter { !$0.isEmpty })
    }

    /// The refusal for `head`, or nil when it may go on.
    func refusal(method: String, headers: HTTPHeaders) -> (status: Int, message: String)? {
        if let host = headers["Host"], !hostAllowed(host) {
            return (421, "this router does not answer to that host name: add it with --allowed-hosts (HERD_ALLOWED_HOSTS) to reach the router by it")
        }
        guard method != "GET", method != "HEAD", method != "OPTIONS" else { return nil }
        if let site = headers["Sec-Fetch-Site"]?.lowercased(), site != "same-origin", site != "none" {
            return (403, "cross-site requests cannot change the fleet")
        }
        if let origin = headers["Origin"], !RequestGuard.sameOrigin(origin, host: headers["Host"]) {
            return (403, "cross-origin requests cannot change the fleet")
        }
        let json = headers["Content-Type"].map { $0.lowercased().hasPrefix("application/json") } ?? false
        // Only POST can be sent cross-site without a preflight (a form); PATCH and DELETE cannot.
        if method == "POST", !json, headers["Authorization"] == nil, headers["X-Herd-Signature"] == nil {
            return (415, "send a JSON body (Content-Type: application/json)")
        }
        return nil
    }

    /// Whether `host` (a Host header: name or address, maybe with a port) is one of ours.
    func hostAllowed(_ host: String) -> Bool {
        if allowedHosts.contains("*") { return true }
        let name = RequestGuard.hostName(host).lowercased()
        if name.isEmpty { return false }
        if name == "localhost" || name.hasSuffix(".localhost") { return true }
        if (try? SocketAddress(host: name, port: 0)) != nil { return true }
        return allowedHosts.contains(name) || (name.hasSuffix(".") && allowedHosts.contains(String(name.dropLast())))
    }

    /// The host part of a Host header (`[v6]:port` → `v6`, `name:port` → `name`).
    static func hostName(_ host: String) -> String {
        if host.hasPrefix("["), let end = host.firstIndex(of: "]") { return String(host[host.index(after: host.startIndex)..<end]) }
        if let colon = host.lastIndex(of: ":"), host.firstIndex(of: ":") == colon { return String(host[..<colon]) }
        return host
    }

    /// Whether `origin` (`scheme://host[:port]`) names the host the request was sent to.
    static func sameOrigin(_ origin: String, host: String?) -> Bool {
        guard let host else { return false }
        let parts = origin.lowercased().split(separator: "/", omittingEmptySubsequences: false)
        // "scheme:", "", "host[:port]"
        guard parts.count == 3, parts[0].hasSuffix(":"), parts[1].isEmpty else { return false }
        return parts[2] == host.lowercased()
    }

    /// This machine's names: its host name, the name with `.local` (mDNS),
    /// and the names in `extra`.
    static func ownNames(extra: [String]) -> [String] {
        let name = Hostname.current()
        var names = extra
        if !name.isEmpty { names += [name, name + ".local"] }
        return names
    }
}
