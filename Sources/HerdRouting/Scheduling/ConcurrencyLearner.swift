import Glibc
import HerdBounds

/// How many requests one node:model should serve at once, learned from how
/// its requests went, so that the queue lives in herd (where a request can
/// still move to another node) and not inside the backend.
///
/// The question it answers for each finished request: *did it wait inside
/// the backend for a slot*, or was it only long (a longer answer takes
/// longer; a non-streaming answer's first byte is its last)? In order of
/// trust:
/// 1. **The backend's own account** (`Sample.queuedInsideMs`: Ollama's
///    `total_duration` − `load_duration` − `prompt_eval_duration` −
///    `eval_duration`, when those are believable): it waited when that is
///    more than 50 ms and a tenth of its time.
/// 2. **herd's own measurement, by tokens** (every backend): a request's
///    cost alone is `P·prompt tokens + D·output tokens`, `P` and `D` fitted
///    (least squares with forgetting, `WorkFit`) to requests that were sent
///    alone (concurrency 1: they cannot have waited). A request sent with
///    `k − 1` others in flight is expected to take that × `1 + σ(k − 1)` —
///    the batch's own slowdown, `σ` learned from the requests that did not
///    wait (between 0 and 1; 0.25 before any). Once eight recent clean
///    answers were sent at no more than an answer was seen served
///    alongside, what they took over the fit at their concurrency, fitted
///    as `a + b(k − 1)`, replaces `1 + σ(k − 1)` in this test
///    (`servedRatio`): the fit and σ, learned from the same answers near one
///    concurrency, agree on any σ with a matching scale, and a σ settled at
///    the prior's 0.25 over a true 0.06 let a request at twice the slots
///    wait a whole service unseen. It *waited inside* when its
///    time exceeds the expectation × 1.5 + 50 ms (a stream: when its time to
///    first byte exceeds twice its expected prefill + 100 ms — a stream
///    that waited shows the whole wait before its first byte), or when its
///    end lines up with the end of one of the first two requests ahead to
///    end (`linedUp`). The stream
///    and lined-up tests use the fit from its first sample on — a one-slot
///    backend lines its second request up behind its first long before
///    three answers. Per-token
///    normalisation is what keeps answers of varied length at a constant
///    concurrency from looking like queueing. Both tests scale by the node's
///    **pace** while the request ran: how much slower than the fit the
///    answers that overlapped it (and did not wait) were served. A machine
///    slowed by something else — cores shared with other programs, a GPU
///    that throttles, a video call — slows every request alike; a request
///    that waited for a slot is slow beside requests that were not.
/// 3. **Corroboration** for what is only inferred: a wait herd infers is
///    believed at once unless something speaks against it — the node's clean
///    answers of late vary in pace by themselves (a fifth of the last 32 took
///    over 1.3× their expectation), or one of the last 32 answers was seen
///    served alongside at least as many requests as this one met. Then it
///    is believed when a second comes within the next four answers (and the
///    first with it: fewer slots than the lower of the two met), and the
///    limit does not grow meanwhile. One answer slowed for a moment must not
///    cost a slot: on a machine whose speed changes by the second, single
///    slow answers cut an 8-slot backend down to two.
///
/// What follows (AIMD, like TCP):
/// - A request that waited while sent at concurrency `k` (itself included)
///   means fewer than `k` slots: the limit drops to `k − 1`, by at most half
///   (never below 1), and the learner leaves slow start. Once per episode: a request sent
///   before the cut, at more than the new limit, says nothing new. Out of
///   slow start, a wait herd only inferred (the backend did not say so) cuts
///   one slot at a time: answers far longer than their tokens predict can
///   look like a wait, and one such must not take half of a many-slot
///   backend (real waits come in runs under load, and each cuts again).
/// - A backend that answers "busy" (503 / 429) halves the limit.
/// - **Throughput that stopped growing** (a limit of 6 or more): the tests
///   above allow each answer its batch's slowdown, `1 + σ(k − 1)` × 1.5,
///   and σ is learned from the same answers — answers all served near one
///   concurrency fit any σ with a matching cost, so a σ twice the truth is
///   as consistent as the truth. At twice the slots a request's wait is
///   then inside that allowance, and a 4-slot backend was held at a limit
///   of 8 to 16 (in 8 of 20 seeded runs). So the learner also asks what
///   more at once buys: each answer sent at k (at least half the limit) shows
///   the node serving `k × time alone ÷ its time` requests' worth at once;
///   if a doubling of k gains under 11 % over the last 16 or more such
///   answers, the limit goes to one above half (`throughputFlat`). σ does
///   not enter it, and the fit's scale cancels.
/// - A request that did not wait, sent while the limit was binding (it met
///   the node:model full up to one below the limit of its send), raises it:
///   in slow start to twice its concurrency at once (by at most 8: from 2,
///   4, 8, 16, 24…; a burst is not left queueing in herd for rounds of
///   answers while the backend has room), else by 1/(4 × limit) — 1/(16 × limit) while that would reach a
///   concurrency where a request was last seen waiting (probing there costs
///   a request waiting inside, so it is done rarely; a wait is forgotten after
///   eight good answers at its concurrency or 32 just below it). Each probe
///   in a row that meets a wait again halves that rate and doubles that
///   memory, up to 8×: slots rarely change, and on a one-slot server every
///   probe is a whole answer's wait.
/// - Requests that did not fill the limit say nothing about it.
/// - Beside other models (their requests on the node at its send, or sent
///   there before its end: two models' runners may take turns rather than
///   batch, and one that joined slows it as much as a wait), an
///   answer's time cannot rule a wait out: it proves served at once only
///   what its order says: itself, what it overtook, and the requests ahead
///   that ended well inside its time alone. That must fill the limit, or in slow start
///   pass half of it (the limit goes to twice what it proves). Order never
///   proves more than the slots, so there slow start stalls at twice them:
///   from a limit of 8 on, eight answers that fill it without passing half
///   of it end slow start at one above half (one above what an answer proved before;
///   nothing else would end it: a 4-slot backend beside another model
///   stayed at 8, four waiting inside). Out of slow start, order proves
///   growth here as elsewhere: with or without a cost fit (other models
///   leave few answers alone to fit).
/// - So does slow start from a limit of 8 on, without the backend's own
///   account: at twice a 4-slot backend's slots a request waits about half
///   a service, inside the allowance `1 + σ(k − 1)` × 1.5 of a σ still at
///   its prior, and one answer that hid it doubled the limit to 16 (8 of 40
///   seeded runs in virtual time; on real processes 9 requests waited inside
///   at once). What order proves never passes the slots. Below 8 too, an
///   answer slower than its batch's own slowdown (`1 + σ(k − 1)` × its time
///   alone, no margin: `slowerThanItsBatch`) proves in slow start only what
///   its order proves: at twice a 2-slot backend's slots a request sent
///   behind long prompts waits about half a service, inside the allowance,
///   and one such doubled the limit to 8 (real processes, prompts of
///   1,500–6,000 tokens: six waiting inside at once).
/// - Growth needs the fit (three answers that did not wait): until then
///   nothing could tell a wait from a long answer. Two things prove service
///   alongside even so: an answer that overtook n requests sent before it
///   (still in flight at its end: a backend's own queue is in order, so they
///   had all started before it — n + 1 served at once; a one-slot backend
///   never does it), and one that ended after the request ahead of it well
///   inside the least time its tokens may take by the answers so far
///   (`WorkFit.leastMs`: a prompt token priced anywhere from nothing to an
///   output token's cost — a first guess that can only err short; a request
///   that waited for the one ahead needs its whole time after that one's
///   end). In slow start such an answer opens the limit as above, to twice
///   what it proves (2 for the second kind) — the first seconds of a burst
///   are not spent at the prior while the fit fills.
/// - In slow start a stream that filled the limit reports its first byte
///   (STARTED) without waiting for its end: one that did not wait, while
///   all it met at its send were still in flight, doubles the limit (at
///   least +1), so a backend that serves 1,000 ten-second streams at once is
///   found in ten first bytes, not minutes of completions. (One that met the
///   request ahead nearly done starts quickly even on a one-slot backend.)
///   Before any answer prices a prompt, or beside other models, a first
///   byte's order alone judges it (those it met still in flight were served
///   with it); one that judges nothing leaves the stream's end to teach —
///   but its end proves no more served at once than its first byte did
///   (`Sample.alongsideAtStart`): those it met that ended before its first
///   byte may be what it waited for, and its end is judged against a cost
///   fit that waits not seen lengthen (long prompts: a 2-slot backend went
///   from 4 to 8 on such an end). The price: a stream whose prefill truly
///   overlapped an answer that ended before its first byte opens nothing.
/// **The backend's queue gauges** (llama.cpp, vLLM, SGLang and TGI say in
/// their `/metrics` how many requests they serve and how many wait; the
/// node reads them every beat while herd has requests there) outrank all
/// inference: once a backend has them, only they (and its own account)
/// judge a wait and only they open the limit (`gauged`). Requests waiting in
/// two readings in a row (a request just arrived waits a moment for the
/// next step of any engine) cut the limit to what the backend served of
/// herd's; none waiting while it serves all the limit lets herd send more
/// (doubling in slow start, else the steps above).
/// The prior: what the node reports (Ollama's `OLLAMA_NUM_PARALLEL`,
/// llama.cpp's slots, vLLM's `max_num_seqs`) when it does, else 2. A
/// reported parallelism is a ceiling, not a promise: the learner starts
/// there and never goes above it, and still cuts below it when requests wait.
/// Pure: tested in isolation, in virtual time.
struct ConcurrencyLearner: Equatable, Sendable {
    /// The limit never grows past this.
    static let ceiling = 1024.0
    /// Requests sent alone before the cost fit is trusted.
    static let fitSamples = 3
    /// Slow start grows by at most this many at one answer (from 2: 4, 8, 16, 24…).
    static let slowStartStep = 8.0
    /// Throughput that grows by less than `2^this` per doubling of concurrency has stopped growing (11 %).
    static let flatExponent = 0.15

