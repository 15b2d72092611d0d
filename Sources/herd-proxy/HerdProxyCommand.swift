import HerdBounds
import ArgumentParser
import Glibc
import HerdHTTP
import HerdJSON
import HerdRuntime
import HerdWire

/// `herd-proxy`: the data plane. Serves the Ollama and OpenAI APIs on `:11435`
/// and relays each request to the node herd-control chooses.
@main
struct HerdProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herd-proxy",
        abstract: "herd's data plane: one Ollama/OpenAI endpoint in front of a fleet.",
        discussion: """
            DESCRIPTION
              herd-proxy serves clients: Ollama's API, OpenAI's (chat, completions,
              embeddings, responses, speech, images), Anthropic's messages, rerank and
              model management, on one port. It checks each request (400 in the API's
              shape for anything outside its ranges), asks herd-control for a route over
              its Unix socket (or spends a route ticket, with no round trip), streams
              the answer, retries another node when one fails before its first byte, and
              reports how it went. Without control it routes on its own from the last
              fleet it knew. It is normally started by herd-control; run it alone to
              scale or restart proxies (several share the port through SO_REUSEPORT).

            ENVIRONMENT
              Every flag has an HERD_* twin (--port is HERD_PORT).
              HERD_PROVIDER_<NAME>_KEY: a cloud provider's API key.

            EXAMPLES
              herd-proxy --port 11435 --control-socket /run/herd/control.sock
              systemctl start herd-proxy@2
                  one more proxy beside herd-control's

            SEE ALSO
              herd(1), herd-control(1); README.md; what it accepts:
              Sources/herd-proxy/API/RequestLimits.md
            """,
        version: HerdVersion.current)

    @Option(help: "Address to listen on (HERD_HOST).")
    var host: String?

    @Option(help: "Port for client traffic (HERD_PORT).")
    var port: Int?

    @Option(help: "herd-control's Unix socket (HERD_CONTROL_SOCKET); default <data-dir>/control.sock.")
    var controlSocket: String?

    @Option(help: "This proxy's name in logs and traces (HERD_PROXY_ID).")
    var proxyId: String?

    @Option(help: "Time to wait for a model server's first byte, model loads included: seconds, or 500ms, 2s, 5m, 1h (HERD_FIRST_BYTE_TIMEOUT; 300).")
    var firstByteTimeout: Seconds?

    @Option(help: "Time herd-control has to answer a route before this proxy routes from its last snapshot (HERD_ROUTE_TIMEOUT; 1).")
    var routeTimeout: Seconds?

    @Option(help: "Time a model server may go silent once its response began (mid-stream) before the request fails (HERD_UPSTREAM_IDLE_TIMEOUT; 60).")
    var upstreamIdleTimeout: Seconds?

    @Option(help: "Time a whole request to a model server may take; 0 for no limit (HERD_UPSTREAM_TIMEOUT; 3600).")
    var upstreamTimeout: Seconds?

    @Option(help: "Time a client connection may sit idle between requests (HTTP/1.1 keep-alive and h2c) (HERD_CLIENT_IDLE_TIMEOUT; 60).")
    var clientIdleTimeout: Seconds?

    @Option(help: "Time a client may pause while sending a request body (a stalled upload is cut) (HERD_CLIENT_BODY_TIMEOUT; 30).")
    var clientBodyTimeout: Seconds?

    @Option(help: "Time to connect to a model server (HERD_CONNECT_TIMEOUT; 3).")
    var connectTimeout: Seconds?

    @Option(help: "Largest request body in MiB, 1–1024 (HERD_MAX_BODY_MB; 64).")
    var maxBodyMb: Int?

    @Option(help: "Largest upload in MiB (audio to transcribe, images to edit: multipart forms), 1–1024 and at most --max-body-mb (HERD_MAX_UPLOAD_MB; 25, OpenAI's limit).")
    var maxUploadMb: Int?

    @Option(help: "Size of the exact response cache in MiB, 0–4096; 0 (the default) is off (HERD_CACHE_MB). Deterministic requests (embeddings, rerank; temperature 0 or a seed) and those that send X-Herd-Cache: on are answered from it.")
    var cacheMb: Int?

    @Option(help: "How long a cached answer is served (HERD_CACHE_TTL; 600).")
    var cacheTtl: Seconds?

    @Option(name: .customLong("semantic-threshold"),
            help: "How alike (cosine of the embeddings, 0.5–1) a single-turn prompt must be to one answered before for the semantic cache to answer it (X-Herd-Cache: semantic, or a key with semantic_cache) (HERD_SEMANTIC_THRESHOLD; 0.9).")
    var semanticThreshold: Double?

    @Option(name: .customLong("semantic-model"),
            help: "The fleet's embedding model the semantic cache embeds prompts with (HERD_SEMANTIC_MODEL); default: the first embedding model the fleet lists.")
    var semanticModel: String?

    @Option(parsing: .singleValue, help: "A cloud provider control may route a key's request to (NAME=https://host/v1; repeatable; given by herd-control).")
    var provider: [String] = []

    @Option(name: .customLong("provider-key-file"), parsing: .singleValue,
            help: "NAME=PATH: the provider's API key, read from a file (else HERD_PROVIDER_<NAME>_KEY).")
    var providerKeyFile: [String] = []

    @Option(name: .customLong("provider-ca"), help: "A CA file to trust for the providers instead of the system's store (HERD_PROVIDER_CA).")
    var providerCa: String?

    @Option(help: "Time in-flight requests may take to finish after SIGTERM (HERD_DRAIN_TIMEOUT; 30).")
    var drainTimeout: Seconds?

    @Option(name: .customLong("allowed-origins"), help: "Comma-separated browser origins allowed by CORS, or * (HERD_ALLOWED_ORIGINS); default: local pages and apps.")
    var allowedOrigins: String?

    @Flag(name: .customLong("allow-remote-admin"),
          help: "Without a fleet key, accept model management (/api/pull, /api/delete, /api/copy, /api/create, /api/push, /api/blobs) from other machines too (HERD_ALLOW_REMOTE_ADMIN=1). With a key, it is needed instead.")
    var allowRemoteAdminFlag = false

    @Flag(help: "Exit (draining) when the parent process dies; herd-control sets it for its children.")
    var exitWithParent = false

    mutating func validate() throws {
        do { _ = try options() } catch { throw ValidationError(error.description) }
    }

    /// The settings from flags, their `HERD_*` twins and defaults, each
    /// within its range (`SettingsReader`: a bad value stops the start).
    func options(_ settings: SettingsReader = SettingsReader()) throws(SettingError) -> ProxyOptions {
        var options = ProxyOptions()
        options.host = settings.string(host, env: "HERD_HOST", default: "127.0.0.1")
        options.port = try settings.int(port, "port", env: "HERD_PORT", default: 11435, in: 0...65535)
        options.controlSocket = settings.string(controlSocket, env: "HERD_CONTROL_SOCKET", default: DataDirectory.resolve() + "/control.sock")
        options.proxyID = settings.string(proxyId, env: "HERD_PROXY_ID", default: "proxy")
        guard options.proxyID.utf8.count <= 64 else { throw SettingError("--proxy-id: at most 64 bytes") }
        let day = 86_400.0
        options.client.firstByteTimeoutMilliseconds = try settings.seconds(firstByteTimeout, "first-byte-timeout", env: "HERD_FIRST_BYTE_TIMEOUT",
                                                                           default: 300, in: 0.001...day).milliseconds
        options.client.connectTimeoutMilliseconds = try settings.seconds(connectTimeout, "connect-timeout", env: "HERD_CONNECT_TIMEOUT",
                                                                         default: 3, in: 0.001...3_600).milliseconds
        options.client.readIdleTimeoutMilliseconds = try settings.seconds(upstreamIdleTimeout, "upstream-idle-timeout", env: "HERD_UPSTREAM_IDLE_TIMEOUT",
                                                                          default: 60, in: 0.001...day).milliseconds
        options.client.totalTimeoutMilliseconds = try settings.seconds(upstreamTimeout, "upstream-timeout", env: "HERD_UPSTREAM_TIMEOUT",
                                                                       default: 3_600, in: 0...(7 * day)).milliseconds
        let maxBody = try settings.int(maxBodyMb, "max-body-mb", env: "HERD_MAX_BODY_MB", default: 64, in: 1...1_024)
        options.server.maxBodyBytes = maxBody * 1024 * 1024
        let maxUpload = try settings.int(maxUploadMb, "max-upload-mb", env: "HERD_MAX_UPLOAD_MB", default: min(25, maxBody), in: 1...1_024)
        guard maxUpload <= maxBody else { throw SettingError("--max-upload-mb (\(maxUpload)) must not be over --max-body-mb (\(maxBody))") }
        options.maxUploadBytes = maxUpload * 1024 * 1024
        options.server.keepAliveTimeoutMilliseconds = try settings.seconds(clientIdleTimeout, "client-idle-timeout", env: "HERD_CLIENT_IDLE_TIMEOUT",
                                                                           default: 60, in: 0.001...day).milliseconds
        options.server.bodyIdleTimeoutMilliseconds = try settings.seconds(clientBodyTimeout, "client-body-timeout", env: "HERD_CLIENT_BODY_TIMEOUT",
                                                                          default: 30, in: 0.001...day).milliseconds
        options.cacheBytes = try settings.int(cacheMb, "cache-mb", env: "HERD_CACHE_MB", default: 0, in: 0...4_096) * 1024 * 1024
        options.cacheTTLMilliseconds = try settings.seconds(cacheTtl, "cache-ttl", env: "HERD_CACHE_TTL", default: 600, in: 1...(30 * day)).milliseconds
        options.semanticThreshold = try settings.number(semanticThreshold, "semantic-threshold", env: "HERD_SEMANTIC_THRESHOLD", default: 0.9, in: 0.5...1)
        options.semanticModel = settings.string(semanticModel, env: "HERD_SEMANTIC_MODEL", default: "")
        if !options.semanticModel.isEmpty, !RequestLimits.isModelName(options.semanticModel) {
            throw SettingError("--semantic-model: 1–256 bytes without control characters")
        }
        // An h2c connection's concurrent bodies together: as much as one HTTP/1.1 connection's.
        options.server.maxConnectionBodyBytes = options.server.maxBodyBytes
        options.drainMilliseconds = try settings.seconds(drainTimeout, "drain-timeout", env: "HERD_DRAIN_TIMEOUT", default: 30, in: 0...day).milliseconds
        options.routeTimeoutMilliseconds = try settings.seconds(routeTimeout, "route-timeout", env: "HERD_ROUTE_TIMEOUT", default: 1, in: 0.001...3_600).milliseconds
        if let origins = settings.string(allowedOrigins, env: "HERD_ALLOWED_ORIGINS", default: "").nonEmpty {
            options.allowedOrigins = origins.split(separator: ",").map { String($0.trimmingSpaces) }
        }
        options.allowRemoteAdmin = try settings.bool(allowRemoteAdminFlag ? true : nil, env: "HERD_ALLOW_REMOTE_ADMIN", default: false)
        do {
            options.providers.providers = try provider.map { spec throws(CloudProviderError) in try CloudProvider.parse(spec) }
            for spec in providerKeyFile {
                let (name, path) = try CloudProvider.parsePair(spec, flag: "provider-key-file")
                options.providers.keyFiles[name] = path
            }
        } catch {
            throw SettingError(error.description)
        }
        options.providers.caFile = settings.string(providerCa, env: "HERD_PROVIDER_CA", default: "").nonEmpty
        return options
    }

    func run() throws {
        let options = try options()
        // A child of herd-control drains and exits when its parent dies.
        if exitWithParent { ParentProcess.signalOnDeath(SIGTERM) }
        let loop = try EventLoop()
        try ProxyApp(loop: loop, options: options).run()
    }
}

extension Seconds: ExpressibleByArgument {}

extension String {
    /// Self, or nil when empty.
    var nonEmpty: String? { isEmpty ? nil : self }
}
