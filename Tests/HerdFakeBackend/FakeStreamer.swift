import HerdHTTP
import HerdRuntime

/// Lines of a streamed answer, made when they are due (a 10,000-line stream
/// costs no memory up front).
struct FakeLineSource {
    let count: Int
    let line: (Int) -> [UInt8]
}

/// Writes a `FakeLineSource` to an exchange at the scripted pace, pausing while
/// the client is slow (above the backend's high watermark), and misbehaving as
/// scripted (`reset:N`).
final class FakeStreamer {
    private unowned let backend: FakeBackend
    private let exchange: HTTPExchange
    private let lines: FakeLineSource
    private let delay: UInt64
    private let failure: FakeFailure
    private var next = 0
    private var timer: LoopTimer?
    private var waitingForWritable = false

    init(backend: FakeBackend, exchange: HTTPExchange, lines: FakeLineSource, delay: UInt64, failure: FakeFailure) {
        self.backend = backend
        self.exchange = exchange
        self.lines = lines
        self.delay = delay
        self.failure = failure
    }

    /// Starts streaming. The streamer keeps itself alive through the exchange's
    /// callbacks and its timer (strong captures) until `finish` breaks the cycle.
    func start() {
        exchange.onCancel = { [self] in
            self.backend.noteCancelled()
            self.finish()
        }
        exchange.onWritable = { [self] in
            guard self.waitingForWritable else { return }
            self.waitingForWritable = false
            if self.delay == 0 { self.pump() }
        }
        if delay > 0 {
            let timer = LoopTimer(loop: backend.loop)
            self.timer = timer
            timer.start(after: delay, repeating: delay) { [self] in self.tick() }
        } else {
            pump()
        }
    }

    private func pump() {
        while next < lines.count, exchange.isOpen {
            if exchange.pendingResponseBytes > backend.highWatermark {
                waitingForWritable = true
                return
            }
            emit()
        }
    }

    private func tick() {
        guard exchange.isOpen else { return finish() }
        if exchange.pendingResponseBytes > backend.highWatermark { return }
        emit()
    }

    private func emit() {
        if case let .resetAfterChunks(n) = failure, next >= n {
            exchange.abort()
            finish()
            return
        }
        if case let .stallAfterChunks(n) = failure, next >= n {
            // Goes silent; the exchange stays open until the client leaves (onCancel).
            timer?.close()
            timer = nil
            waitingForWritable = false
            exchange.onWritable = nil
            return
        }
        exchange.write(lines.line(next))
        next += 1
        backend.notePending(exchange.pendingResponseBytes)
        if next == lines.count {
            exchange.end()
            finish()
        }
    }

    /// Breaks the exchange ↔ streamer cycle, stops the pacing timer and
    /// frees the backend's slot.
    private func finish() {
        timer?.close()
        timer = nil
        next = lines.count
        exchange.onWritable = nil
        exchange.onCancel = nil
        backend.release(exchange)
    }
}
