import HerdBounds

/// A client key's limits: requests and tokens per minute, tokens per day,
/// week or month (UTC calendar periods; a week starts on Monday).
struct KeyLimits: Equatable, Sendable {
    enum Period: String, CaseIterable, Sendable {
        case day, week, month
    }

    var rpm: Int?
    var tpm: Int?
    var budgetTokens: Int?
    var budgetPeriod = Period.day

    var isEmpty: Bool { rpm == nil && tpm == nil && budgetTokens == nil }
}

/// Counts what each client key used and says when a request would take it
/// past a limit. Control admits every request of a limited key (a ROUTE: such
/// requests never spend a route ticket), so the count is exact across any
/// number of proxies, with one bound stated: tokens are known when a request
/// ends, so each admitted request is counted ahead (its estimated prompt and
/// its output limit, `KeyBook` says how much) and settled at its end; a
/// request starts only while used + counted-ahead is under the limit, so the
/// overshoot is what the key's requests in flight use beyond what was
/// counted for them (none for a request that sets `max_tokens`, but for the
/// prompt estimate).
///
/// Times come in: `now` (monotonic ms) for the minute windows, `wall` (ms
/// since the epoch) for the calendar periods. Pure: tested on numbers.
struct KeyLimiter {
    /// A refusal: which limit, its figure, and when to try again.
    struct Refusal: Equatable {
        var limit: String
        var message: String
        var retryAfterSeconds: Int
    }

    /// 60 one-second buckets: what was counted in the last minute.
    struct MinuteWindow {
        private var counts = [Int](repeating: 0, count: 60)
        private var stamps = [UInt64](repeating: 0, count: 60)

        mutating func add(_ n: Int, at now: UInt64) {
            let second = now / 1000, slot = Int(truncatingIfNeeded: second % 60)
            if stamps[slot] != second {
                stamps[slot] = second
                counts[slot] = 0
            }
            counts[slot] = counts[slot].addingSaturated(n)
        }

        /// The total of the last 60 seconds (this one included).
        func total(at now: UInt64) -> Int {
            let second = now / 1000
            var sum = 0
            for i in 0..<60 where stamps[i] + 60 > second && stamps[i] <= second { sum = sum.addingSaturated(counts[i]) }
            return sum
        }

        /// Seconds until the total falls to `target` or below (1…60).
        func secondsUntil(below target: Int, at now: UInt64) -> Int {
            let second = now / 1000
            var total = total(at: now)
            var waited = 0
            for offset in 0..<60 {
                // The bucket leaving the window in `offset + 1` seconds: second − 59 + offset.
                let shifted = second + UInt64(truncatingIfNeeded: offset)
                if shifted >= 59 {
                    let leaving = shifted - 59, slot = Int(truncatingIfNeeded: leaving % 60)
                    if stamps[slot] == leaving { total -= counts[slot] }
                }
                waited = offset + 1
                if total <= target { break }
            }
            return max(1, waited)
        }
    }

    struct Usage {
        var requests = MinuteWindow()
        var tokens = MinuteWindow()
        /// Tokens used per UTC day (day number since the epoch), the last 62 days.
        var days: [Int: Int] = [:]
        /// Prompt tokens of admitted requests not finished yet (counted ahead).
        var reserved = 0
    }

    private(set) var usage: [Int: Usage] = [:]

    /// Whether a request of `key` estimated at `estimatedTokens` of prompt may
    /// go now; when it may, it is counted (one request, its prompt reserved).
    mutating func admit(key: Int, limits: KeyLimits, estimatedTokens: Int, now: UInt64, wall: Int) -> Refusal? {
        var u = usage[key] ?? Usage()
        defer { usage[key] = u }
        if let rpm = limits.rpm {
            let used = u.requests.total(at: now)
            if used >= rpm {
                return Refusal(limit: "rpm", message: "\(rpm) requests per minute", retryAfterSeconds: u.requests.secondsUntil(below: rpm - 1, at: now))
            }
        }
        // A token limit: the counted tokens (used, and counted ahead for requests in flight) must leave room for this one's;
        // alone (nothing in flight) a request goes while any room is left, so a limit smaller than one request still lets one through.
        func over(_ counted: Int, _ limit: Int) -> Bool {
            counted >= limit || (u.reserved > 0 && counted.addingSaturated(max(0, estimatedTokens)) > limit)
        }
        if let tpm = limits.tpm {
            let used = u.tokens.total(at: now).addingSaturated(u.reserved)
            if over(used, tpm) {
                return Refusal(limit: "tpm", message: "\(tpm) tokens per minute (\(used) used)",
                               retryAfterSeconds: u.tokens.secondsUntil(below: max(0, tpm - 1 - u.reserved), at: now))
            }
        }
        if let budget = limits.budgetTokens {
            let used = Self.used(u, period: limits.budgetPeriod, wall: wall).addingSaturated(u.reserved)
            if over(used, budget) {
                let reset = Self.periodEnd(limits.budgetPeriod, wall: wall)
                return Refusal(limit: "budget", message: "its budget of \(budget) tokens per \(limits.budgetPeriod.rawValue) (\(used) used)",
                               retryAfterSeconds: max(1, (reset - wall + 999) / 1000))
            }
        }
        u.requests.add(1, at: now)
        u.reserved = u.reserved.addingSaturated(max(0, estimatedTokens))
        return nil
    }

