/// A cloud provider a client key may overflow to (`--provider NAME=URL`,
/// opt-in): an OpenAI-compatible API over HTTPS, its models named by the
/// operator's map (`--provider-model NAME:LOCAL=REMOTE`: a request for LOCAL
/// goes there as REMOTE). Its credential never travels: each proxy reads it
/// itself (`HERD_PROVIDER_<NAME>_KEY`, or `--provider-key-file NAME=PATH`).
public struct CloudProvider: Equatable, Sendable {
    /// The API it speaks: OpenAI's (chat completions; Ollama-API requests are
    /// translated to it) or Anthropic's Messages (Anthropic-API requests only).
    public enum Kind: String, Equatable, Sendable {
        case openai, anthropic
    }

    public var name: String
    public var kind = Kind.openai
    public var secure: Bool
    public var host: String
    public var port: Int
    /// The API's path prefix (`/v1`, `/openai/v1`), no trailing slash.
    public var basePath: String
    /// Local model name → the provider's.
    public var models: [String: String] = [:]

    /// The node routes name for it (traces, metrics, `X-Herd-Node`).
    public var node: String { Self.nodePrefix + name }
    public static let nodePrefix = "cloud:"

    /// Where its credential is read from when no key file is named.
    public var credentialVariable: String {
        "HERD_PROVIDER_" + String(name.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }) + "_KEY"
    }

    /// `NAME=URL[#anthropic]` (`https://api.example.com/v1`; `http://` only for loopback tests of it).
    public static func parse(_ spec: String) throws(CloudProviderError) -> CloudProvider {
        guard let equals = spec.firstIndex(of: "=") else { throw CloudProviderError("--provider \(spec): expected NAME=URL") }
        let name = String(spec[..<equals])
        var url = String(spec[spec.index(after: equals)...])
        var kind = Kind.openai
        if let hash = url.firstIndex(of: "#") {
            guard let named = Kind(rawValue: String(url[url.index(after: hash)...])) else {
                throw CloudProviderError("--provider \(name): the kind after # is openai or anthropic")
            }
            kind = named
            url = String(url[..<hash])
        }
        guard isName(name) else { throw CloudProviderError("--provider \(name): a name is 1–32 of a-z 0-9 _ -") }
        var rest = Substring(url)
        let secure: Bool
        if rest.hasPrefix("https://") {
            secure = true
            rest = rest.dropFirst(8)
        } else if rest.hasPrefix("http://") {
            secure = false
            rest = rest.dropFirst(7)
        } else {
            throw CloudProviderError("--provider \(name): the URL must be https://host[:port][/path]")
        }
        let authority = rest.prefix { $0 != "/" }
        var path = String(rest.dropFirst(authority.count))
        while path.hasSuffix("/") { path.removeLast() }
        var host = String(authority), port = secure ? 443 : 80
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { guard let p = Int(after.dropFirst()) else { throw CloudProviderError("--provider \(name): bad port") }; port = p }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = Int(authority[authority.index(after: colon)...]) else { throw CloudProviderError("--provider \(name): bad port") }
            port = p
        }
        guard !host.isEmpty, host.utf8.count <= 253, (1...65535).contains(port) else { throw CloudProviderError("--provider \(name): bad host or port") }
        guard path.utf8.count <= 256, !path.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
            throw CloudProviderError("--provider \(name): bad path")
        }
        if !secure, !(host == "127.0.0.1" || host == "::1" || host == "localhost") {
            throw CloudProviderError("--provider \(name): plain http:// is for loopback only; a cloud provider needs https://")
        }
        var provider = CloudProvider(name: name, secure: secure, host: host, port: port, basePath: path)
        provider.kind = kind
        return provider
    }

    /// Whether a request of `api` can go to it (an Anthropic provider takes Anthropic's Messages only).
    public func serves(_ api: ClientAPI) -> Bool { kind == .openai || api == .anthropic }

    /// `NAME:LOCAL=REMOTE`.
    public static func parseModel(_ spec: String) throws(CloudProviderError) -> (provider: String, local: String, remote: String) {
        guard let colon = spec.firstIndex(of: ":"), let equals = spec[colon...].firstIndex(of: "=") else {
            throw CloudProviderError("--provider-model \(spec): expected NAME:LOCAL=REMOTE")
        }
        let name = String(spec[..<colon]), local = String(spec[spec.index(after: colon)..<equals]), remote = String(spec[spec.index(after: equals)...])
        guard isName(name), RequestLimits.isModelName(local), RequestLimits.isModelName(remote) else {
            throw CloudProviderError("--provider-model \(spec): NAME is 1–32 of a-z 0-9 _ -; models 1–256 bytes")
        }
        return (name, local, remote)
    }

    /// `NAME=VALUE` of `--provider-key-file`.
    public static func parsePair(_ spec: String, flag: String) throws(CloudProviderError) -> (name: String, value: String) {
        guard let equals = spec.firstIndex(of: "="), isName(String(spec[..<equals])), spec.index(after: equals) < spec.endIndex else {
            throw CloudProviderError("--\(flag) \(spec): expected NAME=VALUE")
        }
        return (String(spec[..<equals]), String(spec[spec.index(after: equals)...]))
    }

    static func isName(_ name: String) -> Bool {
        (1...32).contains(name.utf8.count) && name.utf8.allSatisfy { b in
            (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2D
        }
    }

    public init(name: String, secure: Bool, host: String, port: Int, basePath: String, models: [String: String] = [:]) {
        self.name = name
        self.secure = secure
        self.host = host
        self.port = port
        self.basePath = basePath
        self.models = models
    }
}

public struct CloudProviderError: Error, Equatable, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
