import Glibc
import HerdWire
import Testing
@testable import HerdRouting

/// The concurrency learner, in virtual time.
@Suite struct ConcurrencyLearnerTests {
    @Test(arguments: [false, true])
    func answersOfVariedLengthAtAConstantConcurrencyNeverCutTheLimit(streamed: Bool) {
        // 4 slots, a real batch slowdown, prompts and answers varying 4×: never a wait inside.
        var run = LearnerRun(backend: VirtualBackend(slots: 4, slowdown: 0.15), learner: ConcurrencyLearner(prior: 4))
        run.alone(3, streamed: streamed)
        run.closed(concurrency: 4, count: 400, streamed: streamed)
        #expect(run.lowestLimit >= 4, "cut to \(run.lowestLimit) though nothing waited inside")
        #expect(run.backend.mostWaiting == 0)
    }

    @Test(arguments: [false, true])
    func moreRequestsThanSlotsAreFoundWithinAFewRequests(streamed: Bool) {
        // One slot; the prior lets two in: the second waits inside, behind the first.
        var run = LearnerRun(backend: VirtualBackend(slots: 1), learner: ConcurrencyLearner(prior: 2))
        run.alone(3, streamed: streamed)
        let start = run.limits.count
        run.closed(concurrency: 2, count: 6, streamed: streamed)
        let found = run.limits.dropFirst(start).firstIndex { $0.1 == 1 }.map { $0 - start + 1 }
        #expect(found.map { $0 <= 3 } == true, "found after \(found.map(String.init) ?? "never") requests: \(run.limits.map(\.1))")
    }

    @Test func aOneSlotBackendIsFoundBeforeTheFitIsFull() {
        // No answers alone first: two streams at once from the start, as a
        // burst meets a fresh node. The second waits inside behind the first:
        // its first byte comes only at the first one's end, far later than
        // the fit's one sample says a prompt takes. (Non-streaming answers
        // sent together are not told apart this early: their times say
        // little before the fit has three samples.)
        var run = LearnerRun(backend: VirtualBackend(slots: 1, tokenMs: 60), learner: ConcurrencyLearner(prior: 2))
        run.closed(concurrency: 2, count: 4, streamed: true)
        #expect(run.limits.prefix(2).map(\.1).contains(1), "limits: \(run.limits.map(\.1))")
        #expect(run.limits.dropFirst(1).allSatisfy { $0.1 == 1 }, "limits: \(run.limits.map(\.1))")
    }

    @Test(arguments: [0, 0.2, 1])
    func aFourSlotBackendThatReportsNothingIsFoundAndKept(streamShare: Double) {
        // Open loop at about 90 % of what four slots serve: the limit must
        // reach 4 ± 1 within 30 s of steady load and stay there — with no
        // streams, some, or all (a stream's first byte comes after its
        // prompt is read, at 1,500 tokens/s: a fit that puts the prompt's
        // cost near zero must not read that as a wait).
        var run = LearnerRun(backend: VirtualBackend(slots: 4, tokenMs: 12.5, promptMs: 0.667, slowdown: 0.06),
                             learner: ConcurrencyLearner(prior: 2))
        // Four slots serve about 4 / 1.18 × 80 tokens/s; answers average ~108 tokens, prompts ~325.
        run.open(rate: 2.3, seconds: 240, streamShare: streamShare)
        let settled = run.limits.filter { $0.0 >= 30_000 }.map(\.1)
        #expect(!settled.isEmpty && settled.allSatisfy { (3...5).contains($0) }, "limits after 30 s: \(Set(settled).sorted())")
        // Slow start doubles at an answer proven served alongside; a short
        // wait inside (a slot freed just after) is not told from service, so
        // it may pass the slots once, by at most their number.
        #expect(run.backend.mostWaiting <= 4, "slow start overshoots by at most four: \(run.backend.mostWaiting) \(run.limits.prefix(40).map(\.1))")
    }

    @Test func aFirstByteAfterTheTimeItsPromptTakesIsNotAWait() {
        // Answers whose time follows their length: the cost fit puts the
        // prompt's share near zero (0.005 ms a token). A stream sent with two
        // others then shows its first byte after reading its prompt (1,500
        // tokens/s, slowed by its batch): 300 ms for 400 tokens. Taken at the
        // fit's word that is a wait; at the prior share (a twentieth of an
        // output token's time per prompt token) it is what a prompt takes.
        func learner() -> ConcurrencyLearner {
            var learner = ConcurrencyLearner(prior: 4)
            for (p, c) in [(150, 50), (600, 120), (300, 200)] {
                let ms = 12.5 * Double(c) + 0.005 * Double(p)
                learner.observe(.init(concurrency: 1, ttftMs: ms, durationMs: ms, promptTokens: p, completionTokens: c))
            }
            return learner
        }
        var read = learner()
        read.observe(.init(concurrency: 3, streamed: true, ttftMs: 300, durationMs: 1_700, promptTokens: 400, completionTokens: 100))
        #expect(read.limit == 4, "a prompt's reading taken for a wait: \(read.limit)")
        // A first byte after a real wait (the stream stood 1.7 s behind the others) still cuts.
        var waited = learner()
        waited.observe(.init(concurrency: 3, streamed: true, ttftMs: 2_000, durationMs: 3_400, promptTokens: 400, completionTokens: 100))
        #expect(waited.limit == 2)
    }

    @Test func twoAnswersOfLongPromptsDoNotCloseASixSlotBackend() {
        // The first three answers of a fresh 6-slot backend (120 tokens/s,
        // prompts read at 1,500/s): long prompts, short answers. Solved
        // exactly, the first two say an output token costs 1.9 ms; the third,
        // served alongside the second, then looks 2.4× its time alone and its
        // end lines up with the second's: a wait at 2 cut the limit to 1, and
        // from 1 it climbed back one slot per 16 answers.
        var learner = ConcurrencyLearner(prior: 2)
        learner.observe(.answer(concurrency: 1, prompt: 551, completion: 69, sentAt: 240, endedAt: 1_199))
        learner.observe(.answer(concurrency: 2, prompt: 424, completion: 77, sentAt: 920, endedAt: 1_899))
        learner.observe(.answer(concurrency: 2, prompt: 164, completion: 114, sentAt: 1_230, endedAt: 2_349))
        #expect(learner.limit >= 2, "cut to \(learner.limit) by answers served alongside")
    }

