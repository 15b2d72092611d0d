/// How many requests one node:model should serve at once, learned from how
/// its requests went, so that the queue lives in herd (where a request can
/// still move to another node) and not inside the backend.
///
/// The model (AIMD on time to first byte, like TCP on round-trip time):
/// - `baseline`: the lowest backend TTFT seen (ms), drifting up 1 % per later
///   sample so that it follows a backend that became slower for good.
/// - A request *queued inside the backend* when it had company (another
///   request in flight on the node:model) and its TTFT exceeds
///   `1.5 × baseline + 20 ms` (a request that waited behind another takes
///   about a whole request longer — for a non-streaming answer, whose first
///   byte comes at its end, that doubles it; the 20 ms keep a busy CPU's
///   jitter from counting).
///   Then the limit drops to at most the concurrency the request met, × 0.75
///   (never below 1), and the learner leaves slow start.
/// - A backend that answers "busy" (503 / 429) halves the limit.
/// - A request that went well *while the limit was binding* (it found the
///   node:model full up to one below the limit) raises it: by 1 in slow
///   start (the limit doubles per round of requests), else by 1/(4 × limit)
///   (one more slot per four rounds).
/// - Requests that did not fill the limit say nothing about it.
/// The prior: what the node reports (Ollama's `OLLAMA_NUM_PARALLEL`,
/// llama.cpp's slots) when it does, else 2. A reported parallelism is the
/// backend's own number of slots: more would only wait inside it, fewer
/// only because of a slower batch — which the scorer already prices (its
/// decode line grows with the batch). So a reported limit is kept, and left
/// only while the backend answers "busy" (halved, then +1 per good answer
/// back up to it). Pure: tested in isolation.
struct ConcurrencyLearner: Equatable, Sendable {
    /// The limit never grows past this.
    static let ceiling = 256.0

    private(set) var estimate: Double
    /// The lowest backend TTFT seen, in milliseconds (nil: no sample yet).
    private(set) var baseline: Double?
    private(set) var slowStart = true
    /// The backend's own parallelism, when its node reports it.
    let reported: Int?

    init(prior: Int, reported: Bool = false) {
        estimate = Double(max(1, prior))
        self.reported = reported ? max(1, prior) : nil
    }

    /// Requests this node:model may serve at once.
    var limit: Int { max(1, Int(estimate)) }

    /// A request ended. `ttft`: milliseconds from sending it to the backend
    /// to its first byte (herd's own queue wait excluded); `concurrency`: the
    /// requests in flight on this node:model with it, itself included;
    /// `busy`: the backend refused it for load (503, 429).
    mutating func completed(ttft: Double, concurrency: Int, ok: Bool, busy: Bool) {
        if busy {
            estimate = max(1, estimate / 2)
            slowStart = false
            return
        }
        if let reported {
            if ok { estimate = min(Double(reported), estimate + 1) }
            return
        }
        guard ok, ttft.isFinite, ttft >= 0 else { return }
        let reference = baseline ?? ttft
        baseline = min(reference * 1.01, ttft)
        if concurrency > 1, ttft > 1.5 * reference + 20 {
            estimate = max(1, min(estimate, Double(max(1, concurrency - 1))) * 0.75)
            estimate = max(estimate, 1)
            slowStart = false
            return
        }
        guard concurrency >= limit else { return } // the limit did not bind: no news about it
        estimate = min(ConcurrencyLearner.ceiling, estimate + (slowStart ? 1 : 1 / (4 * Double(limit))))
    }
}