    /// What one finished request tells the learner.
    struct Sample: Equatable, Sendable {
        /// Requests in flight on the node:model when it was sent, itself included.
        var concurrency: Int
        var ok = true
        /// The backend refused it for load (503, 429).
        var busy = false
        var streamed = false
        /// The backend's time to first byte and its whole time (herd's queue excluded), ms.
        var ttftMs: Double
        var durationMs: Double
        var promptTokens = 0
        var completionTokens = 0
        /// The backend's own account of time spent waiting inside it, when it gives one and it is believable.
        var queuedInsideMs: Double?
        /// When it was sent and when it ended, on control's clock (ms): to
        /// line its end up with the ends of the requests ahead of it.
        var sentAt: Double?
        var endedAt: Double?
        /// How many requests sent before it were still in flight when it
        /// ended: it was served alongside them all (a backend's own queue is
        /// in order, so those ahead of it had started before it), `overtook + 1` at once.
        var overtook = 0
        /// Requests for other models that ran on the node beside it (in flight
        /// at its send, or sent before its end): they share its memory
        /// bandwidth and compute without batching with this one, a slowdown
        /// that cannot be told from a wait.
        var othersOnNode = 0
        /// The learned limit when it was sent (0: not known). A request that
        /// filled the limit of its send proves the limit binding even after
        /// the limit grew past it (growth per completion, not per round).
        var limitAtSend = 0
        /// A stream whose first byte was seen (`started`) and judged nothing:
        /// how many of those it met at its send were still in flight at its
        /// first byte, itself included. No more were proven served with it:
        /// those that ended before its first byte may have been what it waited for.
        var alongsideAtStart: Int?
    }