    @Test func anAnswerWhosePromptTheFitUnderratesIsNotLinedUp() {
        // The fit puts a prompt token at 0.07 ms (it costs 0.67 here: prompts
        // read at 1,500 tokens/s) and the batch costs 6 % a request. An answer
        // of 298 prompt and 59 output tokens, sent with two others, took
        // 964 ms — what it takes served alongside them — and ended 659 ms
        // after one sent before it. At the fit's word it takes 683 ms alone,
        // and that end lines up: a wait. With a prompt token at no less than a
        // twentieth of an output token (the prior share) it takes 829 ms
        // alone: 659 ms after an end is too little to have started there.
        var learner = ConcurrencyLearner(prior: 8)
        let lengths = [(150, 50), (600, 120), (300, 200), (450, 80), (200, 150), (500, 60)]
        func alone(_ p: Int, _ c: Int) -> Double { 11.23 * Double(c) + 0.07 * Double(p) }
        for (p, c) in lengths.prefix(3) {
            learner.observe(.init(concurrency: 1, ttftMs: alone(p, c), durationMs: alone(p, c), promptTokens: p, completionTokens: c))
        }
        for _ in 0..<4 {
            for (p, c) in lengths {
                learner.observe(.init(concurrency: 2, ttftMs: alone(p, c) * 1.06, durationMs: alone(p, c) * 1.06, promptTokens: p, completionTokens: c))
            }
        }
        learner.observe(.init(concurrency: 1, ttftMs: 2_246, durationMs: 2_246, promptTokens: 159, completionTokens: 199,
                              sentAt: 1_824, endedAt: 4_070, limitAtSend: 8))
        learner.observe(.init(concurrency: 3, ttftMs: 964, durationMs: 964, promptTokens: 298, completionTokens: 59,
                              sentAt: 3_765, endedAt: 4_729, limitAtSend: 8))
        #expect(learner.limit == 8, "an answer served alongside taken for a wait: \(learner.limit)")
    }

    @Test func slowStartNeverTakesAFourSlotBackendPastEight() {
        // Open loop at about 90 % of four slots, answers alone: at a limit of
        // 8 a request waits about half a service inside, within what the
        // prior batch slowdown allows, and one answer that hid its wait
        // doubled the limit to 16 — in 8 of these 40 runs, 6 to 12 requests
        // waiting inside at once. From 8 on, slow start grows only by what
        // answers' order proves served at once, and that never passes the slots.
        var overshoots: [String] = []
        for seed in UInt64(1)...40 {
            var run = LearnerRun(backend: VirtualBackend(slots: 4, tokenMs: 12.5, promptMs: 0.667, slowdown: 0.06),
                                 learner: ConcurrencyLearner(prior: 2), seed: seed)
            run.open(rate: 2.3, seconds: 120)
            let top = run.limits.map(\.1).max() ?? 0
            if top > 8 || run.backend.mostWaiting > 4 { overshoots.append("seed \(seed): limit \(top), \(run.backend.mostWaiting) waiting") }
        }
        #expect(overshoots.isEmpty, "\(overshoots)")
    }

    @Test(arguments: [false, true])
    func aOneSlotBackendNeverHoldsMoreThanOneWaiting(streamed: Bool) {
        var run = LearnerRun(backend: VirtualBackend(slots: 1, tokenMs: 100), learner: ConcurrencyLearner(prior: 2))
        // Overloaded: arrivals faster than one slot serves (~11 s per answer).
        run.open(rate: 0.15, seconds: 600, streamed: streamed)
        #expect(run.backend.mostWaiting <= 1)
        let settled = run.limits.suffix(run.limits.count / 2).map(\.1)
        #expect(Double(settled.filter { $0 == 1 }.count) >= 0.6 * Double(settled.count), "mostly 1: \(settled)")
    }

    @Test func aOneSlotBackendIsProbedLessOftenEachTimeItIsFoundAgain() {
        // Half an hour at 80 % of one slot: every probe of a second request
        // costs one waiting a whole answer inside. A probe that meets the wait
        // again halves how often the next comes (up to 8×); before, one came
        // every sixteen answers for ever (38 in this run; now 6).
        var run = LearnerRun(backend: VirtualBackend(slots: 1, tokenMs: 20), learner: ConcurrencyLearner(prior: 2))
        run.open(rate: 0.6, seconds: 1_800)
        let limits = run.limits.filter { $0.0 >= 60_000 }.map(\.1)
        let probes = zip(limits, limits.dropFirst()).count { $0 == 1 && $1 == 2 }
        #expect(probes <= 12, "\(probes) probes")
        #expect(run.backend.mostWaiting <= 1)
    }

