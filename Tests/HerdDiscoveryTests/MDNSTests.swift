import HerdBounds
import Glibc
import Synchronization
import Testing
import HerdRuntime
import HerdTestSupport
@testable import HerdDiscovery

/// Collects mDNS events (loop thread) for the test thread.
final class MDNSRecorder: Sendable {
    private let state = Mutex<(events: [String], resolved: [MDNSService])>(([], []))
    func add(_ text: String, _ service: MDNSService? = nil) {
        state.withLock { state in
            state.events.append(text)
            if let service { state.resolved.append(service) }
        }
    }
    func snapshot() -> ([String], [MDNSService]) {
        state.withLock { ($0.events, $0.resolved) }
    }
    /// Waits until `predicate` holds over the events (avahi-daemon is a real
    /// process: this waits for a condition), up to `seconds`.
    func wait(seconds: Double, _ predicate: ([String], [MDNSService]) -> Bool) -> Bool {
        waitUntil(seconds: seconds) {
            let (e, r) = snapshot()
            return predicate(e, r)
        }
    }
}

/// Publish → browse → resolve through the real avahi-daemon that `.ci/test.sh`
/// starts confined to the loopback interface.
@Suite struct MDNSTests {
    @Test func publishBrowseResolveThroughAvahiDaemon() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let name = "herd-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let type = "_herdtest._tcp"
        let recorder = MDNSRecorder()
        let holder = MDNSHolder()
        try thread.sync {
            let poll = AvahiLoopPoll(loop: thread.loop)
            holder.poll = poll
            let publisher = MDNSPublisher(poll: poll, name: name, type: type, port: 18_765,
                                          txt: [("version", HerdVersion.current), ("fleet", "test-fleet")]) { event in
                recorder.add("publish \(event)")
            }
            try publisher.start()
            holder.publisher = publisher
            let browser = MDNSBrowser(poll: poll, type: type) { event in
                switch event {
                case let .resolved(service): recorder.add("resolved \(service.name)", service)
                case let .removed(name): recorder.add("removed \(name)")
                case let .failed(message): recorder.add("failed \(message)")
                }
            }
            try browser.start()
            holder.browser = browser
        }
        let found = recorder.wait(seconds: 10) { _, services in services.contains { $0.name == name } }
        #expect(found, "events: \(recorder.snapshot().0)")
        let service = recorder.snapshot().1.first { $0.name == name }
        #expect(service?.port == 18_765)
        #expect(service?.txt["fleet"] == "test-fleet")
        #expect(service?.txt["version"] == HerdVersion.current)
        #expect(service?.addresses.contains("127.0.0.1") == true, "addresses: \(service?.addresses ?? [])")
        #expect(recorder.snapshot().0.contains { $0.hasPrefix("publish established") })

        // Withdrawing the service is seen by the browser.
        try thread.sync { holder.publisher?.stop() }
        let removed = recorder.wait(seconds: 10) { events, _ in events.contains("removed \(name)") }
        #expect(removed)
        try thread.sync {
            holder.browser?.stop()
            holder.browser = nil
            holder.publisher = nil
        }
    }
}

final class MDNSHolder: @unchecked Sendable {
    var poll: AvahiLoopPoll?
    var publisher: MDNSPublisher?
    var browser: MDNSBrowser?
}
