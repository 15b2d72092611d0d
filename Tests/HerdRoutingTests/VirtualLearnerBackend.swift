import Glibc
import HerdWire
import Testing
@testable import HerdRouting

/// A backend in virtual time, as the learner meets it: `slots` requests
/// served at once, more waiting inside in order; a request alone costs
/// `promptMs` per prompt token and `tokenMs` per output token; each other
/// request in its batch slows it by `slowdown`. It reports nothing about
/// itself: the learner sees only what herd measures (times, token counts).
struct VirtualBackend {
    struct Job {
        var id: Int
        var prompt: Int
        var completion: Int
        var streamed: Bool
        var sentAt: Double
        var concurrency: Int
        /// herd's learned limit when it was sent.
        var limitAtSend: Int
        var startedAt: Double?
        var prefillLeft: Double
        var decodeLeft: Double
        var firstByteAt: Double?
        /// Other models' requests on the node when it was sent.
        var others = 0
    }

    let slots: Int
    var tokenMs = 20.0
    var promptMs = 0.5
    var slowdown = 0.1
    /// Its speed over each second is 1 / (1 + jitter × X), X exponential of
    /// mean 1 drawn per second (seeded): a machine whose cores are shared
    /// with other programs. 0: steady.
    var jitter = 0.0
    /// Other models' requests running on the node at a time (ms), each
    /// slowing this model's by `otherSlowdown` of its speed alone (they
    /// share the GPU without batching with it; none: nil).
    var others: ((Double) -> Int)?
    var otherSlowdown = 0.0
    var jobs: [Job] = []
    /// The most requests seen waiting inside at once.
    private(set) var mostWaiting = 0
    /// First bytes of streams since the last `step`, as the proxy reports them:
    /// (time to first byte, concurrency at send, limit at send, prompt tokens,
    /// requests sent before it still in flight at its first byte).
    var firstBytes: [(ttft: Double, concurrency: Int, limitAtSend: Int, prompt: Int, aheadStill: Int)] = []

    init(slots: Int, tokenMs: Double = 20, promptMs: Double = 0.5, slowdown: Double = 0.1, jitter: Double = 0) {
        self.slots = slots
        self.tokenMs = tokenMs
        self.promptMs = promptMs
        self.slowdown = slowdown
        self.jitter = jitter
    }

    /// The speed during the second that holds `now`.
    func speed(at now: Double) -> Double {
        guard jitter > 0 else { return 1 }
        var x = UInt64(max(0, now / 1000)) &* 0x9E37_79B9_7F4A_7C15 &+ 0x2545_F491_4F6C_DD1D
        x = (x ^ (x >> 31)) &* 0xBF58_476D_1CE4_E5B9
        x ^= x >> 29
        let uniform = Double(x >> 11) / Double(1 << 53)
        return 1 / (1 + jitter * -log(max(1e-12, 1 - uniform)))
    }

    var inFlight: Int { jobs.count }

    /// What its `/metrics` would say now: requests served, requests waiting for a slot.
    var gauges: (running: Int, waiting: Int) { (min(slots, jobs.count), max(0, jobs.count - slots)) }

    mutating func send(id: Int, prompt: Int, completion: Int, streamed: Bool, at now: Double, limit: Int = 0) {
        jobs.append(Job(id: id, prompt: prompt, completion: completion, streamed: streamed, sentAt: now, concurrency: jobs.count + 1,
                        limitAtSend: limit, prefillLeft: Double(prompt) * promptMs, decodeLeft: Double(completion) * tokenMs,
                        others: others?(now) ?? 0))
    }

    /// Advances `dt` ms; returns what finished, as the learner's samples.
    mutating func step(_ dt: Double, now: Double) -> [ConcurrencyLearner.Sample] {
        for i in jobs.indices.prefix(slots) where jobs[i].startedAt == nil { jobs[i].startedAt = now }
        mostWaiting = max(mostWaiting, max(0, jobs.count - slots))
        let batch = min(slots, jobs.count)
        guard batch > 0 else { return [] }
        let shared = 1 + otherSlowdown * Double(others?(now) ?? 0)
        let progress = dt * speed(at: now) / ((1 + slowdown * Double(batch - 1)) * shared)
        var done: [ConcurrencyLearner.Sample] = []
        for i in 0..<batch {
            if jobs[i].prefillLeft > 0 {
                jobs[i].prefillLeft -= progress
                if jobs[i].prefillLeft <= 0 {
                    jobs[i].firstByteAt = now + dt
                    if jobs[i].streamed {
                        let sent = jobs[i].sentAt
                        firstBytes.append((now + dt - sent, jobs[i].concurrency, jobs[i].limitAtSend, jobs[i].prompt,
                                           jobs.filter { $0.sentAt < sent }.count))
                    }
                }
            } else {
                jobs[i].decodeLeft -= progress
            }
        }
        let end = now + dt
        let before = jobs
        jobs.removeAll { $0.prefillLeft <= 0 && $0.decodeLeft <= 0 }
        for job in before where job.prefillLeft <= 0 && job.decodeLeft <= 0 {
            let overtook = jobs.count { $0.sentAt < job.sentAt }
            done.append(ConcurrencyLearner.Sample(
                concurrency: job.concurrency, streamed: job.streamed,
                ttftMs: job.streamed ? (job.firstByteAt ?? end) - job.sentAt : end - job.sentAt, durationMs: end - job.sentAt,
                promptTokens: job.prompt, completionTokens: job.completion, sentAt: job.sentAt, endedAt: end, overtook: overtook,
                othersOnNode: job.others, limitAtSend: job.limitAtSend))
        }
        return done
    }
}

