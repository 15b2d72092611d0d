internal import CAvahi
import HerdRuntime

/// Why mDNS is not working, in words a user can act on.
public struct MDNSError: Error, Equatable, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    public var description: String { message }

    init(code: Int32, context: String) {
        self.code = code
        let reason = String(cString: avahi_strerror(code))
        if code == AVAHI_ERR_NO_DAEMON || code == AVAHI_ERR_DISCONNECTED {
            message = "\(context): \(reason): is avahi-daemon running? (apt-get install avahi-daemon; systemctl start avahi-daemon)"
        } else {
            message = "\(context): \(reason)"
        }
    }
}

/// A connection to avahi-daemon over D-Bus on the loop. It waits for a daemon
/// that is not there yet, and reconnects when the daemon restarts
/// (`AVAHI_CLIENT_NO_FAIL`); when D-Bus itself is gone after a disconnect,
/// it tries again every `retryMilliseconds`. (A first `start` that finds no
/// D-Bus throws: its owner retries, saying why.) Loop-thread only.
final class AvahiClientConnection {
    enum State { case connecting, running, collision, failed(MDNSError) }

    let poll: AvahiLoopPoll
    private(set) var client: OpaquePointer?
    /// Called on every state change with the live client.
    var onState: ((OpaquePointer, State) -> Void)?
    private var stopped = false
    private var retryTimer: LoopTimer?
    static let retryMilliseconds: UInt64 = 2_000

    init(poll: AvahiLoopPoll) {
        self.poll = poll
    }

    func start() throws(MDNSError) {
        var error: Int32 = 0
        // The client callback runs inside avahi_client_new, before it returns.
        let created = avahi_client_new(poll.api, AVAHI_CLIENT_NO_FAIL, { client, state, userdata in
            let owner = Unmanaged<AvahiClientConnection>.fromOpaque(userdata!).takeUnretainedValue()
            owner.stateChanged(client!, state)
        }, Unmanaged.passUnretained(self).toOpaque(), &error)
        guard let created else { throw MDNSError(code: error, context: "avahi_client_new") }
        client = created
    }

    private func stateChanged(_ client: OpaquePointer, _ state: AvahiClientState) {
        guard !stopped else { return }
        switch state {
        case AVAHI_CLIENT_S_RUNNING:
            onState?(client, .running)
        case AVAHI_CLIENT_S_COLLISION, AVAHI_CLIENT_S_REGISTERING:
            onState?(client, .collision)
        case AVAHI_CLIENT_CONNECTING:
            onState?(client, .connecting)
        case AVAHI_CLIENT_FAILURE:
            let code = avahi_client_errno(client)
            onState?(client, .failed(MDNSError(code: code, context: "avahi client")))
            if code == AVAHI_ERR_DISCONNECTED {
                // The daemon went away: start over and wait for it to return.
                poll.loop.deferToNextTick { [weak self] in self?.restart() }
            }
        default:
            break
        }
    }

    private func restart() {
        guard !stopped else { return }
        if let client { avahi_client_free(client) }
        client = nil
        do {
            try start()
        } catch {
            // D-Bus is gone too: keep trying until it is back.
            let timer = retryTimer ?? LoopTimer(loop: poll.loop)
            retryTimer = timer
            timer.start(after: Self.retryMilliseconds) { [weak self] in self?.restart() }
        }
    }

    func stop() {
        stopped = true
        retryTimer?.close()
        retryTimer = nil
        if let client { avahi_client_free(client) }
        client = nil
    }
}
