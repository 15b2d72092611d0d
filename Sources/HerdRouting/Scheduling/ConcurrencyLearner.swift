import HerdBounds

/// How many requests one node:model should serve at once, learned from how
/// its requests went, so that the queue lives in herd (where a request can
/// still move to another node) and not inside the backend.
///
/// The model (AIMD on time to first byte, like TCP on round-trip time):
/// - `baseline`: the lowest backend TTFT seen (ms), drifting up 1 % per later
///   sample so that it follows a backend that became slower for good.
/// - `tail`: how long requests go on after their first byte (a moving
///   average of duration − TTFT; 0 for non-streaming answers).
/// - A request *queued inside the backend* when it had company (another
///   request in flight on the node:model) and its TTFT exceeds
///   `1.5 × baseline + max(20 ms, tail / 2)`, a stream's tail taken as at
///   least 500 ms until measured (a request that waited behind
///   another takes about a whole request longer — for a non-streaming
///   answer, whose first byte comes at its end, that doubles it; for a
///   stream, it adds that stream's tail; the margin keeps a busy CPU's
///   jitter from counting).
///   Then the limit drops to at most the concurrency the request met, × 0.75
///   (never below 1), and the learner leaves slow start — once per episode:
///   a late request that met more than the limit now allows was sent before
///   the cut, and is already answered by it (as TCP halves once per loss
///   event, not per lost packet).
/// - A backend that answers "busy" (503 / 429) halves the limit.
/// - A request that went well *while the limit was binding* (it found the
///   node:model full up to one below the limit) raises it: by 1 in slow
///   start (the limit doubles per round of requests), else by 1/(4 × limit)
///   (one more slot per four rounds).
/// - Requests that did not fill the limit say nothing about it.
/// - In slow start a request that filled the limit reports its first byte
///   (STARTED) without waiting for its end: a good one doubles the limit (at
///   least +1), as TCP's window doubles per round trip, so a backend that
///   serves 1,000 ten-second streams at once is found in ten first bytes,
///   not in minutes of completions; a late one ends slow start as above.
/// The prior: what the node reports (Ollama's `OLLAMA_NUM_PARALLEL`,
/// llama.cpp's slots) when it does, else 2. A reported parallelism is the
/// backend's own number of slots: more would only wait inside it, fewer
/// only because of a slower batch — which the scorer already prices (its
/// decode line grows with the batch). So a reported limit is kept, and left
/// only while the backend answers "busy" (halved, then +1 per good answer
/// back up to it). Pure: tested in isolation.
struct ConcurrencyLearner: Equatable, Sendable {
    /// The limit never grows past this.
    static let ceiling = 1024.0

    private(set) var estimate: Double
    /// The lowest backend TTFT seen, in milliseconds (nil: no sample yet).
    private(set) var baseline: Double?
    private(set) var slowStart = true
    /// Duration − TTFT, a moving average (ms).
    private(set) var tail = 0.0
    /// The backend's own parallelism, when its node reports it.
    let reported: Int?

    init(prior: Int, reported: Bool = false) {
        estimate = Double(max(1, prior))
        self.reported = reported ? max(1, prior) : nil
    }

    /// Requests this node:model may serve at once.
    var limit: Int { max(1, Int(saturating: estimate)) }

    /// The first byte of a request that filled the limit, in slow start
    /// (`ok`: a 2xx head; `busy`: 503/429). Its end teaches nothing more.
    mutating func started(ttft: Double, concurrency: Int, ok: Bool, busy: Bool, streamed: Bool = false) {
        guard slowStart, reported == nil || busy else {
            return
        }
        if busy || !ok {
            completed(ttft: ttft, concurrency: concurrency, ok: ok, busy: busy, streamed: streamed)
            return
        }
        let before = estimate
        completed(ttft: ttft, concurrency: concurrency, ok: true, busy: false, streamed: streamed)
        if slowStart, estimate > before { estimate = min(ConcurrencyLearner.ceiling, max(estimate, Double(concurrency) * 2)) }
    }

    /// A request ended. `ttft`: milliseconds from sending it to the backend
    /// to its first byte (herd's own queue wait excluded); `concurrency`: the
    /// requests in flight on this node:model with it, itself included;
    /// `busy`: the backend refused it for load (503, 429).
    mutating func completed(ttft: Double, concurrency: Int, ok: Bool, busy: Bool, duration: Double? = nil, streamed: Bool = false) {
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
        if let duration, duration.isFinite, duration >= ttft { tail += (duration - ttft - tail) * 0.2 }
        let reference = baseline ?? ttft
        baseline = min(reference * 1.01, ttft)
        if concurrency > 1, ttft > 1.5 * reference + max(20, (streamed ? max(tail, 500) : tail) / 2) {
            if concurrency <= limit { estimate = max(1, min(estimate, Double(max(1, concurrency - 1))) * 0.75) }
            slowStart = false
            return
        }
        guard concurrency >= limit else { return } // the limit did not bind: no news about it
        estimate = min(ConcurrencyLearner.ceiling, estimate + (slowStart ? 1 : 1 / (4 * Double(limit))))
    }
}
