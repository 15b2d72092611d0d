import HerdBounds
import HerdRouting
import HerdWire

// The `decide` target: fuzzed sequences of what control hears — heartbeats
// (with sizes, contexts, memory), ROUTEs (models, num_ctx, max_tokens,
// tags), RESULTs with a backend's timings and counts, RETRYs, STARTEDs,
// CANCELs, ticket spends and returns, time passing — fed through the real
// scheduler and scorer, each value first through the same checks control's
// readers apply (`Heartbeat.validate`, `RequestLimits`, `ResultLimits`).
// Invariants: nothing traps; every ROUTE is answered, refused or queued at
// once; in-flight counts are never negative and add up; the tables keyed by
// outside strings stay bounded.

/// Reads the fuzzer's bytes as small numbers; zeros once they run out.
struct FuzzBytes {
    let bytes: UnsafeRawBufferPointer
    var at = 0

    var isEmpty: Bool { at >= bytes.count }

    mutating func byte() -> UInt8 {
        guard at < bytes.count else { return 0 }
        defer { at += 1 }
        return bytes[at]
    }

    mutating func u64() -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(byte()) << UInt64(i * 8) }
        return v
    }

    /// An integer drawn to hit edges: small, a power of two, a limit, or any.
    mutating func int() -> Int {
        switch byte() % 8 {
        case 0: return Int(byte())
        case 1: return 1 << Int(byte() % 63)
        case 2: return -(1 << Int(byte() % 63))
        case 3: return [0, 1, -1, 2, 4096, 16_777_216, 1 << 50, Int.max, Int.min][Int(byte() % 9)]
        default: return Int(truncatingIfNeeded: u64())
        }
    }

    /// Mostly within `range` (its edges included), now and then anything.
    mutating func int(in range: ClosedRange<Int>) -> Int {
        switch byte() % 8 {
        case 0: return int()
        case 1: return range.lowerBound
        case 2: return range.upperBound
        default:
            let span = UInt64(clamping: range.upperBound.subtractingSaturated(range.lowerBound)).addingSaturated(1)
            return range.lowerBound.addingSaturated(Int(clamping: u64() % max(1, span)))
        }
    }

    /// Milliseconds a request might take, now and then anything (NaN, 1e300, …).
    mutating func milliseconds() -> Double { byte() == 0 ? double() : Double(u64() % 200_000) / 3 }

    /// A share 0…1, now and then anything.
    mutating func share() -> Double { byte() == 0 ? double() : Double(byte()) / 255 }

    mutating func double() -> Double {
        switch byte() % 6 {
        case 0: return Double(byte())
        case 1: return [0, -1, .nan, .infinity, -.infinity, 9e15, 1e300, 1e-300][Int(byte() % 8)]
        default: return Double(bitPattern: u64())
        }
    }
}

struct DecideFuzz {
    static let models = ["m:1b", "m:70b", "x", "m"]
    var scheduler: Scheduler
    var fleet: [FleetNode] = []
    var now: UInt64 = 1_000
    var nextID: UInt64 = 0
    /// Requests answered and not yet finished, by proxy and id.
    var live: [(proxy: Int, id: UInt64, request: RouteRequest)] = []
    var tickets: [(proxy: Int, ticket: UInt64, request: RouteRequest)] = []

    init(settings: UInt8) {
        var s = Scheduler.Settings()
        s.maxTicketsPerModel = settings & 1 == 0 ? 64 : 0
        s.maxConcurrencyPerModel = settings & 2 == 0 ? nil : Int(settings >> 4) + 1
        s.maxInFlightPerClient = settings & 4 == 0 ? nil : 2
        s.prewarm = settings & 8 == 0
        scheduler = Scheduler(settings: s)
    }