    private(set) var estimate: Double
    private(set) var slowStart = true
    /// The backend's own parallelism, when its node reports it: a ceiling.
    let reported: Int?
    /// A request's cost alone, by its tokens.
    private(set) var fit = WorkFit()
    /// Each stream already running slows a request by this share (learned from requests that did not wait).
    private(set) var batchSlowdown = MovingAverage(weight: 0.1)
    /// The lowest concurrency at which a request was last seen waiting inside (nil: none since it was passed).
    private(set) var waitedAt: Int?
    /// Answers observed, and the one that last looked like a wait not yet believed.
    private var observed = 0
    private var suspectAt: Int?
    /// The concurrency that wait met.
    private var suspectConcurrency = 0
    /// A wait inferred this many answers after another is believed.
    static let corroboration = 4
    private var corroborated: Bool { suspectAt.map { observed - $0 <= ConcurrencyLearner.corroboration } ?? false }
    private var goodSinceWait = 0
    /// The concurrency the limit last grew to at or past where a request was
    /// seen waiting (a probe), and how many probes in a row found a wait
    /// again: each halves how fast the limit grows near a wait and doubles
    /// how long a wait is remembered (up to 8×). A backend's slots rarely
    /// change, and each probe of one above them costs a request waiting
    /// inside — on a one-slot server, a whole answer's time, every 16 answers.
    private var probeAt: Int?
    private var lastWait: Int?
    /// 0 to 3.
    private var refound = 0
    private var forgetAfter: Int { 32 << refound }
    private var nearStep: Double { Double(16 << refound) }
    /// The backend reports its queue (`gauged`): its word replaces inference from timings.
    private(set) var gauges = false
    /// Herd's requests the backend served at the last reading, when requests waited in it.
    private var gaugedWait: Int?
    /// The last streams' times to first byte per prompt token, the batch's
    /// share taken out (ms, at most 16, oldest first): what reading a prompt
    /// takes here, seen directly — the cost fit's share for the prompt can
    /// be anything from zero up where prompts are short beside answers.
    private var firstBytes: [Double] = []
    /// The last requests' (sent, ended) times on control's clock, oldest first (at most 64).
    private var recentEnds: [EndPair] = []
    struct EndPair: Equatable, Sendable {
        var sent: Double
        var end: Double
        /// What it was, to weigh its time against the fit of the moment (it did not wait; a wait keeps no tokens).
        var promptTokens = 0
        var completionTokens = 0
        var concurrency = 1
        var clean = false
        /// It did not wait and was seen served alongside the others (overtaking, or a long overlap).
        var alongside = false
        /// Other models ran on the node meanwhile.
        var mixed = false
    }
    /// Answers sent before this (control's clock, ms) do not count toward the throughput test again.
    private var flatCheckedAfter = -Double.infinity
    /// The limit slow start by order (`servedAtOnce`) is at, and how many
    /// answers filled it without proving more than half of it served at once.
    private var stallLimit = 0
    private var stalledAnswers = 0
    /// This many answers that fill a limit of 8 or more in slow start by order without passing half of it end slow start.
    static let stallAnswers = 8
    /// A batch slowdown above this per stream is not told apart from a wait
    /// (a CPU that gains little from a second stream gets one slot: nothing is lost).
    static let maxSlowdown = 0.5

    /// `reported`: the prior is the node's reported parallelism (a ceiling).
    init(prior: Int, reported: Bool = false) {
        estimate = Double(max(1, prior))
        self.reported = reported ? max(1, prior) : nil
    }

    /// Starts at a benchmark's knee, out of slow start, under the node's reported parallelism if any.
    init(knee: Int, ceiling: Int?) {
        estimate = Double(max(1, min(knee, ceiling ?? knee)))
        reported = ceiling.map { max(1, $0) }
        slowStart = false
    }