/// Drives a learner against a virtual backend: requests arrive (open loop,
/// seeded Poisson, or closed loop at a fixed concurrency), wait in herd's
/// queue while the learned limit is full, and teach the learner as they end.
struct LearnerRun {
    var backend: VirtualBackend
    var learner: ConcurrencyLearner
    var now = 0.0
    /// (time, limit) after every completion.
    var limits: [(Double, Int)] = []
    var completions = 0
    var lowestLimit = Int.max
    /// Read the backend's queue gauges this often (ms) while requests are in flight, as herd-node does (nil: it has none).
    var gaugeEveryMs: Double?
    private var lastGauge = 0.0
    private var rng: UInt64
    private var queue: [(prompt: Int, completion: Int, streamed: Bool)] = []
    private var nextID = 0

    init(backend: VirtualBackend, learner: ConcurrencyLearner, seed: UInt64 = 7) {
        self.backend = backend
        self.learner = learner
        rng = seed
    }

    mutating func random() -> Double {
        rng = rng &* 6364136223846793005 &+ 1442695040888963407
        return Double(rng >> 11) / Double(1 << 53)
    }

    /// Prompt and answer lengths varying `spread`× (log-uniform).
    mutating func lengths(prompt: Int = 150, answer: Int = 50, spread: Double = 4) -> (Int, Int) {
        (Int(Double(prompt) * exp(random() * log(spread))), Int(Double(answer) * exp(random() * log(spread))))
    }

    private mutating func dispatch() {
        while !queue.isEmpty, backend.inFlight < learner.limit {
            let next = queue.removeFirst()
            backend.send(id: nextID, prompt: next.prompt, completion: next.completion, streamed: next.streamed, at: now, limit: learner.limit)
            nextID += 1
        }
    }

    private mutating func tick(step: Double) {
        let samples = backend.step(step, now: now)
        // The stream that filled the limit of its send reports its first byte (STARTED), in slow start.
        for first in backend.firstBytes where first.concurrency >= first.limitAtSend && learner.slowStart {
            learner.started(ttft: first.ttft, concurrency: first.concurrency, promptTokens: first.prompt, ok: true, busy: false,
                            limitAtSend: first.limitAtSend, alongside: first.aheadStill + 1)
            limits.append((now, learner.limit))
        }
        backend.firstBytes.removeAll()
        for sample in samples {
            learner.observe(sample)
            completions += 1
            limits.append((now, learner.limit))
            lowestLimit = min(lowestLimit, learner.limit)
        }
        now += step
        if let every = gaugeEveryMs, now - lastGauge >= every {
            lastGauge = now
            if backend.inFlight > 0 {
                learner.gauged(running: backend.gauges.running, waiting: backend.gauges.waiting, inFlight: backend.inFlight)
                limits.append((now, learner.limit))
                lowestLimit = min(lowestLimit, learner.limit)
            }
        }
        dispatch()
    }

    /// A request of varied length, streamed when `streamed` (a share of requests when `streamShare` is given).
    private mutating func request(streamed: Bool, streamShare: Double?) -> (prompt: Int, completion: Int, streamed: Bool) {
        let (prompt, completion) = lengths()
        return (prompt, completion, streamShare.map { random() < $0 } ?? streamed)
    }

    /// Open loop: `rate` requests per second for `seconds`.
    mutating func open(rate: Double, seconds: Double, streamed: Bool = false, streamShare: Double? = nil, step: Double = 5) {
        let end = now + seconds * 1000
        var next = now - log(1 - random()) / rate * 1000
        while now < end {
            while next <= now {
                queue.append(request(streamed: streamed, streamShare: streamShare))
                next -= log(1 - random()) / rate * 1000
            }
            dispatch()
            tick(step: step)
        }
    }

    /// Closed loop: `concurrency` requests in flight, each replaced as it ends, `count` in all.
    mutating func closed(concurrency: Int, count: Int, streamed: Bool = false, streamShare: Double? = nil, step: Double = 5) {
        var sent = 0
        let target = completions + count
        while completions < target {
            while backend.inFlight + queue.count < concurrency, sent < count {
                queue.append(request(streamed: streamed, streamShare: streamShare))
                sent += 1
            }
            dispatch()
            tick(step: step)
        }
    }

    /// Sends `n` requests one at a time (nothing else in flight): the fit's samples.
    mutating func alone(_ n: Int, streamed: Bool = false) {
        closed(concurrency: 1, count: n, streamed: streamed)
    }
}
