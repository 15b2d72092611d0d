import Glibc
import HerdTestSupport
import Testing
@testable import HerdRuntime

/// An echo peer for stream tests.
final class EchoPeer: StreamConnectionDelegate {
    func connection(_ connection: StreamConnection, didRead bytes: UnsafeRawBufferPointer) { connection.write(bytes) }
    func connection(_ connection: StreamConnection, didEndWith error: UVError?) { connection.close() }
}

/// Collects what a client stream receives.
final class ReceivingPeer: StreamConnectionDelegate, @unchecked Sendable {
    var received: [UInt8] = []
    var ended = false
    let done = SyncFlag()
    let expected: Int
    init(expected: Int) { self.expected = expected }
    func connection(_ connection: StreamConnection, didRead bytes: UnsafeRawBufferPointer) {
        received.append(contentsOf: bytes)
        if received.count >= expected { done.set() }
    }
    func connection(_ connection: StreamConnection, didEndWith error: UVError?) {
        ended = true
        connection.close()
        done.set()
    }
}

final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

@Suite struct RuntimeTests {
    @Test func errorsCarryLibuvNames() throws {
        let error = UVError(code: UVError.eofCode, operation: "read")
        #expect(error.name == "EOF")
        #expect(error.isEOF)
        #expect(error.description.hasPrefix("read: EOF"))
        #expect(throws: UVError.self) { try UVError.check(UVError.cancelledCode, "op") }
        #expect(try UVError.check(3, "op") == 3)
    }

