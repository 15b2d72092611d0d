import HerdJSON
import HerdWire
import Testing
@testable import herd_control

/// Client keys' limits, on numbers: the minute windows, the calendar budgets,
/// the reservation of prompts in flight, and the settings' ranges.
@Suite struct KeyLimiterTests {
    // 2026-12-04 10:00:00 UTC, a Friday.
    let friday = 1_796_378_400_000

    @Test func requestsPerMinuteCountTheLastSixtySeconds() {
        var limiter = KeyLimiter()
        let limits = KeyLimits(rpm: 3)
        for i in 0..<3 { #expect(limiter.admit(key: 1, limits: limits, estimatedTokens: 0, now: 1_000 + UInt64(i) * 10_000, wall: friday) == nil) }
        // At 25 s: three in the window (at 1, 11, 21 s).
        let refusal = limiter.admit(key: 1, limits: limits, estimatedTokens: 0, now: 25_000, wall: friday)
        #expect(refusal?.limit == "rpm")
        // The first leaves the window at 61 s: 36 s from 25 s.
        #expect(refusal?.retryAfterSeconds == 36, "\(String(describing: refusal))")
        #expect(limiter.admit(key: 1, limits: limits, estimatedTokens: 0, now: 60_999, wall: friday) != nil)
        #expect(limiter.admit(key: 1, limits: limits, estimatedTokens: 0, now: 61_000, wall: friday) == nil, "a minute after the first, room again")
        #expect(limiter.admit(key: 2, limits: limits, estimatedTokens: 0, now: 61_000, wall: friday) == nil, "keys count apart")
    }

    @Test func tokensPerMinuteCountWhatFinishedAndWhatIsInFlight() {
        var limiter = KeyLimiter()
        let limits = KeyLimits(tpm: 1_000)
        // Alone, a request goes even when it counts more than the limit (else it could never go).
        var alone = KeyLimiter()
        #expect(alone.admit(key: 1, limits: limits, estimatedTokens: 5_000, now: 0, wall: friday) == nil)
        #expect(limiter.admit(key: 1, limits: limits, estimatedTokens: 600, now: 0, wall: friday) == nil)
        // 600 counted ahead: another 600 would pass 1000 (refused), 400 fits, then nothing more.
        #expect(limiter.admit(key: 1, limits: limits, estimatedTokens: 600, now: 100, wall: friday)?.limit == "tpm")
        #expect(limiter.admit(key: 1, limits: limits, estimatedTokens: 400, now: 100, wall: friday) == nil)
        #expect(limiter.admit(key: 1, limits: limits, estimatedTokens: 1, now: 200, wall: friday)?.limit == "tpm")
        // Both end, having used 700 each: 1400 in the minute, nothing counted ahead.
        limiter.release(key: 1, estimatedTokens: 600)
        limiter.release(key: 1, estimatedTokens: 400)
        limiter.used(key: 1, tokens: 700, now: 5_000, wall: friday)
        limiter.used(key: 1, tokens: 700, now: 5_000, wall: friday)
        let refusal = limiter.admit(key: 1, limits: limits, estimatedTokens: 10, now: 30_000, wall: friday)
        #expect(refusal?.limit == "tpm" && refusal?.retryAfterSeconds == 35, "\(String(describing: refusal))")
        #expect(limiter.admit(key: 1, limits: limits, estimatedTokens: 10, now: 65_000, wall: friday) == nil)
        #expect(limiter.lastMinute(key: 1, now: 65_000).tokens == 0)
    }

    @Test func budgetsRunByTheCalendarAndComeBackAfterARestart() {
        var limiter = KeyLimiter()
        let daily = KeyLimits(budgetTokens: 1_000, budgetPeriod: .day)
        limiter.used(key: 1, tokens: 1_000, now: 0, wall: friday)
        let refusal = limiter.admit(key: 1, limits: daily, estimatedTokens: 1, now: 0, wall: friday)
        #expect(refusal?.limit == "budget")
        #expect(refusal?.retryAfterSeconds == 14 * 3_600, "midnight UTC is 14 h after 10:00")
        #expect(limiter.admit(key: 1, limits: daily, estimatedTokens: 1, now: 0, wall: friday + 14 * 3_600_000) == nil, "a new day")

        // A week from Monday: Friday's and Saturday's count, the Sunday before does not.
        var weekly = KeyLimiter()
        let week = KeyLimits(budgetTokens: 100, budgetPeriod: .week)
        let day = KeyLimiter.dayMs
        weekly.used(key: 1, tokens: 60, now: 0, wall: friday - 5 * day) // Sunday: last week
        weekly.used(key: 1, tokens: 60, now: 0, wall: friday - 4 * day) // Monday
        #expect(weekly.admit(key: 1, limits: week, estimatedTokens: 0, now: 0, wall: friday) == nil)
        weekly.used(key: 1, tokens: 60, now: 0, wall: friday)
        #expect(weekly.admit(key: 1, limits: week, estimatedTokens: 0, now: 0, wall: friday)?.limit == "budget")

        // The days come back from SQLite (`restore`): the month's count stands.
        var restarted = KeyLimiter()
        restarted.restore(key: 7, day: KeyLimiter.day(friday - 3 * day), tokens: 900)
        restarted.restore(key: 7, day: KeyLimiter.day(friday - 10 * day), tokens: 500) // November
        let month = KeyLimits(budgetTokens: 1_000, budgetPeriod: .month)
        #expect(restarted.used(key: 7, period: .month, wall: friday) == 900)
        #expect(restarted.admit(key: 7, limits: month, estimatedTokens: 50, now: 0, wall: friday) == nil)
        // With 950 counted, 60 more would pass 1000; 50 fits exactly; then none.
        #expect(restarted.admit(key: 7, limits: month, estimatedTokens: 60, now: 0, wall: friday)?.limit == "budget")
        #expect(restarted.admit(key: 7, limits: month, estimatedTokens: 50, now: 0, wall: friday) == nil)
        #expect(restarted.admit(key: 7, limits: month, estimatedTokens: 1, now: 0, wall: friday)?.limit == "budget")
    }

    @Test func theCalendarIsUTC() {
        // 2024 is a leap year; months of every length.
        #expect(KeyLimiter.civil(KeyLimiter.daysFromCivil(2024, 2, 29)) == (2024, 2, 29))
        #expect(KeyLimiter.periodStart(.month, wall: friday) == KeyLimiter.daysFromCivil(2026, 12, 1) * KeyLimiter.dayMs)
        #expect(KeyLimiter.periodEnd(.month, wall: friday) == KeyLimiter.daysFromCivil(2027, 1, 1) * KeyLimiter.dayMs)
        #expect(KeyLimiter.periodStart(.week, wall: friday) == KeyLimiter.daysFromCivil(2026, 11, 30) * KeyLimiter.dayMs, "Monday 30 November")
        #expect(KeyLimiter.day(0) == 0 && KeyLimiter.day(-1) == -1)
    }

    @Test func settingsHaveRangesAndNullClears() throws {
        var settings = KeySettings()
        try settings.apply(["models": "llama3*, qwen2.5:*", "rpm": 60, "budget_tokens": "50000/week", "tags": ["team-a"], "max_queue_wait": 2.5])
        #expect(settings.models == ["llama3*", "qwen2.5:*"] && settings.limits.rpm == 60 && settings.limits.budgetTokens == 50_000)
        #expect(settings.limits.budgetPeriod == .week && settings.tags == ["team-a"] && settings.maxQueueWaitMilliseconds == 2_500)
        try settings.apply(["rpm": nil, "tpm": 1000])
        #expect(settings.limits.rpm == nil && settings.limits.tpm == 1_000)
        let bad: [JSONValue] = [["rpm": 0], ["rpm": 1e14], ["rpm": 1.5], ["rpm": "60"], ["tpm": -1], ["budget_tokens": "10/year"],
                                ["budget_tokens": "x/day"], ["max_queue_wait": 1e9], ["max_queue_wait": -1], ["tags": ["a b"]],
                                ["tags": .array(Array(repeating: "t", count: 17))], ["models": [1]], ["cloud": "yes"],
                                ["models": .string(String(repeating: "m", count: 300))]]
        for body in bad {
            var s = settings
            #expect(throws: KeyError.self, "\(body.serialized())") { try s.apply(body) }
        }
        #expect(KeySettings.isName("alice-laptop_1.2") && !KeySettings.isName("") && !KeySettings.isName("a/b")
                && !KeySettings.isName(String(repeating: "a", count: 65)))
    }

    @Test func modelGlobs() {
        #expect(ClientKeys.matches("llama3*", "llama3:8b") && ClientKeys.matches("*", "x") && ClientKeys.matches("qwen?.5:*", "qwen2.5:7b"))
        #expect(!ClientKeys.matches("llama3*", "llama2:7b") && !ClientKeys.matches("llama3", "llama3:8b") && ClientKeys.matches("*:8b", "llama3:8b"))
        #expect(ClientKeys.matches("a*b*c", "a-x-b-y-c") && !ClientKeys.matches("a*b*c", "a-x-c-y-b"))
        // No blow-up on a pathological pattern.
        #expect(!ClientKeys.matches(String(repeating: "*a", count: 100), String(repeating: "a", count: 200) + "b"))
    }
}
