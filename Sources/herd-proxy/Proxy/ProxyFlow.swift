import HerdHTTP
import HerdWire

/// The proxy session's logic as a value: events in, actions out. The driver
/// (`ProxySession`) performs the actions; this type does no I/O, so every path
/// (retry before the first byte, error after it, client gone at any point) is
/// tested without sockets.
///
/// Phases: routing → upstream (request sent, no byte relayed yet; failures are
/// retried elsewhere) → streaming (bytes reached the client; a failure ends the
/// stream with an explicit error) → finished.
struct ProxyFlow: Equatable {
    enum Phase: Equatable {
        case routing
        case upstream(node: String)
        case streaming(node: String)
        case finished
    }

    enum Action: Equatable {
        /// Ask for a route (control, or the local policy when control is away).
        case askRoute
        /// Tell control `node` failed (with the status it answered, if it did) and ask for another.
        case askRetry(node: String, reason: String, status: Int?)
        /// Send the request to the routed backend.
        case sendUpstream(RouteAnswer)
        /// Abandon the upstream request (its connection closes).
        case cancelUpstream
        /// Tell control a queued or routed request is abandoned.
        case cancelRoute
        /// Start the client's response from the upstream head.
        case relayHead
        /// Answer the client with an error (nothing was sent yet).
        case failClient(ClientError)
        /// End a response already under way with an explicit error.
        case failStream(message: String)
        /// End the client's response normally.
        case endClient
        /// Report the outcome to control.
        case report(outcome: RouteResult.Outcome, status: Int, error: String?)
        /// Answer the client with herd's own answer (the backend does not serve
        /// the endpoint, and herd can answer it: Anthropic's `count_tokens`).
        case answerItself
        /// Send the request again to the same node, translated (it does not serve the endpoint).
        case resendTranslated
    }

    private(set) var phase = Phase.routing
    /// Why the last upstream attempt failed (shapes the final error).
    private(set) var lastFailure: HTTPClientError?
    private(set) var lastFailureStatus: Int?
    /// When the backend says it does not serve the endpoint (404, 405, 501),
    /// herd answers itself instead of relaying that.
    var answersWhenUnsupported = false
    /// When the backend says it does not serve the endpoint, the request goes
    /// to it again in a form it serves (Anthropic Messages as a chat completion), once.
    var mayTranslate = false
    /// The request can go to another node after a failure (false once part of
    /// a relayed upload went to this one: it cannot be sent again).
    var retryable = true

    init(answersWhenUnsupported: Bool = false) {
        self.answersWhenUnsupported = answersWhenUnsupported
    }

    mutating func start() -> [Action] { [.askRoute] }

    mutating func routed(_ answer: RouteAnswer) -> [Action] {
        guard phase == .routing else { return [] }
        phase = .upstream(node: answer.node)
        return [.sendUpstream(answer)]
    }

    mutating func refused(_ refusal: RouteRefusal) -> [Action] {
        guard phase == .routing else { return [] }
        phase = .finished
        let error = ClientError.refused(refusal, lastFailure: lastFailure, lastUpstreamStatus: lastFailureStatus)
        // Retries that ran out are the backends' failure; anything else herd refused.
        let outcome: RouteResult.Outcome = refusal.code == .retriesExhausted ? .upstreamError : .rejected
        return [.failClient(error), .report(outcome: outcome, status: error.status, error: error.message)]
    }

    /// The upstream's response head arrived. A 5xx is the node's failure:
    /// another node is tried. But 501 is the backend's own answer about
    /// what it serves ("start it with --embeddings"): the client gets it,
    /// with its message, as a 4xx would.
    mutating func upstreamHead(status: Int) -> [Action] {
        guard case let .upstream(node) = phase else { return [] }
        if mayTranslate, status == 404 || status == 405 || status == 501 {
            mayTranslate = false
            return [.cancelUpstream, .resendTranslated]
        }
        if answersWhenUnsupported, status == 404 || status == 405 || status == 501 {
            phase = .finished
            return [.cancelUpstream, .answerItself, .report(outcome: .ok, status: 200, error: nil)]
        }
        if status >= 500, status != 501, retryable {
            lastFailureStatus = status
            lastFailure = nil
            return retry(node, reason: "status \(status)", status: status, cancel: true)
        }
        phase = .streaming(node: node)
        return [.relayHead]
    }

    /// herd answers the request itself on the routed node's behalf (Ollama's
    /// `/api/show` for an OpenAI-compatible server), or refuses it there.
    mutating func answeredByHerd(_ error: ClientError? = nil) -> [Action] {
        guard case .upstream = phase else { return [] }
        phase = .finished
        if let error { return [.failClient(error), .report(outcome: .rejected, status: error.status, error: error.message)] }
        return [.answerItself, .report(outcome: .ok, status: 200, error: nil)]
    }

    mutating func upstreamFinished(status: Int) -> [Action] {
        guard case .streaming = phase else { return [] }
        phase = .finished
        return [.endClient, .report(outcome: .ok, status: status, error: nil)]
    }

    mutating func upstreamFailed(_ error: HTTPClientError, status: Int) -> [Action] {
        switch phase {
        case let .upstream(node):
            lastFailure = error
            lastFailureStatus = nil
            guard retryable else {
                phase = .finished
                let message = "node \(node) failed while the upload was sent to it (\(error)); it cannot be sent elsewhere: send it again"
                return [.failClient(ClientError(status: 502, message: message)), .report(outcome: .upstreamError, status: 502, error: message)]
            }
            return retry(node, reason: error.description, status: nil, cancel: false)
        case .streaming:
            phase = .finished
            let message = "the model server failed mid-response: \(error)"
            return [.failStream(message: message), .report(outcome: .upstreamError, status: status, error: message)]
        case .routing, .finished:
            return []
        }
    }

    /// The client's upload went over the limit while it was relayed.
    mutating func uploadTooLarge(_ message: String) -> [Action] {
        let error = ClientError(status: 413, message: message)
        switch phase {
        case .routing:
            phase = .finished
            return [.cancelRoute, .failClient(error), .report(outcome: .rejected, status: 413, error: message)]
        case .upstream:
            phase = .finished
            return [.cancelUpstream, .failClient(error), .report(outcome: .rejected, status: 413, error: message)]
        case .streaming:
            phase = .finished
            return [.cancelUpstream, .failStream(message: message), .report(outcome: .rejected, status: 413, error: message)]
        case .finished:
            return []
        }
    }

    mutating func clientGone() -> [Action] {
        switch phase {
        case .routing:
            phase = .finished
            return [.cancelRoute, .report(outcome: .clientGone, status: 499, error: "client disconnected while waiting for a node")]
        case .upstream, .streaming:
            phase = .finished
            return [.cancelUpstream, .report(outcome: .clientGone, status: 499, error: "client disconnected")]
        case .finished:
            return []
        }
    }

    /// The retry itself is the route source's to count (control's budget, or
    /// the local policy's): the flow only asks.
    private mutating func retry(_ node: String, reason: String, status: Int?, cancel: Bool) -> [Action] {
        phase = .routing
        return (cancel ? [.cancelUpstream] : []) + [.askRetry(node: node, reason: reason, status: status)]
    }
}
