internal import CAvahi

/// A resolved DNS-SD service instance.
public struct MDNSService: Equatable, Sendable {
    public var name: String
    public var type: String
    public var domain: String
    public var host: String
    /// Every address it resolved to so far (IPv4 dotted, IPv6 colon form).
    public var addresses: [String]
    public var port: Int
    public var txt: [String: String]
}

/// Browses for a DNS-SD service type and resolves each instance, on the loop.
/// Loop-thread only.
public final class MDNSBrowser {
    public enum Event: Equatable, Sendable {
        /// An instance appeared or resolved to another address.
        case resolved(MDNSService)
        /// An instance left the network.
        case removed(name: String)
        case failed(String)
    }

    public let type: String
    private let connection: AvahiClientConnection
    private var browser: OpaquePointer?
    private var services: [String: MDNSService] = [:]
    private let onEvent: (Event) -> Void

    public init(poll: AvahiLoopPoll, type: String, onEvent: @escaping (Event) -> Void) {
        self.type = type
        self.onEvent = onEvent
        connection = AvahiClientConnection(poll: poll)
    }

    /// Services resolved and not removed, by instance name.
    public var current: [MDNSService] { Array(services.values) }

    /// Connects to avahi-daemon (waiting for it if absent) and browses.
    public func start() throws(MDNSError) {
        connection.onState = { [unowned self] client, state in self.clientState(client, state) }
        try connection.start()
    }

    public func stop() {
        if let browser { avahi_service_browser_free(browser) }
        browser = nil
        connection.stop()
    }

    private func clientState(_ client: OpaquePointer, _ state: AvahiClientConnection.State) {
        switch state {
        case .running:
            guard browser == nil else { return }
            browser = avahi_service_browser_new(client, AvahiIfIndex(clamping: AVAHI_IF_UNSPEC), AvahiProtocol(clamping: AVAHI_PROTO_UNSPEC), type, nil, AvahiLookupFlags(rawValue: 0), { b, interface, proto, event, name, type, domain, _, userdata in
                let owner = Unmanaged<MDNSBrowser>.fromOpaque(userdata!).takeUnretainedValue()
                owner.browse(b!, interface, proto, event, name, type, domain)
            }, Unmanaged.passUnretained(self).toOpaque())
            if browser == nil {
                onEvent(.failed(MDNSError(code: avahi_client_errno(client), context: "avahi_service_browser_new").message))
            }
        case .collision, .connecting:
            break
        case let .failed(error):
            browser = nil // freed with its client
            for name in services.keys { onEvent(.removed(name: name)) }
            services.removeAll()
            onEvent(.failed(error.message))
        }
    }

    private func browse(_ b: OpaquePointer, _ interface: AvahiIfIndex, _ proto: AvahiProtocol, _ event: AvahiBrowserEvent,
                        _ name: UnsafePointer<CChar>?, _ type: UnsafePointer<CChar>?, _ domain: UnsafePointer<CChar>?) {
        switch event {
        case AVAHI_BROWSER_NEW:
            let client = avahi_service_browser_get_client(b)
            let resolver = avahi_service_resolver_new(client, interface, proto, name, type, domain, AvahiProtocol(clamping: AVAHI_PROTO_UNSPEC), AvahiLookupFlags(rawValue: 0), {
                r, _, _, event, name, type, domain, host, address, port, txt, _, userdata in
                let owner = Unmanaged<MDNSBrowser>.fromOpaque(userdata!).takeUnretainedValue()
                if event == AVAHI_RESOLVER_FOUND, let name, let type, let domain, let host, let address {
                    owner.resolved(name: String(cString: name), type: String(cString: type), domain: String(cString: domain),
                                   host: String(cString: host), address: address, port: Int(port), txt: txt)
                }
                avahi_service_resolver_free(r)
            }, Unmanaged.passUnretained(self).toOpaque())
            if resolver == nil {
                onEvent(.failed(MDNSError(code: avahi_client_errno(client), context: "avahi_service_resolver_new").message))
            }
        case AVAHI_BROWSER_REMOVE:
            guard let name else { return }
            let key = String(cString: name)
            if services.removeValue(forKey: key) != nil { onEvent(.removed(name: key)) }
        case AVAHI_BROWSER_FAILURE:
            let client = avahi_service_browser_get_client(b)
            onEvent(.failed(MDNSError(code: avahi_client_errno(client), context: "browsing \(self.type)").message))
        default:
            break
        }
    }

    private func resolved(name: String, type: String, domain: String, host: String, address: UnsafePointer<AvahiAddress>, port: Int, txt: UnsafeMutablePointer<AvahiStringList>?) {
        var buffer = [CChar](repeating: 0, count: Int(AVAHI_ADDRESS_STR_MAX))
        avahi_address_snprint(&buffer, buffer.count, address)
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var records: [String: String] = [:]
        var item = txt
        while let entry = item {
            let length = avahi_string_list_get_size(entry)
            if let bytes = avahi_string_list_get_text(entry) {
                let pair = String(decoding: UnsafeBufferPointer(start: bytes, count: length), as: UTF8.self)
                if let eq = pair.firstIndex(of: "=") {
                    records[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
                } else {
                    records[pair] = ""
                }
            }
            item = avahi_string_list_get_next(entry)
        }
        var service = services[name] ?? MDNSService(name: name, type: type, domain: domain, host: host, addresses: [], port: port, txt: records)
        service.host = host
        service.port = port
        service.txt = records
        if !service.addresses.contains(text) { service.addresses.append(text) }
        services[name] = service
        onEvent(.resolved(service))
    }
}