    /// Requests this node:model may serve at once.
    var limit: Int { max(1, Int(saturating: estimate)) }

    /// The batch slowdown in use: learned, else the prior.
    var sigma: Double { batchSlowdown.value ?? 0.25 }

    /// The first byte of a stream that filled the limit, in slow start
    /// (`ok`: a 2xx head; `busy`: 503/429). Its end teaches nothing more.
    /// `alongside`: how many were in flight at its first byte of those it met
    /// at its send, itself included (nil: all of them). Only those were
    /// proven served at once: a request that met the one ahead nearly done
    /// starts quickly even on a one-slot backend.
    /// Before the cost fit has a sample, or beside other models, only its
    /// order judges it (those it met still in flight at its first byte were
    /// served with it): a mix of streams and other models left a 6-slot
    /// backend at a limit of 2 for 70 s while first bytes waited for a fit.
    /// Returns whether it judged the request (cut or opened the limit): then
    /// its end teaches nothing more; else its end is observed as any answer's.
    @discardableResult
    mutating func started(ttft: Double, concurrency: Int, promptTokens: Int, ok: Bool, busy: Bool, othersOnNode: Int = 0, limitAtSend: Int = 0,
                          alongside: Int? = nil) -> Bool {
        guard slowStart else { return false }
        if busy {
            observe(Sample(concurrency: concurrency, ok: false, busy: true, ttftMs: 0, durationMs: 0))
            return true
        }
        // A backend with queue gauges says itself whether requests wait, and opens up by what they say alone.
        guard ok, !gauges else { return false }
        // A first byte slower than its prompt takes waited, where times can
        // say so (a cost fit to price the prompt, no other model beside it).
        if othersOnNode == 0, let expected = expectedPrefillMs(promptTokens: promptTokens, concurrency: concurrency),
           ttft > 2 * expected + 100 {
            waited(concurrency: concurrency, told: false)
            return true
        }
        // Its order proves the rest, whatever its time: those it met that are
        // still in flight at its first byte were served with it (a request
        // that waited for a slot starts only when one of them ends).
        let served = max(1, min(concurrency, alongside ?? concurrency))
        guard served >= binding(limitAtSend) else { return false }
        estimate = min(cap, max(estimate + 1, Double(served) * 2))
        return true
    }

