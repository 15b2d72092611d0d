import Glibc
import HerdHTTP
import HerdRuntime
import HerdWire

/// The cloud providers this proxy may send a request to when control routes
/// it there (a ROUTE_OK whose upstream is `cloud:NAME`): their addresses
/// (resolved off the loop), TLS (the system's store or `--provider-ca`) and
/// credentials (`HERD_PROVIDER_<NAME>_KEY` or `--provider-key-file`, read
/// here, never logged, never sent to control). A request going there loses
/// every client credential (herd keys included) and carries the provider's.
/// Loop-thread only.
final class CloudProviders {
    struct Settings: Sendable {
        var providers: [CloudProvider] = []
        /// Provider name → a file holding its key.
        var keyFiles: [String: String] = [:]
        var caFile: String?
    }

    final class Entry {
        let provider: CloudProvider
        let credential: String?
        let tls: TLSClientContext?
        var address: SocketAddress?
        init(provider: CloudProvider, credential: String?, tls: TLSClientContext?) {
            self.provider = provider
            self.credential = credential
            self.tls = tls
        }
    }

    private(set) var entries: [String: Entry] = [:]
    private let client: HTTPClient

    /// Reads each provider's credential and starts resolving its host; throws on an unreadable key file or CA.
    init(settings: Settings, client: HTTPClient, loop: EventLoop, log: Logger) throws {
        self.client = client
        let tls = settings.providers.contains(where: \.secure) ? try TLSClientContext(caFile: settings.caFile) : nil
        for provider in settings.providers {
            var credential = Environment.string(provider.credentialVariable)
            if let file = settings.keyFiles[provider.name] {
                guard let text = Self.readKey(file) else { throw CloudProviderError("--provider-key-file \(provider.name): cannot read \(file)") }
                credential = text
            }
            if credential == nil { log.warning("provider \(provider.name): no key (\(provider.credentialVariable) or --provider-key-file); requests go without one") }
            let entry = Entry(provider: provider, credential: credential, tls: provider.secure ? tls : nil)
            entries[provider.name] = entry
            let host = provider.host, port = provider.port
            loop.offload({ try SocketAddress.resolve(host: host, port: port) }) { result in
                switch result {
                case let .success(address): entry.address = address
                case let .failure(error): log.error("provider \(provider.name): \(error); requests routed to it fail until herd-proxy restarts")
                }
            }
        }
    }

    /// `request` made fit for provider `name` — its path under the provider's
    /// base, the client's credentials and herd's own headers removed, the
    /// provider's key added — and the pool to send it on; nil when unknown or not resolved yet.
    func prepare(_ request: inout HTTPClientRequest, for name: String) -> UpstreamPool? {
        guard let entry = entries[name], let address = entry.address else { return nil }
        let provider = entry.provider
        var target = Substring(request.target)
        if target.hasPrefix("/v1/") { target = target.dropFirst(3) }
        request.target = provider.basePath + target
        var headers = HTTPHeaders()
        for (field, value) in request.headers.fields {
            let lower = field.lowercased()
            if lower == "authorization" || lower == "x-api-key" || lower == "host" || lower == "cookie" || lower.hasPrefix("x-herd-")
                || lower.hasPrefix("x-forwarded-") { continue }
            headers.add(field, value)
        }
        let defaultPort = provider.secure ? 443 : 80
        headers.add("Host", provider.port == defaultPort ? provider.host : "\(provider.host):\(provider.port)")
        switch provider.kind {
        case .openai:
            if let credential = entry.credential { headers.add("Authorization", "Bearer " + credential) }
        case .anthropic:
            if let credential = entry.credential { headers.add("x-api-key", credential) }
            if headers["anthropic-version"] == nil { headers.add("anthropic-version", "2023-06-01") }
        }
        request.headers = headers
        if let tls = entry.tls { return client.pool(for: address, tls: tls, serverName: provider.host) }
        return client.pool(for: address)
    }

    /// The first line of a key file, trimmed.
    static func readKey(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 4096)
        guard fgets(&buffer, Int32(clamping: buffer.count), file) != nil else { return nil }
        let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let key = String(line.trimmingSpaces).filter { $0 != "\n" && $0 != "\r" }
        return key.isEmpty ? nil : key
    }
}
