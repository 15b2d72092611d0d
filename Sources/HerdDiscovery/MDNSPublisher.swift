internal import CAvahi

/// Publishes one DNS-SD service (e.g. `_herd._tcp`) through avahi-daemon, on the
/// loop. Re-publishes after a daemon restart and renames on a name collision.
/// Loop-thread only.
public final class MDNSPublisher {
    public enum Event: Equatable, Sendable {
        /// The service is announced under `name` (which may differ after a collision).
        case established(name: String)
        case failed(String)
    }

    public let type: String
    public let port: UInt16
    public let txt: [(String, String)]
    public private(set) var name: String
    private let connection: AvahiClientConnection
    private var group: OpaquePointer?
    private let onEvent: (Event) -> Void

    /// - Parameters: `txt` records as key/value pairs, published as `key=value`.
    public init(poll: AvahiLoopPoll, name: String, type: String, port: UInt16, txt: [(String, String)] = [], onEvent: @escaping (Event) -> Void = { _ in }) {
        self.name = name
        self.type = type
        self.port = port
        self.txt = txt
        self.onEvent = onEvent
        connection = AvahiClientConnection(poll: poll)
    }

    /// Connects to avahi-daemon (waiting for it if absent) and publishes.
    public func start() throws(MDNSError) {
        connection.onState = { [unowned self] client, state in self.clientState(client, state) }
        try connection.start()
    }

    /// Withdraws the service and disconnects.
    public func stop() {
        if let group { avahi_entry_group_free(group) }
        group = nil
        connection.stop()
    }

    private func clientState(_ client: OpaquePointer, _ state: AvahiClientConnection.State) {
        switch state {
        case .running:
            publish(client)
        case .collision:
            if let group { avahi_entry_group_reset(group) }
        case .connecting:
            break
        case let .failed(error):
            // The group died with the client; a restart publishes again.
            group = nil
            onEvent(.failed(error.message))
        }
    }

    private func publish(_ client: OpaquePointer) {
        if group == nil {
            group = avahi_entry_group_new(client, { group, state, userdata in
                let owner = Unmanaged<MDNSPublisher>.fromOpaque(userdata!).takeUnretainedValue()
                owner.groupState(group!, state)
            }, Unmanaged.passUnretained(self).toOpaque())
        }
        guard let group else {
            onEvent(.failed(MDNSError(code: avahi_client_errno(client), context: "avahi_entry_group_new").message))
            return
        }
        if avahi_entry_group_is_empty(group) == 0 { return }
        var list: UnsafeMutablePointer<AvahiStringList>? = nil
        for (key, value) in txt.reversed() { list = avahi_string_list_add(list, "\(key)=\(value)") }
        defer { avahi_string_list_free(list) }
        var rc = avahi_entry_group_add_service_strlst(group, AvahiIfIndex(clamping: AVAHI_IF_UNSPEC), AvahiProtocol(clamping: AVAHI_PROTO_UNSPEC), AvahiPublishFlags(rawValue: 0), name, type, nil, nil, port, list)
        if rc == AVAHI_ERR_COLLISION {
            rename()
            rc = avahi_entry_group_add_service_strlst(group, AvahiIfIndex(clamping: AVAHI_IF_UNSPEC), AvahiProtocol(clamping: AVAHI_PROTO_UNSPEC), AvahiPublishFlags(rawValue: 0), name, type, nil, nil, port, list)
        }
        if rc < 0 {
            onEvent(.failed(MDNSError(code: rc, context: "publishing \(name)").message))
            return
        }
        rc = avahi_entry_group_commit(group)
        if rc < 0 { onEvent(.failed(MDNSError(code: rc, context: "committing \(name)").message)) }
    }

    private func rename() {
        if let alternative = avahi_alternative_service_name(name) {
            name = String(cString: alternative)
            avahi_free(alternative)
        }
    }

    private func groupState(_ group: OpaquePointer, _ state: AvahiEntryGroupState) {
        switch state {
        case AVAHI_ENTRY_GROUP_ESTABLISHED:
            onEvent(.established(name: name))
        case AVAHI_ENTRY_GROUP_COLLISION:
            rename()
            avahi_entry_group_reset(group)
            if let client = connection.client { publish(client) }
        case AVAHI_ENTRY_GROUP_FAILURE:
            let client = avahi_entry_group_get_client(group)
            onEvent(.failed(MDNSError(code: avahi_client_errno(client), context: "entry group").message))
        default:
            break
        }
    }
}