    /// A request ended; returns whether it waited inside the backend.
    @discardableResult
    mutating func observe(_ s: Sample) -> Bool {
        if s.busy {
            estimate = max(1, estimate / 2)
            slowStart = false
            return false
        }
        guard s.ok, s.durationMs.isFinite, s.durationMs >= 0, s.ttftMs.isFinite, s.ttftMs >= 0 else { return false }
        let k = max(1, s.concurrency)
        // Beside other models, times say nothing certain: only the backend's word judges a wait, and nothing is fitted.
        let mixed = s.othersOnNode > 0 && s.queuedInsideMs == nil
        // A backend that reports its queue is not second-guessed from timings.
        let inferred = !mixed && !gauges
        // How slow the node ran meanwhile (shared cores, heat, a GPU lent to a call): every test below scales by it.
        let pace = paceAround(s)
        let waitedInside = (inferred && linedUp(s, concurrency: k, pace: pace))
            || ((inferred || s.queuedInsideMs != nil) && didWait(s, concurrency: k, pace: pace))
        if s.streamed, !mixed, s.promptTokens > 0, s.ttftMs > 0 {
            if firstBytes.count >= 16 { firstBytes.removeFirst() }
            firstBytes.append(s.ttftMs / (Double(s.promptTokens) * (1 + sigma * Double(k - 1))))
        }
        if let sent = s.sentAt, let end = s.endedAt, sent.isFinite, end.isFinite {
            if recentEnds.count >= 64 { recentEnds.removeFirst() }
            recentEnds.append(EndPair(sent: sent, end: end, promptTokens: s.promptTokens, completionTokens: s.completionTokens,
                                      concurrency: k, clean: !waitedInside && !mixed, mixed: mixed))
            if !gauges, fit.ready, limit >= 6, throughputFlat() {
                // More at once only lengthened every answer: back to one above half.
                estimate = Double(Swift.max(3, limit / 2) + 1)
                waitedAt = Swift.min(waitedAt ?? limit, Swift.max(3, limit / 2) + 2)
                goodSinceWait = 0
                slowStart = false
                flatCheckedAfter = end
                suspectAt = nil
                return true
            }
            if !waitedInside, !mixed, k > 1, s.overtook > 0 || overlappedLong(s, concurrency: k, pace: pace) {
                recentEnds[recentEnds.count - 1].alongside = true
            }
        }
        observed &+= 1
        if waitedInside {
            let told = s.queuedInsideMs != nil
            // A wait only inferred is believed at once unless something says
            // otherwise: the node's answers vary in pace by themselves (cores
            // shared with other programs), or one of its last answers was
            // served alongside at least as many requests as this one met. Then it is
            // believed when another comes within the next few answers: one
            // answer slowed by something else for a moment must not cost a slot.
            if !told, !corroborated, noisy || k <= servedAlongside {
                suspectAt = observed
                suspectConcurrency = k
                return true
            }
            // The second proves the first too: fewer slots than the lower of the two met.
            let fewerThan = corroborated ? Swift.min(k, suspectConcurrency) : k
            suspectAt = nil
            waited(concurrency: fewerThan, told: told)
            return true
        }
        if !mixed {
            // The cost fit learns from every request that did not wait, its time
            // taken back to what it would have been alone (the batch's share
            // removed); one sent alone weighs most. Above and below its
            // expectation alike: a fit that followed the lower edge made every
            // answer served alongside others look long, and long answers
            // look like waits.
            let batch = 1 + sigma * Double(k - 1)
            let expected = fit.expectedMs(prompt: s.promptTokens, completion: s.completionTokens)
            fit.add(prompt: s.promptTokens, completion: s.completionTokens, ms: s.durationMs / batch, weight: 1 / Double(k))
            if k >= 2, let alone = expected, alone > 50 {
                // What the batch cost it, from a request that did not wait.
                batchSlowdown.add(min(ConcurrencyLearner.maxSlowdown, max(0, (s.durationMs / alone - 1) / Double(k - 1))))
            }
        }
        if let at = waitedAt, k >= at - 1 {
            // That concurrency went well again, eight times (or the one just
            // below it 32 times: a wait that cut the limit to one below it is
            // not tested again there, and must not slow growth for ever): forget the wait.
            goodSinceWait += k >= at ? 4 : 1
            if goodSinceWait >= forgetAfter { waitedAt = nil }
        }
        // The limit did not bind, or nothing can tell a wait from a long answer yet
        // (in slow start, an overtaking or an end well inside the least time alone proves service alongside even so).
        let early = slowStart && !fit.ready && (s.overtook > 0 || overlappedLong(s, concurrency: k, pace: pace, provisional: true))
        // (Beside other models, order is the proof, fit or not: they leave few answers to fit.)
        guard k >= binding(s.limitAtSend), fit.ready || s.queuedInsideMs != nil || early || mixed, !gauges else { return false }
        // Beside other models times cannot rule a wait out: an answer proves
        // served at once only what its order says (`servedAtOnce`). That must fill the
        // limit, or in slow start pass half of it (the limit then goes to
        // twice what it proves): a slow start that doubled on any answer that
        // overtook one, waits included, took a 4-slot backend to 80. So in
        // slow start, when the backend does not say it did not wait, from 8 on
        // and below 8 for an answer slower than its batch. A stream proves no
        // more than its first byte did (`alongsideAtStart`).
        let byOrder = mixed || (slowStart && s.queuedInsideMs == nil && (limit >= 8 || slowerThanItsBatch(s, concurrency: k, pace: pace)))
        let proof = Swift.min(byOrder ? servedAtOnce(s, concurrency: k) : k, Swift.max(1, s.alongsideAtStart ?? k))
        if slowStart, mixed, limit >= 8, k >= limit, 2 * proof <= limit, stalled() { return false }
        guard proof >= binding(s.limitAtSend) || (slowStart && byOrder && 2 * proof > limit) else { return false }
        // A wait not yet believed holds the limit where it is until it is settled.
        guard !corroborated else { return false }
        // Growth needs proof of service alongside the others: the backend's
        // word, an overtaking, or a long overlap with a request ahead that
        // did not line up as a wait (a request that met the last one nearly
        // done proves nothing either way).
        // At a limit of 1 nothing can be served alongside: it probes (rarely, near a wait).
        guard k == 1 || mixed || s.queuedInsideMs != nil || s.overtook > 0 || early || overlappedLong(s, concurrency: k, pace: pace) else { return false }
        let near = waitedAt.map { limit + 1 >= $0 } ?? false
        if slowStart {
            // An answer that filled the limit of its send doubles it at once
            // (by at most `slowStartStep`), never past twice the concurrency
            // an answer was served at without waiting.
            let proven = 2 * Double(early ? min(k, max(2, s.overtook + 1)) : proof)
            if estimate < proven { estimate = min(cap, proven, estimate + Swift.min(Double(k), ConcurrencyLearner.slowStartStep)) }
            return false
        }
        estimate = min(cap, estimate + 1 / ((near ? nearStep : 4) * Double(limit)))
        grew()
        return false
    }

    /// An answer that filled the limit in slow start by order and proved at
    /// most half of it served at once. Slow start goes to twice what order
    /// proves, and order never proves more than the slots: at twice the
    /// slots it stalls. Nothing else ends it beside other models (times
    /// judge no wait there), and a 4-slot backend stayed at 8 with four
    /// waiting inside. After `stallAnswers` such answers at one limit, slow
    /// start ends one above half of it (what an answer once proved, to be
    /// doubled: the most of these eight prove is often less, and a 6-slot
    /// backend cut to one above it stayed at 4); returns whether it did.
    private mutating func stalled() -> Bool {
        if stallLimit != limit { (stallLimit, stalledAnswers) = (limit, 0) }
        stalledAnswers += 1
        guard stalledAnswers >= ConcurrencyLearner.stallAnswers else { return false }
        estimate = Swift.min(estimate, Double(limit / 2 + 1))
        slowStart = false
        return true
    }