    mutating func heartbeat(_ f: inout FuzzBytes) {
        let id = "n\(f.byte() % 4)"
        var loaded: [Heartbeat.LoadedModel] = []
        var models: [Heartbeat.Model] = []
        for name in Self.models where f.byte() & 1 == 1 {
            models.append(Heartbeat.Model(name: name, sizeBytes: f.int(in: HeartbeatRanges.bytes)))
            if f.byte() & 1 == 1 {
                loaded.append(Heartbeat.LoadedModel(name: name, sizeBytes: f.int(in: HeartbeatRanges.bytes), vramBytes: f.int(in: HeartbeatRanges.bytes),
                                                    contextLength: f.int(in: HeartbeatRanges.contextLength)))
            }
        }
        var backend = Heartbeat.Backend(kind: .ollama, url: "", address: "127.0.0.1:\(1 + Int(f.byte()))", reachable: f.byte() != 0,
                                        models: models, loaded: loaded, parallel: f.byte() & 1 == 0 ? nil : f.int(in: 1...1024))
        backend.localOnly = false
        var beat = Heartbeat(nodeID: id, sentAtMilliseconds: f.int(in: HeartbeatRanges.sentAt), cpuCores: f.int(in: HeartbeatRanges.cores),
                             cpuUtilization: f.share(), memoryTotalBytes: f.int(in: HeartbeatRanges.bytes),
                             memoryAvailableBytes: f.int(in: HeartbeatRanges.bytes), backends: [backend])
        beat.intervalMilliseconds = f.byte() & 1 == 0 ? nil : f.int(in: Heartbeat.intervalRange)
        if f.byte() & 1 == 1 {
            beat.capacity = Heartbeat.Capacity(availability: f.share(), memoryCeilingBytes: f.int(in: HeartbeatRanges.bytes), learnedHours: f.int(in: 0...168),
                                               hourLearned: f.byte() & 1 == 1)
        }
        var gpu = Telemetry.GPU(vendor: "nvidia", name: "g", memoryUsedBytes: f.int(in: HeartbeatRanges.bytes), memoryTotalBytes: f.int(in: HeartbeatRanges.bytes))
        gpu.temperatureCelsius = f.byte() == 0 ? f.double() : Double(f.byte())
        beat.telemetry.gpus = f.byte() & 1 == 0 ? [] : [gpu]
        // What control does with a heartbeat: validate whole, or refuse.
        guard (try? beat.validate()) != nil else { return }
        if let i = fleet.firstIndex(where: { $0.id == id }) {
            fleet[i].heartbeat = beat
            fleet[i].lastSeenMilliseconds = now
        } else {
            fleet.append(FleetNode(heartbeat: beat, lastSeenMilliseconds: now, firstSeenMilliseconds: now, status: .online))
        }
        var actions: [SchedulerAction] = []
        scheduler.fleetChanged(fleet: fleet, now: now, into: &actions)
        take(actions)
    }

    mutating func route(_ f: inout FuzzBytes) {
        nextID += 1
        let proxy = Int(f.byte() % 2)
        let model = f.byte() < 200 ? Self.models[Int(f.byte()) % Self.models.count] : "unknown-\(f.u64())"
        var request = RouteRequest(id: nextID, api: f.byte() & 1 == 0 ? .ollama : .openai, path: "/api/chat", model: model, stream: f.byte() & 1 == 0,
                                   estimatedTokens: f.int(in: RequestLimits.estimatedTokens), numCtx: f.byte() & 1 == 0 ? nil : f.int(in: RequestLimits.numCtx),
                                   client: "c\(f.byte() % 4)", maxTokens: f.byte() & 1 == 0 ? nil : f.int(in: 1...RequestLimits.maxTokens.upperBound),
                                   think: f.byte() & 1 == 0 ? nil : true)
        if f.byte() & 1 == 1 { request.fallbacks = [Self.models[Int(f.byte()) % Self.models.count]] }
        if f.byte() & 1 == 1 { request.tags = ["t"] }
        if f.byte() & 1 == 1 { request.session = ContentHash(f.u64()) }
        // What control's reader does: a ROUTE outside the limits is refused.
        guard RequestLimits.check(request) == nil else { return }
        var actions: [SchedulerAction] = []
        scheduler.route(request, from: ProxyKey(raw: proxy), fleet: fleet, now: now, into: &actions)
        let answered = actions.contains {
            switch $0 {
            case let .routed(p, a): p.raw == proxy && a.id == request.id
            case let .refused(p, r): p.raw == proxy && r.id == request.id
            case let .queued(p, q): p.raw == proxy && q.id == request.id
            default: false
            }
        }
        precondition(answered, "a ROUTE was neither answered, refused nor queued")
        take(actions, request: request)
    }

    mutating func result(_ f: inout FuzzBytes) {
        let fromTicket = f.byte() & 1 == 1 && !tickets.isEmpty
        var result = RouteResult(id: 0, node: "n\(f.byte() % 4)", model: Self.models[Int(f.byte()) % Self.models.count],
                                 outcome: RouteResult.Outcome.allCases[Int(f.byte()) % RouteResult.Outcome.allCases.count],
                                 status: f.byte() & 3 == 0 ? f.int() : 200, ttftMilliseconds: f.milliseconds(), durationMilliseconds: f.milliseconds(),
                                 promptTokens: f.int(in: 0...100_000), completionTokens: f.int(in: 0...100_000), bytes: f.int(in: 0...1 << 30),
                                 retries: f.int(in: 0...3), error: nil, local: f.byte() == 0)
        result.backendPromptMilliseconds = f.byte() & 1 == 0 ? nil : f.milliseconds()
        result.backendDecodeMilliseconds = f.byte() & 1 == 0 ? nil : f.milliseconds()
        result.backendLoadMilliseconds = f.byte() & 1 == 0 ? nil : f.milliseconds()
        result.upstreamMilliseconds = f.byte() & 1 == 0 ? nil : f.milliseconds()
        result = result.sanitized // what control's reader does
        var actions: [SchedulerAction] = []
        if fromTicket {
            let t = tickets.remove(at: Int(f.byte()) % tickets.count)
            nextID += 1
            var request = t.request
            request.id = nextID
            result.id = nextID
            if f.byte() & 1 == 0 {
                scheduler.ticketResult(TicketUse(ticket: t.ticket, request: request), result, from: ProxyKey(raw: t.proxy), fleet: fleet, now: now,
                                       into: &actions)
            } else {
                scheduler.ticketRetry(TicketUse(ticket: t.ticket, request: request),
                                      RouteRetry(id: nextID, node: result.node, reason: "fuzz", upstreamStatus: f.byte() & 1 == 0 ? 503 : nil),
                                      from: ProxyKey(raw: t.proxy), fleet: fleet, now: now, into: &actions)
                live.append((t.proxy, nextID, request))
            }
        } else if !live.isEmpty {
            let r = live.remove(at: Int(f.byte()) % live.count)
            result.id = r.id
            switch f.byte() % 4 {
            case 0:
                scheduler.retry(RouteRetry(id: r.id, node: result.node, reason: "fuzz", upstreamStatus: f.byte() & 1 == 0 ? 503 : nil),
                                from: ProxyKey(raw: r.proxy), fleet: fleet, now: now, into: &actions)
                live.append(r)
            case 1:
                scheduler.started(RouteStarted(id: r.id, status: f.int(in: 0...999), upstreamTtftMilliseconds: ResultLimits.milliseconds(f.milliseconds())),
                                  from: ProxyKey(raw: r.proxy), fleet: fleet, now: now, into: &actions)
                live.append(r)
            case 2:
                scheduler.cancel(id: r.id, from: ProxyKey(raw: r.proxy), fleet: fleet, now: now, into: &actions)
            default:
                scheduler.result(result, from: ProxyKey(raw: r.proxy), fleet: fleet, now: now, into: &actions)
            }
        } else {
            scheduler.result(result, from: ProxyKey(raw: 0), fleet: fleet, now: now, into: &actions)
        }
        take(actions)
    }