    @Test func aMachineWhoseSpeedVariesKeepsItsSlots() {
        // Eight slots on a machine that shares its cores: its speed changes
        // every second (half speed or less one second in four). Every request
        // it serves slows alike, so a slow answer beside slow answers is not
        // a wait; the limit must not drift down to a few of its eight slots.
        var run = LearnerRun(backend: VirtualBackend(slots: 8, tokenMs: 10, slowdown: 0.06, jitter: 0.5), learner: ConcurrencyLearner(prior: 2))
        // Eight slots serve ~4.5 answers/s at full speed, ~3.3 at the mean speed under this jitter: 75 % of that.
        run.open(rate: 2.4, seconds: 300)
        let settled = run.limits.filter { $0.0 >= 60_000 }.map(\.1)
        let kept = settled.filter { $0 >= 5 }.count
        #expect(!settled.isEmpty && Double(kept) >= 0.8 * Double(settled.count),
                "limits after 60 s: \(Dictionary(grouping: settled, by: { $0 }).mapValues(\.count).sorted { $0.key < $1.key })")
    }

    @Test func aFastBatchingBackendOpensUp() {
        // 16 slots, little slowdown: slow start finds it from a prior of 2.
        var run = LearnerRun(backend: VirtualBackend(slots: 16, tokenMs: 10, slowdown: 0.02), learner: ConcurrencyLearner(prior: 2))
        run.alone(3)
        run.closed(concurrency: 14, count: 200)
        #expect(run.learner.limit >= 14, "\(run.learner.limit)")
    }

    @Test func slowStartDoublesPerRoundWithoutStreams() {
        // Non-streaming answers, a queue always waiting: every answer that
        // filled the limit of its send raises it, so the limit doubles per
        // round of answers (it grew by one per round when only answers sent
        // at the newest limit counted: fourteen rounds to find 16 slots).
        var run = LearnerRun(backend: VirtualBackend(slots: 16, tokenMs: 10, slowdown: 0.02), learner: ConcurrencyLearner(prior: 2))
        run.alone(3)
        let start = run.completions
        run.closed(concurrency: 64, count: 60)
        let found = run.limits.firstIndex { $0.1 >= 14 }.map { run.limits.distance(from: run.limits.startIndex, to: $0) + 1 - start }
        #expect(found.map { $0 <= 40 } == true, "limit 14 after \(found.map(String.init) ?? "more than 60") answers: \(run.limits.map(\.1))")
        #expect(run.backend.mostWaiting <= 16, "overshoot at most one round: \(run.backend.mostWaiting)")
    }

    @Test func theBackendsOwnQueueTimeIsBelieved() {
        var learner = ConcurrencyLearner(prior: 4)
        // Ollama's total_duration 900 ms beyond its load, prompt and generation: it waited for a slot.
        learner.observe(.init(concurrency: 3, ttftMs: 2_000, durationMs: 2_000, promptTokens: 100, completionTokens: 50, queuedInsideMs: 900))
        #expect(learner.limit == 2)
        #expect(!learner.slowStart)
        var calm = ConcurrencyLearner(prior: 2)
        // No wait by its own account: the limit binds and, in slow start, doubles even before the fit.
        calm.observe(.init(concurrency: 2, ttftMs: 3_000, durationMs: 3_000, promptTokens: 100, completionTokens: 50, queuedInsideMs: 0))
        #expect(calm.limit == 4)
    }

    @Test func aWaitHerdOnlyInfersTakesOneSlotAtATime() {
        var learner = ConcurrencyLearner(prior: 8)
        learner.observe(.init(concurrency: 5, ttftMs: 2_000, durationMs: 2_000, promptTokens: 100, completionTokens: 50, queuedInsideMs: 900))
        #expect(learner.limit == 4 && !learner.slowStart, "the backend's word: down to k − 1 at once")
        for _ in 0..<3 { learner.observe(.init(concurrency: 1, ttftMs: 1_000, durationMs: 1_000, promptTokens: 100, completionTokens: 50)) }
        // Far longer than its tokens predict at a concurrency of 3: a wait, or an answer that ran long.
        learner.observe(.init(concurrency: 3, ttftMs: 9_000, durationMs: 9_000, promptTokens: 100, completionTokens: 50))
        #expect(learner.limit == 3, "one inferred wait takes one slot, not half")
        learner.observe(.init(concurrency: 3, ttftMs: 9_000, durationMs: 9_000, promptTokens: 100, completionTokens: 50))
        #expect(learner.limit == 2, "a run of them goes all the way to k − 1")
    }

    @Test func aWaitThatCorroboratesAnotherCutsBelowTheLowerOfTheTwo() {
        // In slow start at 8: an answer seen served alongside five others
        // makes a lone wait at 5 a suspect; a second at 7 believes both — so
        // fewer than 5 slots (it cut to 6 from the second's 7 alone, and a
        // 4-slot backend kept two requests waiting inside for seconds).
        var learner = ConcurrencyLearner(prior: 8)
        for i in 0..<3 {
            let t = Double(i) * 2_000
            learner.observe(.init(concurrency: 1, ttftMs: 1_000, durationMs: 1_000, promptTokens: 100, completionTokens: 50, sentAt: t, endedAt: t + 1_000))
        }
        learner.observe(.init(concurrency: 6, ttftMs: 1_300, durationMs: 1_300, promptTokens: 100, completionTokens: 50,
                              sentAt: 10_000, endedAt: 11_300, overtook: 1))
        let first = learner.observe(.init(concurrency: 5, ttftMs: 9_000, durationMs: 9_000, promptTokens: 100, completionTokens: 50))
        #expect(first && learner.limit == 8, "a suspect, held: \(learner.limit)")
        let second = learner.observe(.init(concurrency: 7, ttftMs: 9_000, durationMs: 9_000, promptTokens: 100, completionTokens: 50))
        #expect(second && learner.limit == 4 && !learner.slowStart, "fewer than 5 slots: \(learner.limit)")
    }

    @Test func aLoneWaitBelowWhatWasServedAlongsideWaitsForASecond() {
        var learner = ConcurrencyLearner(knee: 6, ceiling: nil)
        for i in 0..<3 {
            let t = Double(i) * 2_000
            learner.observe(.init(concurrency: 1, ttftMs: 1_000, durationMs: 1_000, promptTokens: 100, completionTokens: 50, sentAt: t, endedAt: t + 1_000))
        }
        // Served alongside three others (it overtook one sent before it).
        learner.observe(.init(concurrency: 4, ttftMs: 1_300, durationMs: 1_300, promptTokens: 100, completionTokens: 50,
                              sentAt: 10_000, endedAt: 11_300, overtook: 1))
        let slow = ConcurrencyLearner.Sample(concurrency: 3, ttftMs: 9_000, durationMs: 9_000, promptTokens: 100, completionTokens: 50)
        let first = learner.observe(slow)
        #expect(first)
        #expect(learner.limit == 6, "one slow answer at 3, where 4 were just served together: held")
        learner.observe(.init(concurrency: 2, ttftMs: 1_100, durationMs: 1_100, promptTokens: 100, completionTokens: 50))
        let second = learner.observe(slow)
        #expect(second)
        #expect(learner.limit == 5, "a second within four answers is believed (one slot, as any inferred wait)")
        // The backend's own word needs no second.
        learner.observe(.init(concurrency: 5, ttftMs: 2_000, durationMs: 2_000, promptTokens: 100, completionTokens: 50, queuedInsideMs: 900))
        #expect(learner.limit == 4)
    }

    @Test func otherModelsOnTheNodeAreNotAWait() {
        var learner = ConcurrencyLearner(prior: 4)
        for _ in 0..<3 { learner.observe(.init(concurrency: 1, ttftMs: 1_000, durationMs: 1_000, promptTokens: 100, completionTokens: 50)) }
        // Three times its time alone at a concurrency of 2, while two other models ran on the node:
        // they share its bandwidth without batching with it — a slowdown, not a wait.
        let waited = learner.observe(.init(concurrency: 2, ttftMs: 3_000, durationMs: 3_000, promptTokens: 100, completionTokens: 50, othersOnNode: 2))
        #expect(!waited && learner.limit == 4)
        var alone = learner
        let aloneWaited = alone.observe(.init(concurrency: 2, ttftMs: 3_000, durationMs: 3_000, promptTokens: 100, completionTokens: 50))
        #expect(aloneWaited, "the same time with nothing else on the node is a wait")
        // The backend's own word counts beside other models too.
        learner.observe(.init(concurrency: 3, ttftMs: 2_000, durationMs: 2_000, promptTokens: 100, completionTokens: 50, queuedInsideMs: 900,
                              othersOnNode: 2))
        #expect(learner.limit == 2)
    }

    /// Other models' requests on the node, changing every second: 1 to 3 (seeded).
    static func otherModels(_ now: Double) -> Int {
        var x = UInt64(max(0, now / 1000)) &* 0x9E37_79B9_7F4A_7C15 &+ 11
        x = (x ^ (x >> 31)) &* 0xBF58_476D_1CE4_E5B9
        return 1 + Int((x ^ (x >> 29)) % 3)
    }

    /// A 4-slot backend (80 tokens/s) after three answers alone, then
    /// beside another model's requests (1 to 3, slowing it 1.3–1.9×).
    static func fourSlotsBesideAnotherModel() -> LearnerRun {
        var backend = VirtualBackend(slots: 4, tokenMs: 12.5, promptMs: 0.667, slowdown: 0.06)
        backend.otherSlowdown = 0.3
        var run = LearnerRun(backend: backend, learner: ConcurrencyLearner(prior: 2))
        run.alone(3)
        run.backend.others = ConcurrencyLearnerTests.otherModels
        return run
    }

    @Test(arguments: [1.0, 1.5])
    func besideAnotherModelOnlyWhatOvertakingProvesOpensTheLimit(rate: Double) {
        // Another model's requests share the node from the start (slowing
        // this one's 1.3–1.9×, changing by the second): times cannot tell a
        // wait from that share, so an answer proves only what it overtook
        // served at once. Before, slow start doubled on any answer that
        // overtook one, waits included: a 4-slot backend went to 16 and 80.
        var run = ConcurrencyLearnerTests.fourSlotsBesideAnotherModel()
        // 60 % and 90 % of what four slots serve at the mean slowdown (1.6×).
        run.open(rate: rate, seconds: 240)
        let most = run.limits.map(\.1).max() ?? 0
        #expect(most <= 8, "opened to \(most): \(Dictionary(grouping: run.limits.map(\.1), by: { $0 }).mapValues(\.count).sorted { $0.key < $1.key })")
        #expect(run.backend.mostWaiting <= 4, "\(run.backend.mostWaiting) waiting inside")
    }

    @Test(arguments: [1.0, 1.5])
    func besideAnotherModelAFourSlotBackendSettlesAtFour(rate: Double) {
        // Slow start beside another model goes to twice what an answer's
        // order proves, and what order proves never passes the slots: at
        // twice the slots it stalls there. Nothing else ended it (times
        // judge no wait beside other models), so a 4-slot backend stayed at
        // 8 with four waiting inside. A stall ends slow start at one above
        // half the limit.
        var run = ConcurrencyLearnerTests.fourSlotsBesideAnotherModel()
        run.open(rate: rate, seconds: 240)
        let late = run.limits.filter { $0.0 >= 60_000 }.map(\.1)
        let histogram = Dictionary(grouping: late, by: { $0 }).mapValues(\.count).sorted { $0.key < $1.key }
        #expect(!late.isEmpty && late.allSatisfy { (3...5).contains($0) }, "after 60 s: \(histogram)")
    }

    @Test(arguments: UInt64(1)...3)
    func besideOtherModelsFromTheStartASixSlotBackendOpensAndSettles(seed: UInt64) {
        // Other models' requests on the node from the first answer on: none
        // is clean, the cost fit has nothing to learn from, and order alone
        // (what an answer overtook) must open the limit and hold it near the slots.
        var backend = VirtualBackend(slots: 6, tokenMs: 12.5, promptMs: 0.667, slowdown: 0.06)
        backend.otherSlowdown = 0.3
        backend.others = ConcurrencyLearnerTests.otherModels
        var run = LearnerRun(backend: backend, learner: ConcurrencyLearner(prior: 2), seed: seed)
        run.closed(concurrency: 14, count: 400)
        let late = run.limits.filter { $0.0 >= 90_000 }.map(\.1)
        let histogram = Dictionary(grouping: late, by: { $0 }).mapValues(\.count).sorted { $0.key < $1.key }
        var changes: [String] = []
        for (t, l) in run.limits where changes.last?.hasSuffix(":\(l)") != true { changes.append("\(Int(t / 1000)):\(l)") }
        #expect(!late.isEmpty && late.allSatisfy { (5...7).contains($0) }, "after 90 s: \(histogram) \(changes) waiting \(run.backend.mostWaiting)")
    }

    @Test func besideAnotherModelASixteenSlotBackendStillOpens() {
        // What overtaking proves is enough to find a batching backend: short
        // answers pass long ones all the time when all are served at once.
        var backend = VirtualBackend(slots: 16, tokenMs: 10, slowdown: 0.02)
        backend.otherSlowdown = 0.3
        var run = LearnerRun(backend: backend, learner: ConcurrencyLearner(prior: 2))
        run.alone(3)
        run.backend.others = ConcurrencyLearnerTests.otherModels
        run.closed(concurrency: 14, count: 300)
        #expect(run.learner.limit >= 14, "\(run.learner.limit): \(run.limits.map(\.1).prefix(60))")
    }

    @Test(arguments: UInt64(1)...5)
    func besideAnotherModelASixteenSlotBackendIsFoundWithinSeconds(seed: UInt64) {
        // Open load at 90 % of sixteen slots beside another model: what an
        // answer's order proves — itself, what it overtook, and the requests
        // ahead that ended well inside its time alone (all running when its
        // service began) — opens the limit within 40 s. Counting only what it
        // overtook took 50 s or more than the minute on three of these five seeds.
        var backend = VirtualBackend(slots: 16, tokenMs: 12.5, promptMs: 0.667, slowdown: 0.06)
        backend.otherSlowdown = 0.3
        var run = LearnerRun(backend: backend, learner: ConcurrencyLearner(prior: 2), seed: seed)
        run.alone(3)
        run.backend.others = ConcurrencyLearnerTests.otherModels
        // Sixteen slots serve 16 / (1.35 s × 1.6 × 1.9) ≈ 3.9 answers/s.
        run.open(rate: 3.5, seconds: 60)
        let found = run.limits.first { $0.1 >= 15 }.map { $0.0 / 1000 }
        #expect(found.map { $0 <= 40 } == true, "reached 15 at \(found.map { "\(Int($0)) s" } ?? "never")")
    }

    @Test func beforeTheFitAnOvertakingOpensTheLimitToFour() {
        // No fit yet: a long answer cannot be told from a wait, but an answer
        // that overtook one sent before it was served alongside it (a backend's
        // own queue is in order). In slow start it opens the limit, up to 4.
        var learner = ConcurrencyLearner(prior: 2)
        let overtaking = ConcurrencyLearner.Sample(concurrency: 2, ttftMs: 900, durationMs: 900, promptTokens: 100, completionTokens: 40,
                                                   overtook: 1, limitAtSend: 2)
        learner.observe(overtaking)
        #expect(learner.limit == 4, "slow start doubles at the first proof")
        for _ in 0..<6 { learner.observe(overtaking) }
        #expect(learner.limit == 4, "before the fit, at most twice the two an overtaking proves")
        // Out of slow start it proves nothing without the fit.
        var settled = ConcurrencyLearner(knee: 2, ceiling: nil)
        for _ in 0..<6 { settled.observe(overtaking) }
        #expect(settled.limit == 2)
    }

    @Test func beforeTheFitAnAnswerThatOvertookThreeOpensTheLimitToEight() {
        // Three requests sent before it were still in flight when it ended:
        // in order, they had all started before it — four served at once.
        var learner = ConcurrencyLearner(prior: 2)
        learner.observe(.init(concurrency: 2, ttftMs: 900, durationMs: 900, promptTokens: 100, completionTokens: 40, overtook: 1, limitAtSend: 2))
        #expect(learner.limit == 4)
        var once = learner
        once.observe(.init(concurrency: 4, ttftMs: 900, durationMs: 900, promptTokens: 100, completionTokens: 40, overtook: 1, limitAtSend: 4))
        #expect(once.limit == 4, "one overtaken proves two")
        learner.observe(.init(concurrency: 4, ttftMs: 900, durationMs: 900, promptTokens: 100, completionTokens: 40, overtook: 3, limitAtSend: 4))
        #expect(learner.limit == 8, "three overtaken prove four: twice that")
    }

    /// Slow start at 4 on a backend that reads long prompts (2,000 tokens,
    /// 60 out: 3.3 s alone): three answers alone fill the fit, one at 2 that
    /// overtook the one ahead (1.25× alone: σ 0.25) opens the limit to 4.
    static func longPromptsAtFour() -> ConcurrencyLearner {
        var learner = ConcurrencyLearner(prior: 2)
        let alone = ThroughputFlatTests.alone(2_000, 60)
        for i in 0..<3 {
            let sent = Double(i) * 10_000
            learner.observe(.answer(concurrency: 1, prompt: 2_000, completion: 60, sentAt: sent, endedAt: sent + alone))
        }
        learner.observe(.init(concurrency: 2, ttftMs: 1.25 * alone, durationMs: 1.25 * alone, promptTokens: 2_000, completionTokens: 60,
                              overtook: 1, limitAtSend: 2))
        return learner
    }

    @Test func aStreamWhoseFirstByteProvedLessDoesNotOpenTheLimitAtItsEnd() {
        // A stream sent at 4 that overtook one, its time inside what its batch
        // allows: alone, its end would prove 4 served at once. But at its first
        // byte only one of the three it met was still in flight (the others
        // may have been what it waited for): two proven, and a 2-slot backend
        // went from 4 to 8 on such an answer (real processes, prompts of
        // 1,500–6,000 tokens), six waiting inside.
        var learner = ConcurrencyLearnerTests.longPromptsAtFour()
        #expect(learner.limit == 4 && learner.slowStart)
        let alone = ThroughputFlatTests.alone(2_000, 60)
        var stream = ConcurrencyLearner.Sample(concurrency: 4, streamed: true, ttftMs: 2_000, durationMs: 1.6 * alone,
                                               promptTokens: 2_000, completionTokens: 60, overtook: 1, limitAtSend: 4)
        var unseen = learner
        unseen.observe(stream)
        #expect(unseen.limit == 8, "without its first byte, its end proves four")
        stream.alongsideAtStart = 2
        learner.observe(stream)
        #expect(learner.limit == 4)
    }

    @Test func inSlowStartAnAnswerSlowerThanItsBatchProvesOnlyWhatItsOrderProves() {
        // An answer sent at 4 that took 2.2× its time alone: more than its
        // batch's slowdown (1 + 0.25 × 3 = 1.75×), less than a wait must show
        // (× 1.5). Its time cannot say it was served with all four; its
        // overtaking proves two, and twice two does not pass a limit of 4.
        var learner = ConcurrencyLearnerTests.longPromptsAtFour()
        let alone = ThroughputFlatTests.alone(2_000, 60)
        var slow = learner
        slow.observe(.init(concurrency: 4, ttftMs: 2.2 * alone, durationMs: 2.2 * alone, promptTokens: 2_000, completionTokens: 60,
                           overtook: 1, limitAtSend: 4))
        #expect(slow.limit == 4)
        learner.observe(.init(concurrency: 4, ttftMs: 1.6 * alone, durationMs: 1.6 * alone, promptTokens: 2_000, completionTokens: 60,
                              overtook: 1, limitAtSend: 4))
        #expect(learner.limit == 8, "inside its batch's slowdown, its time proves four")
    }

    @Test func beforeTheFitAnAnswerDoneSoonAfterTheOneAheadWasServedAlongsideIt() {
        // One answer in the fit (2 s for 100 + 100 tokens, sent alone). The
        // next, as long, sent 0.5 s later beside it, ends 0.4 s after it: it
        // did most of its work alongside — the limit opens in slow start
        // (a one-slot backend would need 2 s after the first ended).
        var learner = ConcurrencyLearner(prior: 2)
        learner.observe(.answer(concurrency: 1, prompt: 100, completion: 100, sentAt: 0, endedAt: 2_000))
        learner.observe(.answer(concurrency: 2, prompt: 100, completion: 100, sentAt: 500, endedAt: 2_400))
        #expect(learner.limit == 4)
    }

    @Test func aOneSlotBackendWhosePromptsAreDearIsNotOpenedByTheFirstGuess() {
        // A CPU backend: a prompt token costs 0.3 of an output token (7.5 ms
        // against 25 ms). The first answer is nearly all prompt (2,000 + 100
        // tokens: 17.5 s); priced at the usual share of a prompt token, it
        // makes an output token cost 87 ms. The second (50 + 200 tokens),
        // sent beside it, waits for it and then takes 5.4 s — a third of that
        // guess. Only the least the first answer allows (prompt tokens as dear
        // as output ones: 2.1 s) may judge it, and it is not inside that.
        var learner = ConcurrencyLearner(prior: 2)
        learner.observe(.answer(concurrency: 1, prompt: 2_000, completion: 100, sentAt: 0, endedAt: 17_500))
        learner.observe(.answer(concurrency: 2, prompt: 50, completion: 200, sentAt: 100, endedAt: 22_875))
        #expect(learner.limit <= 2, "one slot: at most one waiting inside")
    }

    @Test func anEightSlotBackendIsFoundInTheFirstSecondsOfABurst() {
        // Cold start (no fit, the prior of 2), non-streaming answers, arrivals
        // at ~80 % of eight slots: herd's queue grows while the limit is below
        // the slots, and every second lost there is queueing for the requests
        // behind. The limit reaches 6 within 5 s (4.4 s; 5.2 s when growth
        // waited for three answers to fit first).
        var run = LearnerRun(backend: VirtualBackend(slots: 8, tokenMs: 10, slowdown: 0.06), learner: ConcurrencyLearner(prior: 2))
        run.open(rate: 3.6, seconds: 30)
        let found = run.limits.first { $0.1 >= 6 }?.0
        #expect(found.map { $0 <= 5_000 } == true, "limit 6 at \(found.map { "\(Int($0)) ms" } ?? "never"): \(run.limits.prefix(30).map(\.1))")
        // An answer served alongside k doubles the limit to 2k at once: it may
        // pass the slots once by less than their number before a wait is seen.
        #expect(run.backend.mostWaiting < 8)
    }

    @Test func aWaitAtTwiceTheSlotsIsSeenWhateverScaleTheFitAndBatchAgreeOn() {
        // A 4-slot backend (a batch slowdown of 6 %) whose answers all came
        // at concurrencies 2 to 4 (none alone, as under steady load), each
        // seen served alongside (it overtook one sent before it): the fit and
        // σ, learned from the same answers, agree on any σ with a matching
        // scale — from the prior of 0.25 the fit settles a third short (8.3
        // ms an output token for 12.5) and σ at 0.35. At eight in flight the
        // batch's allowance, 1 + 7σ, then covers a whole service's wait. What
        // those answers took at their concurrency is the yardstick instead.
        var learner = ConcurrencyLearner(knee: 8, ceiling: nil)
        var rng: UInt64 = 11
        func random() -> Double {
            rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(rng >> 11) / Double(1 << 53)
        }
        func alone(_ prompt: Int, _ completion: Int) -> Double { 0.667 * Double(prompt) + 12.5 * Double(completion) }
        var t = 0.0
        for i in 0..<40 {
            let k = 2 + i % 3
            let prompt = Int(150 * exp(random() * log(4.0))), completion = Int(50 * exp(random() * log(4.0)))
            let ms = alone(prompt, completion) * (1 + 0.06 * Double(k - 1))
            learner.observe(.init(concurrency: k, ttftMs: ms, durationMs: ms, promptTokens: prompt, completionTokens: completion,
                                  sentAt: t, endedAt: t + ms, overtook: k > 1 ? 1 : 0, limitAtSend: 8))
            t += ms + 1_000
        }
        #expect(learner.limit == 8, "nothing waited: \(learner.limit)")
        // Sent at eight, it waited for a slot a whole service (its time alone
        // at the batch of four) before its own: 2.36× its time alone.
        let ms = alone(200, 100) * 1.18 * 2
        let waited = learner.observe(.init(concurrency: 8, ttftMs: ms, durationMs: ms, promptTokens: 200, completionTokens: 100,
                                           sentAt: t, endedAt: t + ms, limitAtSend: 8))
        #expect(waited, "σ \(learner.sigma), fit \(String(describing: learner.fit.coefficients))")
        #expect(learner.limit == 7, "an inferred wait out of slow start takes one slot: \(learner.limit)")
    }

    @Test func aSixteenSlotBackendThatReportsNothingOpensUpAndStaysOpen() {
        // 16 slots at 100 tokens/s, prompts read at 1,500 tokens/s (a quarter
        // of a short answer's time), open loop at about 65 % of what it serves:
        // ten or more in flight at once, nothing ever waiting inside. With
        // that many ending around each answer, one of them lines up with it
        // by chance, and a cost fit that puts the prompt's share near zero
        // makes every answer look long: neither may close it down.
        var run = LearnerRun(backend: VirtualBackend(slots: 16, tokenMs: 10, promptMs: 0.667, slowdown: 0.06),
                             learner: ConcurrencyLearner(prior: 2))
        // 16 / 1.9 × 100 tokens/s ÷ ~108 tokens an answer ≈ 7.8 answers/s.
        run.open(rate: 5, seconds: 120)
        let settled = run.limits.filter { $0.0 >= 20_000 }.map(\.1)
        #expect(!settled.isEmpty && settled.allSatisfy { $0 >= 10 }, "limits after 20 s: \(Set(settled).sorted())")
        #expect(run.backend.mostWaiting < 16)
    }

    @Test func withoutAFitNothingGrows() {
        var learner = ConcurrencyLearner(prior: 2)
        for _ in 0..<2 { learner.observe(.init(concurrency: 2, ttftMs: 1_000, durationMs: 1_000, promptTokens: 100, completionTokens: 50)) }
        #expect(learner.limit == 2, "two requests: nothing tells a wait from a long answer yet")
        var untokened = ConcurrencyLearner(prior: 2)
        for _ in 0..<5 { untokened.observe(.init(concurrency: 1, ttftMs: 100, durationMs: 100)) }
        untokened.observe(.init(concurrency: 2, ttftMs: 9_000, durationMs: 9_000))
        #expect(untokened.limit == 2, "no tokens counted: no judgement")
    }

    @Test func aReportedParallelismIsACeilingNotAPromise() {
        var learner = ConcurrencyLearner(prior: 4, reported: true)
        #expect(learner.limit == 4)
        learner.observe(.init(concurrency: 4, ttftMs: 10, durationMs: 10, promptTokens: 10, completionTokens: 10, queuedInsideMs: 0))
        #expect(learner.limit == 4, "never above what the backend serves at once")
        learner.observe(.init(concurrency: 4, ttftMs: 900, durationMs: 900, promptTokens: 10, completionTokens: 10, queuedInsideMs: 500))
        #expect(learner.limit == 3, "a request waited inside: below the report")
    }

    @Test func busyAnswersHalveFailuresSayNothing() {
        var learner = ConcurrencyLearner(prior: 8)
        learner.observe(.init(concurrency: 8, ok: false, busy: true, ttftMs: 0, durationMs: 0))
        #expect(learner.limit == 4)
        learner.observe(.init(concurrency: 4, ok: false, ttftMs: 0, durationMs: 0))
        #expect(learner.limit == 4)
        var floor = ConcurrencyLearner(prior: 1)
        floor.observe(.init(concurrency: 1, ok: false, busy: true, ttftMs: 0, durationMs: 0))
        #expect(floor.limit == 1, "never below one")
    }

    @Test(arguments: [2, 4, 8])
    func aBackendsQueueGaugesFindItsSlotsAndKeepThem(slots: Int) {
        // Gauges read every 2 s while herd has requests there (herd-node's
        // beat); open loop at ~90 % of what the slots serve, prior 2.
        var run = LearnerRun(backend: VirtualBackend(slots: slots, tokenMs: 12.5, slowdown: 0.06), learner: ConcurrencyLearner(prior: 2))
        run.gaugeEveryMs = 2_000
        run.open(rate: 0.58 * Double(slots) / (1 + 0.06 * Double(slots - 1)), seconds: 240)
        let settled = run.limits.filter { $0.0 >= 30_000 }.map(\.1)
        #expect(!settled.isEmpty && settled.allSatisfy { (slots...slots + 1).contains($0) }, "limits after 30 s: \(Set(settled).sorted())")
        #expect(run.learner.gauges)
    }

    @Test func gaugesOutrankWhatTimingsSuggest() {
        // An answer three times slower than its tokens predict, at a
        // concurrency of 4: inferred as a wait without gauges; a backend
        // whose gauges show nothing waiting is believed.
        var learner = ConcurrencyLearner(prior: 4)
        for i in 0..<3 { learner.observe(.init(concurrency: 1, ttftMs: 1_000, durationMs: 1_000, promptTokens: 100, completionTokens: 50 + i)) }
        var told = learner
        told.gauged(running: 4, waiting: 0, inFlight: 4)
        let slow = ConcurrencyLearner.Sample(concurrency: 4, ttftMs: 4_000, durationMs: 4_000, promptTokens: 100, completionTokens: 50)
        let inferred = learner.observe(slow)
        #expect(inferred)
        #expect(learner.limit == 3)
        let believed = told.observe(slow)
        #expect(!believed)
        #expect(told.limit >= 4)
        // A slow first byte in slow start is not a wait either.
        var starting = ConcurrencyLearner(prior: 4)
        for i in 0..<3 { starting.observe(.init(concurrency: 1, ttftMs: 100, durationMs: 1_000, promptTokens: 100, completionTokens: 50 + i)) }
        starting.gauged(running: 1, waiting: 0, inFlight: 1)
        starting.started(ttft: 5_000, concurrency: 4, promptTokens: 100, ok: true, busy: false)
        #expect(starting.limit == 4 && starting.slowStart)
    }

    @Test func requestsWaitingInTwoReadingsInARowCutToWhatIsServed() {
        var learner = ConcurrencyLearner(prior: 8)
        // One reading: a request may have just arrived, between two steps of the engine.
        learner.gauged(running: 3, waiting: 2, inFlight: 5)
        #expect(learner.limit == 8)
        learner.gauged(running: 3, waiting: 2, inFlight: 5)
        #expect(learner.limit == 3 && !learner.slowStart)
        // A reading with none waiting in between starts the count again.
        var again = ConcurrencyLearner(prior: 8)
        again.gauged(running: 3, waiting: 1, inFlight: 4)
        again.gauged(running: 4, waiting: 0, inFlight: 4)
        again.gauged(running: 3, waiting: 1, inFlight: 4)
        #expect(again.limit == 8)
        // Waiting that is another client's: at most what the backend serves; never below 1.
        var shared = ConcurrencyLearner(prior: 8)
        shared.gauged(running: 5, waiting: 3, inFlight: 2)
        shared.gauged(running: 5, waiting: 3, inFlight: 2)
        #expect(shared.limit == 5)
        var nonsense = ConcurrencyLearner(prior: 8)
        nonsense.gauged(running: -4, waiting: 7, inFlight: -1)
        nonsense.gauged(running: 0, waiting: Int.max, inFlight: 0)
        #expect(nonsense.limit == 1)
        var huge = ConcurrencyLearner(prior: 8)
        huge.gauged(running: Int.max, waiting: 1, inFlight: Int.max)
        huge.gauged(running: Int.max, waiting: 1, inFlight: Int.min)
        #expect(huge.limit == 8)
        // Serving all herd sends, none waiting: the limit grows, up to a reported ceiling.
        var room = ConcurrencyLearner(prior: 2)
        for _ in 0..<4 { room.gauged(running: room.limit, waiting: 0, inFlight: room.limit) }
        #expect(room.limit == 32, "slow start doubles")
        room.gauged(running: 20, waiting: 0, inFlight: 20)
        #expect(room.limit == 32, "a limit that does not bind says nothing")
        // Completions that look like service alongside do not open it: only the gauges do.
        var quiet = ConcurrencyLearner(prior: 2)
        for i in 0..<3 { quiet.observe(.init(concurrency: 1, ttftMs: 1_000, durationMs: 1_000, promptTokens: 100, completionTokens: 50 + i)) }
        quiet.gauged(running: 1, waiting: 0, inFlight: 1)
        quiet.observe(.init(concurrency: 2, ttftMs: 600, durationMs: 600, promptTokens: 100, completionTokens: 30, overtook: 1))
        quiet.started(ttft: 50, concurrency: 2, promptTokens: 100, ok: true, busy: false)
        #expect(quiet.limit == 2)
        var ceiling = ConcurrencyLearner(prior: 4, reported: true)
        for _ in 0..<10 { ceiling.gauged(running: 4, waiting: 0, inFlight: 4) }
        #expect(ceiling.limit == 4)
    }

    @Test func theLimitHasACeiling() {
        var learner = ConcurrencyLearner(prior: 1_020)
        for i in 0..<20 {
            learner.observe(.init(concurrency: 1_020 + i, ttftMs: 10, durationMs: 10, promptTokens: 10, completionTokens: 10, queuedInsideMs: 0))
        }
        #expect(learner.limit == Int(ConcurrencyLearner.ceiling))
    }

    @Test func theWorkFitSeparatesPromptFromAnswer() {
        // 0.5 ms a prompt token, 20 an output token. The fit leans toward the
        // prior share (a twentieth: 1 ms) by one answer's worth: after four
        // answers it is between the two, after two dozen close to the truth.
        var fit = WorkFit()
        let lengths = [(100, 50), (400, 50), (100, 200), (300, 120)]
        for (p, c) in lengths { fit.add(prompt: p, completion: c, ms: 0.5 * Double(p) + 20 * Double(c)) }
        let (prompt, completion) = fit.coefficients!
        #expect(prompt > 0.5 && prompt < 0.7 && abs(completion - 20) < 0.5, "\(prompt) \(completion)")
        for _ in 0..<5 { for (p, c) in lengths { fit.add(prompt: p, completion: c, ms: 0.5 * Double(p) + 20 * Double(c)) } }
        let (closer, answer) = fit.coefficients!
        #expect(abs(closer - 0.5) < 0.06 && abs(answer - 20) < 0.2, "\(closer) \(answer)")
        // Two answers of long prompts and short answers (0.67 and 8.3 ms a
        // token): solved exactly they say a prompt token costs 1.5 ms and an
        // output token 1.9 — nonsense. Pulled toward the prior, near the truth.
        var two = WorkFit()
        two.add(prompt: 551, completion: 69, ms: 959)
        two.add(prompt: 424, completion: 77, ms: 783)
        let (p2, c2) = two.provisional!
        #expect(p2 < 1 && c2 > 7 && c2 < 10, "\(p2) \(c2)")
        var single = WorkFit()
        for _ in 0..<3 { single.add(prompt: 100, completion: 50, ms: 1_050) }
        #expect(single.expectedMs(prompt: 100, completion: 50).map { abs($0 - 1_050) < 1e-6 } == true, "one ratio: the prior share, same total")
    }

    @Test func implausibleBackendTimingsAreNotBelieved() {
        // Every duration 1 ns (some servers), against 2 s as herd measured it.
        let absurd = BackendTimings(prompt: 1e-6, decode: 1e-6, load: 1e-6, total: 1e-6, promptTokens: 150, completionTokens: 100, durationMs: 2_000)
        #expect(absurd.decodeMs == nil && absurd.promptMs == nil && absurd.queuedMs == nil)
        // Longer than the request took: not believed either.
        let long = BackendTimings(prompt: 10, decode: 9_000, load: 0, total: 9_100, promptTokens: 150, completionTokens: 100, durationMs: 2_000)
        #expect(long.decodeMs == nil && long.queuedMs == nil)
        // Honest figures: believed, and the rest of the total is time queued inside.
        let honest = BackendTimings(prompt: 100, decode: 1_200, load: 0, total: 1_900, promptTokens: 150, completionTokens: 100, durationMs: 1_950)
        #expect(honest.promptMs == 100 && honest.decodeMs == 1_200 && honest.queuedMs == 600)
        #expect(BackendTimings(prompt: -5, decode: 0, load: nil, total: nil, promptTokens: 1, completionTokens: 1, durationMs: 10).decodeMs == nil)
    }
}

