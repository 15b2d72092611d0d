import HerdRuntime
import HerdWire
import Testing
@testable import herd_proxy

/// The proxy's routing of one request as a value: tickets, control's
/// answers, refusals, control lost, retries and results, with the ticket
/// reaching control exactly once whatever happens.
@Suite struct RouteMachineTests {
    static let request = RouteRequest(id: 7, api: .ollama, path: "/api/chat", model: "m", stream: false)
    static let ticket = RouteTicket(ticket: 42, api: .ollama, model: "m", node: "a", upstream: "127.0.0.1:1", backend: .ollama, servedModel: "m",
                                    reason: "hot", score: "", ttlMilliseconds: 250, exclusive: false)
    static func answer(_ node: String, retries: Int = 0) -> RouteAnswer {
        RouteAnswer(id: 7, node: node, upstream: "127.0.0.1:2", backend: .ollama, model: "m", retries: retries)
    }
    static let result = RouteResult(id: 7, node: "b", model: "m", outcome: .ok, status: 200, error: nil, local: false)

    @Test func aTicketIsDeliveredByTheSamePathAsControlsAnswer() {
        var byTicket = RouteMachine(request: Self.request)
        let ticketed = byTicket.begin(ticket: Self.ticket, controlAway: nil)
        #expect(ticketed == [.deliver(Self.ticket.answer(for: 7))])
        var asked = RouteMachine(request: Self.request)
        #expect(asked.begin(ticket: nil, controlAway: nil) == [.sendRoute])
        #expect(asked.answered(Self.answer("b")) == [.remember(node: "b"), .deliver(Self.answer("b"))])
        #expect(asked.answered(Self.answer("c")).isEmpty, "one answer per question")
    }

    @Test func aTicketedFailureWithControlAwayGivesTheTicketBack() {
        var m = RouteMachine(request: Self.request)
        _ = m.begin(ticket: Self.ticket, controlAway: nil)
        let actions = m.failed(node: "a", reason: "status 500", status: 500, controlAway: "control did not answer within 1000 ms")
        #expect(actions == [.returnTicket(42), .routeLocally(excluded: ["a"], retries: 1)])
        var answer = Self.answer("b")
        answer.reason = "x"
        guard case let .deliver(local)? = m.localAnswer(answer).first else { Issue.record("no delivery"); return }
        #expect(local.reason == "local policy (control did not answer within 1000 ms)" && local.retries == 1)
        let end = m.finished(Self.result)
        guard case let .sendResult(result, ticket)? = end.first else { Issue.record("no result"); return }
        #expect(ticket == nil && result.local && result.retries == 1, "the ticket went back once, not again")
    }

    @Test func aTicketedFailureWithControlThereTravelsInTheRetry() {
        var m = RouteMachine(request: Self.request)
        _ = m.begin(ticket: Self.ticket, controlAway: nil)
        let retry = m.failed(node: "a", reason: "connect failed", status: nil, controlAway: nil)
        #expect(retry == [.sendRetry(RouteRetry(id: 7, node: "a", reason: "connect failed"), ticket: TicketUse(ticket: 42, request: Self.request))])
        #expect(m.answered(Self.answer("b", retries: 1)) == [.remember(node: "b"), .deliver(Self.answer("b", retries: 1))])
        #expect(m.finished(Self.result) == [.sendResult({ var r = Self.result; r.retries = 1; return r }(), ticket: nil)])
    }

    @Test func aRetryThatCannotBeSentReturnsItsTicket() {
        var m = RouteMachine(request: Self.request)
        _ = m.begin(ticket: Self.ticket, controlAway: nil)
        guard case let .sendRetry(_, ticket)? = m.failed(node: "a", reason: "x", status: nil, controlAway: nil).first else {
            Issue.record("no retry")
            return
        }
        #expect(m.retryNotSent(ticket: ticket, reason: "control unreachable") == [.returnTicket(42), .routeLocally(excluded: ["a"], retries: 1)])
    }

