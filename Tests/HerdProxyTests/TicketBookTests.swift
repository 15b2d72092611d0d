import HerdWire
import Testing
@testable import herd_proxy

/// The proxy's route tickets, in virtual time.
@Suite struct TicketBookTests {
    static func ticket(_ n: UInt64, node: String = "a", model: String = "m:1b", exclusive: Bool = true, ttl: UInt64 = 250) -> RouteTicket {
        RouteTicket(ticket: n, api: .ollama, model: model, node: node, upstream: "127.0.0.1:1", backend: .ollama, servedModel: model,
                    reason: "hot", score: "ect_ms=1", ttlMilliseconds: ttl, exclusive: exclusive)
    }

    static func request(_ id: UInt64, model: String = "m:1b", api: ClientAPI = .ollama, tags: [String] = [], numCtx: Int? = nil,
                        session: ContentHash? = nil) -> RouteRequest {
        RouteRequest(id: id, api: api, path: "/api/chat", model: model, stream: false, tags: tags, numCtx: numCtx, session: session)
    }

    @Test func aTicketIsSpentOnceForItsModelAndAPIOnly() {
        var book = TicketBook()
        book.grant([Self.ticket(1), Self.ticket(2)], now: 0)
        #expect(book.spend(for: Self.request(10, model: "other"), now: 1) == nil)
        #expect(book.spend(for: Self.request(10, api: .openai), now: 1) == nil)
        #expect(book.spend(for: Self.request(10, tags: ["gpu"]), now: 1) == nil, "tags: control decides")
        #expect(book.spend(for: Self.request(10, numCtx: 8192), now: 1) == nil, "num_ctx: control decides")
        #expect(book.spend(for: Self.request(10), now: 1)?.ticket == 1)
        #expect(book.spend(for: Self.request(11), now: 1)?.ticket == 2)
        #expect(book.spend(for: Self.request(12), now: 1) == nil, "each once")
        #expect(book.count == 0)
    }

    @Test func aTicketServesOnlyTheWorkItWasDecidedFor() {
        var book = TicketBook()
        var embed = Self.ticket(1)
        embed.work = .embed
        book.grant([embed, Self.ticket(2)], now: 0)
        var transcription = Self.request(10)
        transcription.path = "/v1/audio/transcriptions"
        #expect(book.spend(for: transcription, now: 1) == nil, "no speech-to-text ticket")
        var embedding = Self.request(11)
        embedding.path = "/api/embed"
        #expect(book.spend(for: embedding, now: 1)?.ticket == 1)
        #expect(book.spend(for: embedding, now: 1) == nil, "the chat's ticket is not an embedding's")
        #expect(book.spend(for: Self.request(12), now: 1)?.ticket == 2)
        // On the wire: the kind travels with the ticket.
        let decoded = embed.binary.withUnsafeBytes { raw in try? ControlFrameBody(type: .grant, bytes: raw).decode(RouteTicket.self) }
        #expect(decoded?.work == .embed && decoded == embed)
    }

    @Test func ticketsExpireAtTheirTimeAndAreReturnedNotSpent() {
        var book = TicketBook()
        book.grant([Self.ticket(1, ttl: 250), Self.ticket(2, ttl: 500)], now: 1_000)
        #expect(book.nextExpiry == 1_250)
        #expect(book.expire(now: 1_249).isEmpty, "not a millisecond early")
        #expect(book.spend(for: Self.request(1), now: 1_250)?.ticket == 2, "an expired one is never spent")
        #expect(book.expire(now: 1_250) == [1])
        #expect(book.count == 0 && book.nextExpiry == nil)
    }

    @Test func revokedTicketsStillHeldAreReturnedAndOthersAreNot() {
        var book = TicketBook()
        book.grant([Self.ticket(1), Self.ticket(2), Self.ticket(3)], now: 0)
        _ = book.spend(for: Self.request(1), now: 1)
        #expect(book.revoke([1, 2, 9]) == [2], "1 was spent (its RESULT will say so); 9 was never here")
        #expect(book.count == 1)
        book.removeAll()
        #expect(book.count == 0 && book.spend(for: Self.request(2), now: 1) == nil)
    }

    @Test func aConversationGoesBackToItsNodeOrAsksControl() {
        var book = TicketBook()
        let chat = ContentHash(42)
        book.grant([Self.ticket(1, node: "a", exclusive: false), Self.ticket(2, node: "b", exclusive: false)], now: 0)
        // A new conversation takes any ticket; where it went is remembered.
        let first = book.spend(for: Self.request(1, session: chat), now: 1)
        #expect(first?.node == "a")
        book.routed(Self.request(1, session: chat), to: "a")
        // Its next turn: only a ticket for "a" will do; "b"'s is not spent, control is asked.
        #expect(book.spend(for: Self.request(2, session: chat), now: 1) == nil)
        #expect(book.count == 1)
        // A control answer moves it; then "b"'s ticket fits.
        book.routed(Self.request(2, session: chat), to: "b")
        #expect(book.spend(for: Self.request(3, session: chat), now: 1)?.node == "b")
        // An exclusive ticket (one node serves the model) serves any conversation.
        book.grant([Self.ticket(3, node: "c", exclusive: true)], now: 1)
        #expect(book.spend(for: Self.request(4, session: chat), now: 1)?.ticket == 3)
    }
}