/// The throughput test: what more at once buys, with no batch slowdown in it.
@Suite struct ThroughputFlatTests {
    static let shapes = [(300, 60), (150, 180), (450, 110), (200, 90), (350, 200), (250, 140)]
    static func alone(_ p: Int, _ c: Int) -> Double { 12.5 * Double(c) + 0.667 * Double(p) }

    /// Answers spaced apart (no overlap for the lined-up and pace tests to
    /// read): only the per-answer wait test and the throughput test see them.
    static func feed(_ learner: inout ConcurrencyLearner, count: Int, concurrency: (Int) -> Int, time: (Int, Double) -> Double,
                     from start: Double) -> [Int] {
        var t = start, limits: [Int] = []
        for i in 0..<count {
            let (p, c) = shapes[i % shapes.count]
            let k = concurrency(i)
            let ms = time(k, alone(p, c))
            learner.observe(.init(concurrency: k, ttftMs: ms, durationMs: ms, promptTokens: p, completionTokens: c,
                                  sentAt: t, endedAt: t + ms, limitAtSend: learner.limit))
            t += 10_000
            limits.append(learner.limit)
        }
        return limits
    }

    static func fitted(knee: Int, slowdown: Double) -> ConcurrencyLearner {
        var learner = ConcurrencyLearner(knee: knee, ceiling: nil)
        _ = feed(&learner, count: 6, concurrency: { 1 + $0 % 2 }, time: { k, alone in alone * (1 + slowdown * Double(k - 1)) }, from: 0)
        return learner
    }