    /// An admitted request ended: its reservation goes.
    mutating func release(key: Int, estimatedTokens: Int) {
        guard var u = usage[key] else { return }
        u.reserved = max(0, u.reserved - max(0, estimatedTokens))
        usage[key] = u
    }

    /// A request of `key` used `tokens` (prompt + completion), whether or not it was admitted here (a ticket's, a local one's).
    mutating func used(key: Int, tokens: Int, now: UInt64, wall: Int) {
        guard tokens > 0 else { return }
        var u = usage[key] ?? Usage()
        u.tokens.add(tokens, at: now)
        let day = Self.day(wall)
        u.days[day, default: 0] = u.days[day, default: 0].addingSaturated(tokens)
        if u.days.count > 62 { u.days = u.days.filter { $0.key > day - 62 } }
        usage[key] = u
    }

    /// Tokens counted before a restart (`key_usage` rows).
    mutating func restore(key: Int, day: Int, tokens: Int) {
        var u = usage[key] ?? Usage()
        u.days[day] = max(0, tokens)
        usage[key] = u
    }

    /// A key was revoked: its counts go.
    mutating func forget(key: Int) { usage[key] = nil }

    /// Tokens of `key` in the current `period`.
    func used(key: Int, period: KeyLimits.Period, wall: Int) -> Int { usage[key].map { Self.used($0, period: period, wall: wall) } ?? 0 }

    /// Requests and tokens of `key` in the last minute.
    func lastMinute(key: Int, now: UInt64) -> (requests: Int, tokens: Int) {
        guard let u = usage[key] else { return (0, 0) }
        return (u.requests.total(at: now), u.tokens.total(at: now))
    }

    private static func used(_ u: Usage, period: KeyLimits.Period, wall: Int) -> Int {
        let first = day(periodStart(period, wall: wall))
        return u.days.reduce(0) { $1.key >= first ? $0.addingSaturated($1.value) : $0 }
    }

    // MARK: The calendar (UTC)

    static let dayMs = 86_400_000

    /// Days since 1970-01-01 (UTC).
    static func day(_ wall: Int) -> Int { wall >= 0 ? wall / dayMs : (wall - dayMs + 1) / dayMs }

    /// When the period holding `wall` began (ms since the epoch).
    static func periodStart(_ period: KeyLimits.Period, wall: Int) -> Int {
        let d = day(wall)
        switch period {
        case .day: return d * dayMs
        case .week:
            // 1970-01-01 was a Thursday: Monday-based weekday is (d + 3) mod 7.
            let weekday = ((d + 3) % 7 + 7) % 7
            return (d - weekday) * dayMs
        case .month:
            let (y, m, _) = civil(d)
            return daysFromCivil(y, m, 1) * dayMs
        }
    }

    /// When the period holding `wall` ends (the next one's start).
    static func periodEnd(_ period: KeyLimits.Period, wall: Int) -> Int {
        let start = periodStart(period, wall: wall)
        switch period {
        case .day: return start + dayMs
        case .week: return start + 7 * dayMs
        case .month:
            let (y, m, _) = civil(day(start))
            return (m == 12 ? daysFromCivil(y + 1, 1, 1) : daysFromCivil(y, m + 1, 1)) * dayMs
        }
    }

    /// Year, month, day of a day number (Howard Hinnant's algorithm).
    static func civil(_ days: Int) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
