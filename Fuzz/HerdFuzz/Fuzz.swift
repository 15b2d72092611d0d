import HerdHTTP
import HerdJSON
import HerdWire

// libFuzzer entry point for herd's parsers of outside bytes (built only with
// HERD_FUZZ=1 and -sanitize=fuzzer: see Fuzz/run.sh). One binary, four
// targets, chosen by HERD_FUZZ_TARGET:
//   http       the HTTP/1.1 request parser (every client byte)
//   route      the route-field JSON scan of a request body (top-level keys,
//              skipped and hashed spans)
//   frame      the control-frame decoder (the proxy ↔ control socket)
//   heartbeat  the heartbeat decoder (what any machine may POST to control)
//   decide     decoded heartbeats, ROUTEs, RESULTs (with a backend's timings),
//              RETRYs, tickets and time through the scheduler and scorer
//              (DecideFuzz.swift), checking its invariants
// A crash, a sanitizer report, a leak or a timeout is a finding; every input
// must end in a value or a clean error.

private let target: String = {
    guard let raw = getenv("HERD_FUZZ_TARGET") else { return "http" }
    return String(cString: raw)
}()

@_silgen_name("getenv")
private func getenv(_ name: UnsafePointer<CChar>) -> UnsafeMutablePointer<CChar>?

/// Accepts every head and body: the parser's own limits are what is fuzzed.
private final class AcceptingDelegate: HTTPParserDelegate {
    var messages = 0
    func parser(_ parser: HTTPParser, didParseHead head: HTTPParsedHead) -> HTTPHeadDisposition {
        _ = head.headers["content-type"]
        return .readBody
    }
    func parser(_ parser: HTTPParser, didParseBody bytes: UnsafeRawBufferPointer) -> Bool { true }
    func parserDidCompleteMessage(_ parser: HTTPParser) { messages += 1 }
}

private let routeKeys: JSONKeys = ["model", "stream", "fallback_models", "options", "metadata", "user", "max_tokens",
                                   "max_completion_tokens", "think", "system", "keep_alive", "images"]
private let routeSpans: JSONKeys = ["messages", "tools"]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    switch target {
    case "http":
        // Fed whole, then again split in two (a request arrives in pieces).
        for split in [size, size / 2] {
            let delegate = AcceptingDelegate()
            let parser = HTTPParser(kind: .request)
            parser.delegate = delegate
            for piece in [0..<split, split..<size] where !piece.isEmpty {
                guard case .needMore = parser.feed(UnsafeRawBufferPointer(rebasing: bytes[piece])) else { break }
            }
            _ = parser.finish()
        }
    case "route":
        if let picked = try? JSONValue.pickTopLevel(bytes, keys: routeKeys, spans: routeSpans) {
            _ = picked[0]?.stringValue
            for range in picked.spans.compactMap({ $0 }) {
                precondition(range.lowerBound >= 0 && range.upperBound <= size, "a span outside the body")
                _ = JSONValue.arrayElementSpans(bytes, in: range, limit: 64)
            }
        }
    case "frame":
        // Every frame decoded as its type says (what control and the proxy do).
        var decoder = ControlFrameDecoder()
        decoder.append(bytes)
        try? decoder.forEachFrame { frame throws(ControlProtocolError) in
            switch frame.type {
            case .hello, .helloOK: _ = try? frame.json()
            case .snapshot: _ = (try? frame.json()).flatMap { try? RoutingSnapshot(json: $0) }
            case .snapshotDelta:
                // Applied to a held snapshot, as the proxy does.
                if let json = try? frame.json(), let delta = try? SnapshotDelta(json: json) {
                    _ = try? RoutingSnapshot(version: delta.base, nodes: [.init(id: "n", status: "online", backends: [])]).applying(delta)
                }
            case .route: _ = try? frame.decode(RouteAsk.self)
            case .routeOK: _ = try? frame.decode(RouteAnswer.self)
            case .routeError: _ = try? frame.decode(RouteRefusal.self)
            case .retry: _ = try? frame.decode(RetryMessage.self)
            case .result: _ = try? frame.decode(ResultBatch.self)
            case .grant: _ = try? frame.decode(TicketGrant.self)
            case .ticketReturn, .revoke: _ = try? frame.decode(TicketList.self)
            case .cancel: _ = try? frame.decode(RouteCancel.self)
            case .started: _ = try? frame.decode(RouteStarted.self)
            case .queued: _ = try? frame.decode(RouteQueued.self)
            case .cacheStats: _ = try? frame.decode(CacheStats.self)
            case .pullClaim: _ = try? frame.decode(PullClaim.self)
            case .pullAnswer: _ = try? frame.decode(PullAnswer.self)
            case .pullDone: _ = try? frame.decode(PullDone.self)
            }
            return true
        }
    case "decide":
        DecideFuzz.run(bytes)
    case "heartbeat":
        if let json = try? JSONValue.parse(bytes), var heartbeat = try? Heartbeat(json: json) {
            try? heartbeat.validate()
            _ = Heartbeat.isValidNodeID(heartbeat.nodeID)
        }
    default:
        fatalError("HERD_FUZZ_TARGET must be http, route, frame, heartbeat or decide")
    }
    return 0
}

// SwiftPM names an executable's entry point `<module>_main` (and aliases `main`
// to it): it hands over to libFuzzer's driver with the callback above.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Int32

@_cdecl("herd_fuzz_main")
public func herdFuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzz(data, size) }
}