    mutating func returnTickets(_ f: inout FuzzBytes) {
        guard !tickets.isEmpty else { return }
        let t = tickets.remove(at: Int(f.byte()) % tickets.count)
        var actions: [SchedulerAction] = []
        scheduler.ticketsReturned([t.ticket], from: ProxyKey(raw: t.proxy), fleet: fleet, now: now, into: &actions)
        take(actions)
    }

    mutating func pass(_ f: inout FuzzBytes) {
        now = now.addingSaturated(UInt64(f.byte()) * UInt64(f.byte() & 1 == 0 ? 10 : 1_000))
        for i in fleet.indices where f.byte() & 3 == 0 { fleet[i].status = .offline }
        var actions: [SchedulerAction] = []
        scheduler.expire(now: now, fleet: fleet, into: &actions)
        take(actions)
        if f.byte() == 7 {
            var gone: [SchedulerAction] = []
            let proxy = Int(f.byte() % 2)
            scheduler.proxyGone(ProxyKey(raw: proxy), fleet: fleet, now: now, into: &gone)
            live.removeAll { $0.proxy == proxy }
            tickets.removeAll { $0.proxy == proxy }
            take(gone)
        }
    }

    /// Keeps track of what the scheduler answered.
    mutating func take(_ actions: [SchedulerAction], request: RouteRequest? = nil) {
        for action in actions {
            switch action {
            case let .routed(proxy, answer):
                if !live.contains(where: { $0.proxy == proxy.raw && $0.id == answer.id }) {
                    live.append((proxy.raw, answer.id, request ?? RouteRequest(id: answer.id, api: .ollama, path: "/api/chat", model: answer.model, stream: false)))
                }
            case let .refused(proxy, refusal):
                live.removeAll { $0.proxy == proxy.raw && $0.id == refusal.id }
            case let .granted(proxy, granted):
                for t in granted {
                    tickets.append((proxy.raw, t.ticket, RouteRequest(id: 0, api: t.api, path: "/api/chat", model: t.model, stream: false)))
                }
            case let .revoked(proxy, ids):
                tickets.removeAll { $0.proxy == proxy.raw && ids.contains($0.ticket) }
            default:
                break
            }
        }
    }

    /// What must hold after every step.
    func check() {
        for node in fleet {
            for backend in node.heartbeat.backends {
                for model in backend.models {
                    precondition(scheduler.inFlight(node: node.id, model: model.name) >= 0, "negative in-flight")
                    precondition(scheduler.limit(node: node.id, model: model.name) >= 1, "a limit under 1")
                }
            }
            precondition(scheduler.inFlight(node: node.id) >= 0, "negative node in-flight")
        }
        precondition(scheduler.inFlightCount >= 0 && scheduler.queueLength >= 0)
        precondition(scheduler.demandCount <= Scheduler.maxDemands, "demands unbounded")
    }

    static func run(_ bytes: UnsafeRawBufferPointer) {
        var f = FuzzBytes(bytes: bytes)
        var machine = DecideFuzz(settings: f.byte())
        var steps = 0
        while !f.isEmpty, steps < 400 {
            steps += 1
            switch f.byte() % 6 {
            case 0: machine.heartbeat(&f)
            case 1, 2: machine.route(&f)
            case 3: machine.result(&f)
            case 4: machine.returnTickets(&f)
            default: machine.pass(&f)
            }
            machine.check()
        }
    }
}
