import HerdHTTP
import HerdRuntime
import HerdSecurity

/// The fleet key, when one is set: heartbeats must be signed with it, and
/// state-changing API calls must carry it (`Authorization: Bearer <key>`) or
/// be signed as herd-node signs. One holder, read by the heartbeat endpoint
/// and the fleet API; SIGHUP replaces the key in place. Loop-thread only.
final class FleetKeyGate {
    var verifier: FleetKeyVerifier?

    init(verifier: FleetKeyVerifier? = nil) {
        self.verifier = verifier
    }

    var isSet: Bool { verifier != nil }

    /// Why a state-changing request may not go ahead; nil when it may (no key set, or it carries or signs it).
    func refusal(_ exchange: HTTPExchange, body: [UInt8]) -> String? {
        guard let verifier else { return nil }
        if let auth = exchange.head.headers["Authorization"], auth.hasPrefix("Bearer "),
           verifier.key.matches(String(auth.dropFirst(7).trimmingSpaces)) {
            return nil
        }
        do {
            try verifier.verify(method: exchange.head.method, path: String(exchange.head.path),
                                timestamp: exchange.head.headers[FleetKey.timestampHeader],
                                signature: exchange.head.headers[FleetKey.signatureHeader], body: body,
                                now: Int(clamping: EventLoop.wallClockMilliseconds()))
            return nil
        } catch {
            return "this router has a fleet key: send it as Authorization: Bearer <key> (or sign the request as herd-node does): \(error)"
        }
    }
}