    /// A 4-slot backend (batch slowdown 0.06) held at a limit of 8: answers
    /// sent at 4 to 8 at once take their batch's time × k ÷ 4 (the mean wait
    /// in its queue). Learned from these, σ settles near 0.15 and every wait
    /// hides inside `1 + σ(k − 1)` × 1.5 (old: the limit stays 8 through 64
    /// answers); the node's throughput does not grow from 4 to 8, and the
    /// limit goes to 5 within 16 answers.
    @Test func aLimitTwiceTheSlotsIsFoundByThroughputThatStopsGrowing() {
        var learner = ThroughputFlatTests.fitted(knee: 8, slowdown: 0.06)
        let limits = ThroughputFlatTests.feed(&learner, count: 64, concurrency: { 4 + ($0 * 7) % 5 },
                                              time: { k, alone in alone * 1.18 * max(1, Double(k) / 4) }, from: 100_000)
        #expect(limits.prefix(20).contains { $0 <= 5 }, "\(limits)")
        #expect(limits.suffix(40).allSatisfy { $0 <= 5 }, "\(limits)")
    }

    /// A batching backend of 16 slots whose every stream slows the others by
    /// a quarter (Ollama-like): from 8 to 16 at once its throughput still
    /// grows 16 % — slower answers, but more of them. The limit stays.
    @Test func aBatchThatStillGainsKeepsItsLimit() {
        var learner = ThroughputFlatTests.fitted(knee: 16, slowdown: 0.25)
        let limits = ThroughputFlatTests.feed(&learner, count: 64, concurrency: { 8 + ($0 * 7) % 9 },
                                              time: { k, alone in alone * (1 + 0.25 * Double(k - 1)) }, from: 100_000)
        #expect(limits.allSatisfy { $0 >= 16 }, "\(limits)")
    }
}

extension ConcurrencyLearner.Sample {
    /// A non-streaming answer sent at `sentAt` and ended at `endedAt` (ms): its first byte is its last.
    static func answer(concurrency: Int, prompt: Int, completion: Int, sentAt: Double, endedAt: Double, limitAtSend: Int = 2) -> Self {
        .init(concurrency: concurrency, ttftMs: endedAt - sentAt, durationMs: endedAt - sentAt, promptTokens: prompt,
              completionTokens: completion, sentAt: sentAt, endedAt: endedAt, limitAtSend: limitAtSend)
    }
}