    /// The backend's own queue gauges, read at one instant while herd had
    /// `inFlight` requests on it: `running` served, `waiting` held for a slot
    /// (all its clients', herd's and others').
    mutating func gauged(running: Int, waiting: Int, inFlight: Int) {
        gauges = true
        // Counts from outside: bounded before any arithmetic.
        let bound = { (n: Int) in Swift.min(Swift.max(0, n), 1 << 20) }
        let running = bound(running), waiting = bound(waiting), inFlight = bound(inFlight)
        if waiting > 0 {
            // What it served of herd's: all herd sent less what waits (the
            // waiting may be another client's: then at most what it serves).
            let served = max(1, inFlight > waiting ? min(running, inFlight - waiting) : running)
            defer { gaugedWait = served }
            guard let previous = gaugedWait else { return }
            // Waiting in two readings in a row: fewer slots than herd sends.
            let slots = max(served, previous)
            if Double(slots) < estimate { estimate = max(1, Double(slots)) }
            waitedAt = min(waitedAt ?? slots + 1, slots + 1)
            goodSinceWait = 0
            slowStart = false
            return
        }
        gaugedWait = nil
        // It serves all that herd's limit lets it send, none waiting: room may be above.
        guard inFlight >= limit, running >= limit else { return }
        if let at = waitedAt, inFlight >= at {
            goodSinceWait += 4
            if goodSinceWait >= forgetAfter { waitedAt = nil }
        }
        // Slow start doubles (a batching server of hundreds is found in a few beats).
        let near = waitedAt.map { limit + 1 >= $0 } ?? false
        estimate = min(cap, slowStart ? max(estimate + 1, 2 * estimate) : estimate + 1 / ((near ? nearStep : 4) * Double(limit)))
        grew()
    }

    /// The limit a request had to fill to prove it binding: the one of its
    /// send when known and lower (the limit grew since: TCP's slow start
    /// counts every acknowledgement of a full window, so it doubles per
    /// round, where counting only requests sent at the newest limit grew it
    /// by one per round — minutes of queueing before an 8-slot server was found).
    private func binding(_ limitAtSend: Int) -> Int {
        limitAtSend > 0 ? Swift.min(limit, limitAtSend) : limit
    }

    /// The largest the limit may be.
    private var cap: Double { reported.map { Double($0) } ?? ConcurrencyLearner.ceiling }

    /// A wait at concurrency `k`; `told`: the backend's own account says so.
    private mutating func waited(concurrency k: Int, told: Bool) {
        // Fewer than k slots; one wait at most halves the limit (a wait the
        // tests saw wrongly must not close a many-slot backend down to one),
        // and one only inferred after slow start takes one slot.
        if k <= limit, k > 1 {
            let floor = slowStart || told ? estimate / 2 : estimate - 1
            estimate = max(1, min(estimate, max(Double(k - 1), floor)))
        }
        if let probe = probeAt, k <= probe { refound = Swift.min(refound + 1, 3) }
        probeAt = nil
        lastWait = k
        waitedAt = min(waitedAt ?? k, k)
        goodSinceWait = 0
        slowStart = false
    }

    /// The limit grew: at or past the last wait it probes; past a probe with no wait met, the slots grew.
    private mutating func grew() {
        if let probe = probeAt, limit > probe {
            probeAt = nil
            refound = 0
        }
        if probeAt == nil, let wait = lastWait, limit >= wait { probeAt = limit }
    }

    /// How much slower than the fit expects the node served the requests
    /// that overlapped `s` and did not wait: each one's time over its
    /// expectation at its batch, averaged (geometrically) by how long it
    /// overlapped `s`; between 1 and 8, and 1 while they overlapped less
    /// than half of `s`'s time. A node slowed by something else — cores
    /// shared with other programs, a GPU that throttles, a video call —
    /// slows every request it serves alike; a request that waited for a slot
    /// is slow beside requests that did not. Without it, a machine that runs
    /// at half speed for a few seconds reads as one with half the slots.
    /// Whether the node's clean answers of late vary in pace by themselves:
    /// a fifth of them (of the last 32, at least 8) took over 1.3× their
    /// expectation at their batch.
    private var noisy: Bool {
        var slow = 0, count = 0
        for other in recentEnds.suffix(32) where other.clean {
            guard let pace = pace(of: other) else { continue }
            count += 1
            if pace > 1.3 { slow += 1 }
        }
        return count >= 8 && 5 * slow >= count
    }

    /// How much slower than the fit expects (at its batch) a past answer was
    /// served: nil when the fit expects nothing of it, or too little to judge (20 ms).
    private func pace(of other: EndPair) -> Double? {
        guard let alone = fit.expectedMs(prompt: other.promptTokens, completion: other.completionTokens), alone > 20 else { return nil }
        let pace = (other.end - other.sent) / (alone * (1 + sigma * Double(other.concurrency - 1)))
        return pace.isFinite ? pace : nil
    }