    @Test func timersFireInOrderAndStop() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let fired = Box<[String]>([])
        let done = SyncFlag()
        try thread.sync {
            let late = LoopTimer(loop: thread.loop)
            let early = LoopTimer(loop: thread.loop)
            let stopped = LoopTimer(loop: thread.loop)
            let repeating = LoopTimer(loop: thread.loop)
            var ticks = 0
            late.start(after: 40) { fired.value.append("late"); late.close(); done.set() }
            early.start(after: 10) { fired.value.append("early"); early.close() }
            stopped.start(after: 5) { fired.value.append("stopped") }
            stopped.stop()
            repeating.start(after: 1, repeating: 5) {
                ticks += 1
                if ticks == 3 { fired.value.append("tick3"); repeating.close() }
            }
            thread.loop.deferToNextTick { fired.value.append("deferred") }
        }
        #expect(done.wait(milliseconds: 2000))
        let order = try thread.sync { fired.value }
        #expect(order == ["deferred", "early", "tick3", "late"])
    }

    @Test func offloadRunsOffTheLoopAndReturnsOnIt() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let result = Box<(Int, Bool, Bool)?>(nil)
        let done = SyncFlag()
        try thread.sync {
            let loopThread = pthread_self()
            thread.loop.offload({ () -> (Int, Bool) in
                (21 * 2, pthread_equal(pthread_self(), loopThread) != 0)
            }, then: { outcome in
                let (value, onLoopThread) = try! outcome.get()
                result.value = (value, onLoopThread, pthread_equal(pthread_self(), loopThread) != 0)
                done.set()
            })
        }
        #expect(done.wait(milliseconds: 2000))
        let (value, workOnLoop, completionOnLoop) = try #require(result.value)
        #expect(value == 42)
        #expect(!workOnLoop)
        #expect(completionOnLoop)
    }

    @Test func offloadDeliversThrownErrors() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let failed = SyncFlag()
        try thread.sync {
            thread.loop.offload({ () throws -> Int in throw TestError("boom") }, then: { outcome in
                if case .failure = outcome { failed.set() }
            })
        }
        #expect(failed.wait(milliseconds: 2000))
    }

    @Test func signalWatcherSeesSIGUSR1() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let seen = SyncFlag()
        let watcher = try thread.sync { try SignalWatcher(loop: thread.loop, signal: SIGUSR1) { _ in seen.set() } }
        kill(getpid(), SIGUSR1)
        #expect(seen.wait(milliseconds: 2000))
        try thread.sync { watcher.close() }
    }

    @Test func executeIsSafeFromManyThreads() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let counter = Box(0)
        let senders = try (0..<4).map { _ in try LoopThread() }
        for sender in senders {
            sender.loop.execute { for _ in 0..<1000 { thread.loop.execute { counter.value += 1 } } }
        }
        for sender in senders { sender.shutdown() }
        let total = try thread.sync { counter.value }
        #expect(total == 4000)
    }

    @Test func unixSocketStreamsEcho() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let path = "/tmp/herd-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let peer = ReceivingPeer(expected: 11)
        let listener = try thread.sync {
            try StreamListener(loop: thread.loop, path: path) { connection in
                connection.delegate = EchoPeer()
                connection.startReading()
            }
        }
        try thread.sync {
            let client = StreamConnection(loop: thread.loop, kind: .pipe)
            client.delegate = peer
            client.connect(toPath: path) { error in
                #expect(error == nil)
                client.startReading()
                client.write(Array("hello ".utf8))
                client.write(Array("world".utf8))
            }
        }
        #expect(peer.done.wait(milliseconds: 2000))
        #expect(try thread.sync { String(decoding: peer.received, as: UTF8.self) } == "hello world")
        // A second listener on a live socket is refused; a stale one is replaced.
        #expect(throws: UVError.self) { try thread.sync { try StreamListener(loop: thread.loop, path: path) { $0.close() } } }
        try thread.sync { listener.close() }
        #expect(access(path, F_OK) != 0, "the socket file is removed on close")
    }

    @Test func staleUnixSocketFileIsReplaced() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let path = "/tmp/herd-stale-\(getpid()).sock"
        // A socket file nobody listens on (a crashed process leaves one).
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(fd)
        #expect(access(path, F_OK) == 0)
        let listener = try thread.sync { try StreamListener(loop: thread.loop, path: path) { $0.close() } }
        try thread.sync { listener.close() }
    }

    @Test func tcpOverIPv6Loopback() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let peer = ReceivingPeer(expected: 4)
        let holder = Box<StreamListener?>(nil)
        let port = try thread.sync {
            let listener = try StreamListener(loop: thread.loop, address: SocketAddress(host: "::1", port: 0)) { connection in
                connection.delegate = EchoPeer()
                connection.startReading()
            }
            holder.value = listener
            return listener.localAddress!.port
        }
        try thread.sync {
            let client = StreamConnection(loop: thread.loop, kind: .tcp)
            client.delegate = peer
            client.connect(to: try SocketAddress(host: "[::1]", port: port)) { error in
                #expect(error == nil)
                #expect(client.peerAddress?.host == "::1")
                client.startReading()
                client.write(Array("ping".utf8))
            }
        }
        #expect(peer.done.wait(milliseconds: 2000))
        #expect(try thread.sync { peer.received } == Array("ping".utf8))
        try thread.sync { holder.value?.close() }
    }

    @Test func reusePortLetsTwoListenersShareAPort() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let (first, second) = try thread.sync {
            let a = try StreamListener(loop: thread.loop, address: SocketAddress(host: "127.0.0.1", port: 0), reusePort: true) { $0.close() }
            let port = a.localAddress!.port
            let b = try StreamListener(loop: thread.loop, address: SocketAddress(host: "127.0.0.1", port: port), reusePort: true) { $0.close() }
            return (a, b)
        }
        #expect(try thread.sync { first.localAddress?.port == second.localAddress?.port })
        // Without SO_REUSEPORT the port is taken.
        #expect(throws: UVError.self) {
            try thread.sync { try StreamListener(loop: thread.loop, address: SocketAddress(host: "127.0.0.1", port: first.localAddress!.port)) { $0.close() } }
        }
        try thread.sync {
            first.close()
            second.close()
        }
    }

    @Test func connectToAClosedPortIsRefused() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let result = Box<UVError?>(nil)
        let done = SyncFlag()
        try thread.sync {
            let client = StreamConnection(loop: thread.loop, kind: .tcp)
            client.connect(to: try SocketAddress(host: "127.0.0.1", port: 1)) { error in
                result.value = error
                client.close()
                done.set()
            }
        }
        #expect(done.wait(milliseconds: 2000))
        #expect(try thread.sync { result.value?.name } == "ECONNREFUSED")
    }

    @Test func socketAddressParsing() throws {
        #expect(try SocketAddress(host: "127.0.0.1", port: 80).description == "127.0.0.1:80")
        #expect(try SocketAddress(host: "localhost", port: 1).host == "127.0.0.1")
        #expect(try SocketAddress(host: "[::1]", port: 11435).description == "[::1]:11435")
        #expect(throws: UVError.self) { try SocketAddress(host: "not-an-ip", port: 1) }
    }
}