    @Test func controlLostAndLocalRetriesAreCountedHere() {
        var m = RouteMachine(request: Self.request)
        #expect(m.begin(ticket: nil, controlAway: nil) == [.sendRoute])
        #expect(m.controlLost(reason: "control went away") == [.routeLocally(excluded: [], retries: 0)])
        _ = m.localAnswer(Self.answer("a"))
        #expect(m.failed(node: "a", reason: "x", status: nil, controlAway: nil) == [.routeLocally(excluded: ["a"], retries: 1)],
                "once local, the rest is local: control is not asked again")
        #expect(m.localRefusal(RouteRefusal(id: 7, code: .noNode, message: "none")) == [.refuse(RouteRefusal(id: 7, code: .noNode, message: "none"))])
        #expect(m.localAnswer(Self.answer("b")).isEmpty, "nothing after a refusal")
        var away = RouteMachine(request: Self.request)
        #expect(away.begin(ticket: nil, controlAway: "control unreachable") == [.routeLocally(excluded: [], retries: 0)])
    }

    @Test func aCancelledRequestGetsNothingMoreAndItsTicketStillReturns() {
        var asking = RouteMachine(request: Self.request)
        _ = asking.begin(ticket: nil, controlAway: nil)
        #expect(asking.cancel() == [.sendCancel])
        #expect(asking.answered(Self.answer("a")).isEmpty && asking.controlLost(reason: "x").isEmpty)
        var ticketed = RouteMachine(request: Self.request)
        _ = ticketed.begin(ticket: Self.ticket, controlAway: nil)
        _ = ticketed.cancel()
        #expect(ticketed.finished(Self.result) == [.sendResult(Self.result, ticket: TicketUse(ticket: 42, request: Self.request))])
    }

    /// Whatever the order of events, a spent ticket reaches control exactly
    /// once (in a RETRY that was sent, a RESULT or a RETURN) by the time the
    /// request is reported, and nothing is delivered after it finished.
    @Test(arguments: 0..<300) func aSpentTicketReachesControlExactlyOnce(seed: Int) {
        var random = SeededRandom(seed: UInt64(seed) &+ 1)
        var m = RouteMachine(request: Self.request)
        var heard = 0
        var finishedAt: Int?
        func count(_ actions: [RouteMachine.Action]) {
            for action in actions {
                switch action {
                case let .sendRetry(_, ticket): heard += ticket == nil ? 0 : 1
                case let .sendResult(_, ticket): heard += ticket == nil ? 0 : 1
                case .returnTicket: heard += 1
                case .deliver, .refuse: #expect(finishedAt == nil, "seed \(seed): delivered after the end")
                default: break
                }
            }
        }
        count(m.begin(ticket: Self.ticket, controlAway: nil))
        for i in 0..<Int(random.next() % 14) {
            let away: String? = random.next() % 2 == 0 ? nil : "control unreachable"
            var step: [RouteMachine.Action]
            switch random.next() % 6 {
            case 0: step = m.failed(node: "n\(random.next() % 3)", reason: "x", status: nil, controlAway: away)
            case 1: step = m.answered(Self.answer("b"))
            case 2: step = m.controlLost(reason: "gone")
            case 3: step = m.localAnswer(Self.answer("c"))
            case 4: step = m.localRefusal(RouteRefusal(id: 7, code: .noNode, message: "none"))
            default: step = m.cancel()
            }
            // The driver: a RETRY that could not be sent goes back to the machine at once.
            if case let .sendRetry(_, ticket)? = step.first, random.next() % 4 == 0 {
                step = m.retryNotSent(ticket: ticket, reason: "gone")
            }
            count(step)
            if m.phase == .finished, finishedAt == nil { finishedAt = i }
        }
        finishedAt = finishedAt ?? -1
        count(m.finished(Self.result))
        #expect(heard == 1, "seed \(seed)")
        #expect(m.phase == .finished)
    }
}