    /// Whether the node's throughput stopped growing with concurrency over
    /// the upper half of the limit: each answer sent at concurrency k (at
    /// least half the limit, at least 3) of the last 48 serves the node at
    /// `x = k × time alone ÷ its time` requests' worth at once; fitted as
    /// `log x = a + β log k`, a doubling of concurrency gains `2^β`. Under
    /// 11 % (β < 0.15) with 16 answers or more spread over k (the standard
    /// deviation of log k at least 0.14): more at once
    /// only lengthens every answer — waits inside, or a batch so slow that
    /// it gains nothing. No batch slowdown enters: a wrong one (any value
    /// fits answers all served at one concurrency) cannot hide it.
    private func throughputFlat() -> Bool {
        let floor = Swift.max(3, limit / 2)
        var points: [(x: Double, y: Double)] = []
        for pair in recentEnds.suffix(48) where pair.concurrency >= floor && !pair.mixed && pair.sent >= flatCheckedAfter {
            guard let alone = fit.expectedMs(prompt: pair.promptTokens, completion: pair.completionTokens), alone > 20,
                  pair.end > pair.sent else { continue }
            let k = Double(pair.concurrency)
            let y = log(k * alone / (pair.end - pair.sent))
            if y.isFinite { points.append((log(k), y)) }
        }
        guard points.count >= 16 else { return false }
        let n = Double(points.count)
        let mx = points.reduce(0) { $0 + $1.x } / n, my = points.reduce(0) { $0 + $1.y } / n
        let sxx = points.reduce(0) { $0 + ($1.x - mx) * ($1.x - mx) }
        let sxy = points.reduce(0) { $0 + ($1.x - mx) * ($1.y - my) }
        guard sxx / n >= 0.02 else { return false }
        return sxy / sxx < ConcurrencyLearner.flatExponent
    }

    /// The most requests one of the last 32 answers was seen served alongside (without waiting), itself included.
    private var servedAlongside: Int {
        recentEnds.suffix(32).reduce(0) { $1.alongside ? Swift.max($0, $1.concurrency) : $0 }
    }

    private func paceAround(_ s: Sample) -> Double {
        guard let sent = s.sentAt, let end = s.endedAt, sent.isFinite, end.isFinite, end > sent, fit.ready else { return 1 }
        var weight = 0.0, logs = 0.0
        for other in recentEnds where other.clean {
            let overlap = Swift.min(end, other.end) - Swift.max(sent, other.sent)
            guard overlap > 0, let pace = pace(of: other), pace > 0 else { continue }
            weight += overlap
            logs += overlap * log(Swift.min(8, pace))
        }
        guard weight >= 0.5 * (end - sent) else { return 1 }
        return Swift.min(8, Swift.max(1, exp(logs / weight)))
    }

    /// Whether `s` took longer than the fit expects of it alone at its batch
    /// (`1 + σ(k − 1)`, no margin): not enough to call a wait, too much for
    /// its time to prove it served at once with all it met.
    private func slowerThanItsBatch(_ s: Sample, concurrency k: Int, pace: Double) -> Bool {
        guard let alone = fit.expectedMs(prompt: s.promptTokens, completion: s.completionTokens) else { return false }
        return s.durationMs > alone * pace * (1 + sigma * Double(k - 1))
    }

    /// Whether `s` waited inside the backend for a slot (`pace`: how slow the node ran meanwhile).
    private func didWait(_ s: Sample, concurrency k: Int, pace: Double) -> Bool {
        if let queued = s.queuedInsideMs { return queued > max(50, 0.1 * s.durationMs) }
        guard k > 1, s.promptTokens + s.completionTokens > 0 else { return false }
        let batch = 1 + sigma * Double(k - 1)
        if s.streamed, let prefill = expectedPrefillMs(promptTokens: s.promptTokens, concurrency: k) {
            if s.ttftMs > 2 * prefill * pace + 100 { return true }
        }
        guard let alone = fit.expectedMs(prompt: s.promptTokens, completion: s.completionTokens) else { return false }
        let expected = servedRatio(at: k) ?? batch
        return s.durationMs > alone * pace * expected * 1.5 + 50
    }

    /// How much longer than the fit expects alone an answer sent at `k` takes
    /// when it does not wait, from the clean answers of late sent at a
    /// concurrency no higher than one seen served alongside others
    /// (`servedAlongside`: an answer that overtook one, at its concurrency —
    /// a loose bound: it lets in some that waited a little):
    /// `r = a + b(k − 1)` fitted to their time ÷ the fit's. The fit learns
    /// answers' times with the batch's share taken out by σ, and σ from the
    /// same answers — answers near one concurrency fit any σ with a matching
    /// scale, and a σ four times the truth lets a request wait a whole
    /// service at twice the slots unseen. The intercept takes the scale; the
    /// slope, the batch. Nil below 8 such answers.
    private func servedRatio(at k: Int) -> Double? {
        let proven = servedAlongside
        guard proven >= 2 else { return nil }
        var n = 0.0, sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0
        for pair in recentEnds.suffix(48) where pair.clean && pair.concurrency <= proven {
            guard let alone = fit.expectedMs(prompt: pair.promptTokens, completion: pair.completionTokens), alone > 20, pair.end > pair.sent else { continue }
            let x = Double(pair.concurrency - 1), y = (pair.end - pair.sent) / alone
            guard y.isFinite else { continue }
            n += 1; sx += x; sy += y; sxx += x * x; sxy += x * y
        }
        guard n >= 8 else { return nil }
        let mx = sx / n, my = sy / n, vx = sxx / n - mx * mx
        // The batch's slope: fitted where the concurrencies spread, else σ; per stream 0 to `maxSlowdown` of the intercept.
        var slope = sigma * my / (1 + sigma * mx)
        if vx >= 0.25 { slope = (sxy / n - mx * my) / vx }
        let intercept = Swift.min(4, Swift.max(0.25, my - slope * mx))
        slope = Swift.min(ConcurrencyLearner.maxSlowdown * intercept, Swift.max(0, slope))
        let r = intercept + slope * Double(k - 1)
        return r.isFinite ? r : nil
    }