/// The C edge: failures found inside a call are reported after it returns;
/// handles release their owners once closed.
@Suite struct CEdgeTests {
    /// Records whether a callback ran inside the caller's own call.
    final class Reentrancy: @unchecked Sendable {
        var inCall = false
        var calledInside: Bool?
        var error: UVError?
        let done = SyncFlag()
    }

    @Test func aConnectThatFailsAtOnceCompletesOnTheNextTick() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let probe = Reentrancy()
        try thread.sync {
            let client = StreamConnection(loop: thread.loop, kind: .tcp)
            let address = try SocketAddress(host: "127.0.0.1", port: 1)
            client.connect(to: address) { _ in client.close() }
            // A second connect on the same handle is refused by libuv at once (EALREADY).
            probe.inCall = true
            client.connect(to: address) { error in
                probe.calledInside = probe.inCall
                probe.error = error
                probe.done.set()
            }
            probe.inCall = false
        }
        #expect(probe.done.wait(milliseconds: 2000))
        #expect(try thread.sync { probe.calledInside } == false)
        #expect(try thread.sync { probe.error?.name } == "EALREADY")
    }

    /// A write on a stream with no socket fails inside `write`; the delegate
    /// hears it afterwards.
    @Test func aWriteThatFailsAtOnceIsReportedAfterTheCall() throws {
        final class Delegate: StreamConnectionDelegate, @unchecked Sendable {
            let probe = Reentrancy()
            func connection(_ connection: StreamConnection, didRead bytes: UnsafeRawBufferPointer) {}
            func connection(_ connection: StreamConnection, didEndWith error: UVError?) {
                probe.calledInside = probe.inCall
                probe.error = error
                connection.close()
                probe.done.set()
            }
        }
        let thread = try LoopThread()
        defer { thread.shutdown() }
        let delegate = Delegate()
        try thread.sync {
            let stream = StreamConnection(loop: thread.loop, kind: .tcp)
            stream.delegate = delegate
            delegate.probe.inCall = true
            stream.write(Array("no socket".utf8))
            delegate.probe.inCall = false
        }
        #expect(delegate.probe.done.wait(milliseconds: 2000))
        #expect(try thread.sync { delegate.probe.calledInside } == false)
        #expect(try thread.sync { delegate.probe.error } != nil)
    }

    @Test func aClosedHandleReleasesItsOwner() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        final class WeakBox: @unchecked Sendable { weak var timer: LoopTimer? }
        let box = WeakBox()
        try thread.sync {
            let timer = LoopTimer(loop: thread.loop)
            box.timer = timer
            timer.close()
        }
        // The close callback runs on a later iteration; then nothing holds the timer.
        #expect(waitUntil(seconds: 2) { (try? thread.sync { box.timer == nil }) == true })
    }

    @Test func aWatchedDescriptorReportsReadability() throws {
        let thread = try LoopThread()
        defer { thread.shutdown() }
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let seen = SyncFlag()
        let read = fds[0]
        let watcher = try thread.sync {
            let watcher = try FileDescriptorWatcher(loop: thread.loop, descriptor: read) { events in
                if events.contains(.readable) { seen.set() }
            }
            watcher.watch(.readable)
            return watcher
        }
        _ = write(fds[1], "x", 1)
        #expect(seen.wait(milliseconds: 2000))
        try thread.sync { watcher.close() }
        #expect(throws: UVError.self) { try thread.sync { try FileDescriptorWatcher(loop: thread.loop, descriptor: -1) { _ in } } }
    }
}
