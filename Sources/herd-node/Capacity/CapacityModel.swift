import HerdBounds

/// # Learned capacity: the owner's week
///
/// A node is someone's machine. herd learns, per hour of the week (168
/// slots, local time), how much of it the owner uses *themselves*: CPU and
/// memory not taken by the model servers herd sends work to (Ollama and its
/// runners, llama.cpp, vLLM — measured from their processes), with an hour in
/// a video call counted as at least half busy.
///
/// - Each sample (one per beat) adds to the current hour's mean. When the
///   hour ends its mean folds into that hour-of-week's slot: the first week
///   sets it, later weeks move it 30 % of the way (older weeks decay:
///   after four weeks a week's weight is under a quarter).
/// - **availability** for now = 1 − owner CPU, from the slot blended with
///   the current hour so far (weighted by how far into the hour it is, at
///   least by a quarter: a busy owner *now* counts at once).
/// - **memory ceiling** = total − the owner's memory (the larger of the
///   slot's and now's), never below what is free now.
///
/// Pure; `CapacityStore` persists the slots in SQLite.
struct CapacityModel: Equatable, Sendable {
    static let slots = 168
    /// Share of the way a new week moves a slot.
    static let foldWeight = 0.3

    struct Slot: Equatable, Sendable {
        /// The owner's own CPU share (0…1) and memory (bytes) at this hour.
        var cpu: Double
        var memoryBytes: Double
        /// Weeks folded in.
        var weeks: Int
    }

    private(set) var learned = [Slot?](repeating: nil, count: CapacityModel.slots)
    /// The hour being measured: its slot and running sums.
    private(set) var currentSlot: Int?
    private var sumCPU = 0.0, sumMemory = 0.0, count = 0

    init(learned: [Slot?] = []) {
        for (i, slot) in learned.prefix(Self.slots).enumerated() { self.learned[i] = slot }
    }

    /// Hour of the week (0 = Sunday 00:00–00:59 … 167) from a weekday (0 = Sunday) and hour.
    static func slot(weekday: Int, hour: Int) -> Int { ((weekday % 7) * 24 + hour % 24) % slots }

    var learnedHours: Int { learned.lazy.filter { $0 != nil }.count }

    /// A sample at hour-of-week `slot`. Returns the slot folded when an hour
    /// ended (to persist), else nil.
    @discardableResult
    mutating func add(slot: Int, ownerCPU: Double, ownerMemoryBytes: Double, inMeeting: Bool) -> Int? {
        guard (0..<Self.slots).contains(slot), ownerCPU.isFinite, ownerMemoryBytes.isFinite else { return nil }
        var folded: Int?
        if let current = currentSlot, current != slot {
            folded = fold()
        }
        currentSlot = slot
        sumCPU += min(1, max(inMeeting ? 0.5 : 0, ownerCPU))
        sumMemory += max(0, ownerMemoryBytes)
        count += 1
        return folded
    }

    /// Folds the current hour into its slot (an hour ended, or the agent stops).
    @discardableResult
    mutating func fold() -> Int? {
        guard let current = currentSlot, count > 0 else { return nil }
        let cpu = sumCPU / Double(count), memory = sumMemory / Double(count)
        if var slot = learned[current] {
            slot.cpu += Self.foldWeight * (cpu - slot.cpu)
            slot.memoryBytes += Self.foldWeight * (memory - slot.memoryBytes)
            slot.weeks += 1
            learned[current] = slot
        } else {
            learned[current] = Slot(cpu: cpu, memoryBytes: memory, weeks: 1)
        }
        sumCPU = 0
        sumMemory = 0
        count = 0
        currentSlot = nil
        return current
    }

    /// Availability at `slot`, `minuteOfHour` minutes in: the learned slot
    /// blended with the hour so far; nil before anything is known.
    func availability(slot: Int, minuteOfHour: Int) -> Double? {
        let now = count > 0 && currentSlot == slot ? sumCPU / Double(count) : nil
        let past = learned[slot]?.cpu
        let busy: Double
        switch (past, now) {
        case let (past?, now?):
            let w = max(0.25, min(1, Double(minuteOfHour) / 60))
            busy = (1 - w) * past + w * now
        case let (past?, nil): busy = past
        case let (nil, now?): busy = now
        case (nil, nil): return nil
        }
        return min(1, max(0, 1 - busy))
    }

    /// Memory models may use at `slot`: total − the owner's (learned or now, the larger), at least `freeNow`.
    func memoryCeiling(slot: Int, totalBytes: Int, ownerNowBytes: Double, freeNow: Int) -> Int {
        let owner = max(learned[slot]?.memoryBytes ?? 0, ownerNowBytes)
        return max(freeNow, totalBytes.subtractingSaturated(Int(saturating: owner)))
    }
}