    /// Whether `s`'s own work began only when a request ahead of it ended:
    /// from some end of a request sent before it to its own end is its whole
    /// time alone (85 %–130 % of it, × its batch), and that end came at least
    /// (0.3 + σ(k − 1)) of its time alone (and 50 ms) after its send. A
    /// request served alongside others makes progress during that overlap,
    /// so its time after the end is at most its time alone × its batch less
    /// the overlap — below 85 % of its time alone once the overlap is that
    /// long: waiting in a backend's own queue lines up with the end of the
    /// request it waited for; batching does not.
    private func linedUp(_ s: Sample, concurrency k: Int, pace: Double) -> Bool {
        // From the fit's first sample on: a one-slot backend lines its second
        // request up behind its first long before three answers fill the fit.
        guard s.queuedInsideMs == nil, k > 1, s.promptTokens + s.completionTokens > 0, let sent = s.sentAt, let end = s.endedAt,
              let fitted = fit.expectedMs(prompt: s.promptTokens, completion: s.completionTokens, provisional: true), fitted > 20 else { return false }
        let alone = fitted * pace
        let batch = 1 + sigma * Double(k - 1)
        // A request that waited for a slot starts when one of those ahead
        // ends: the first to end, or the second when another waited before
        // it. Later ends are not checked — with many in flight, one of them
        // would line up with any answer by chance.
        let firstEnds = recentEnds.lazy.filter { $0.sent <= sent && $0.end > sent }.map(\.end).sorted().prefix(2)
        for otherEnd in firstEnds {
            let overlap = otherEnd - sent, after = end - otherEnd
            if overlap >= max(50, (0.3 + sigma * Double(k - 1)) * alone), after >= 0.85 * alone, after <= 1.3 * alone * batch + 50 { return true }
        }
        return false
    }

    /// How many requests `s` proves were served at once, whatever slowed it:
    /// itself, those it overtook (in flight at its end, so started before it —
    /// a backend's own queue is in order), and those ahead of it that ended
    /// within 60 % of its least time alone before its own end (a request that
    /// waited for a slot needs its whole time alone after the end it waited
    /// for, and other models on the node only lengthen that): all were
    /// running when its service began.
    private func servedAtOnce(_ s: Sample, concurrency k: Int) -> Int {
        guard let sent = s.sentAt, let end = s.endedAt,
              let least = fit.leastMs(prompt: s.promptTokens, completion: s.completionTokens) else { return Swift.min(k, s.overtook + 1) }
        let since = end - 0.6 * least
        let ended = recentEnds.dropLast().count { $0.sent < sent && $0.end > sent && $0.end < end && $0.end > since }
        return Swift.min(k, s.overtook + 1 + ended)
    }

    /// Whether `s` made clear progress alongside a request ahead of it: that
    /// one ended long after `s` was sent (the overlap `linedUp` needs), and
    /// `s` then finished in at most 60 % of its time alone (a request that
    /// waited for it needs its whole time alone after its end).
    private func overlappedLong(_ s: Sample, concurrency k: Int, pace: Double, provisional: Bool = false) -> Bool {
        guard let sent = s.sentAt, let end = s.endedAt,
              let fitted = provisional ? fit.leastMs(prompt: s.promptTokens, completion: s.completionTokens)
                : fit.expectedMs(prompt: s.promptTokens, completion: s.completionTokens) else { return false }
        let alone = fitted * pace
        let needed = max(50, (0.3 + sigma * Double(k - 1)) * alone)
        return recentEnds.dropLast().contains { $0.sent < sent && $0.end - sent >= needed && end - $0.end <= 0.6 * alone }
    }

    /// A stream's expected time to first byte at `concurrency`, from the fit's
    /// first sample on: its ms per prompt token, at least 1/20 of its ms per
    /// output token (the prior share: prefill reads tokens 8–50× faster than
    /// decoding makes them) and, once eight streams have shown it, at least
    /// the median of their first bytes per prompt token — a fit of answers
    /// whose prompts cost little beside their output puts the prompt's share
    /// near zero, and every first byte would then look like a wait.
    private func expectedPrefillMs(promptTokens: Int, concurrency: Int) -> Double? {
        guard let (prompt, completion) = fit.provisional else { return nil }
        var perToken = max(prompt, completion * WorkFit.priorPromptShare)
        if firstBytes.count >= 8 { perToken = max(perToken, firstBytes.sorted()[firstBytes.count / 2]) }
        return perToken * Double(max(1, promptTokens)) * (1 + sigma * Double(max(0, concurrency - 1)))
    }
}
