import HerdHTTP
import HerdRuntime

/// A multipart upload (audio, an image to edit) relayed to its backend as it
/// arrives, not held whole. Loop-thread only.
///
/// It reads the start of the form until the `model` part is whole (within
/// `scanLimit` bytes: `model` first, as the SDKs and most clients send it),
/// then the request is routed and the form goes to the chosen backend: the
/// bytes already read, then the rest as the client sends it, with
/// backpressure both ways (the client is paused while the backend's socket
/// holds more than `watermark` unsent bytes, or while the route is awaited).
/// A form whose `model` comes later (after the file) is held whole, up to the
/// upload limit, and routed at its end: it can then be retried elsewhere. A
/// relayed form cannot: once part of it went to a node, a failure there is
/// the client's to retry (`isSpent`). Past `limit` bytes, `onTooLarge` is
/// called once and the rest of the body is dropped.
final class UploadRelay: HTTPBodySource {
    enum Phase: Equatable {
        /// Reading the start of the form for its `model`.
        case scanning
        /// Routed; holding what arrives until the backend's connection takes it.
        case waiting
        /// Relaying to a backend's connection.
        case relaying
        /// The client's body ended (all of it held, or all of it relayed).
        case complete
        /// Over the limit, or its connection went before the end: nothing more is relayed.
        case dropped
    }

    private let exchange: HTTPExchange
    let limit: Int
    let scanLimit: Int
    let watermark: Int
    let totalLength: Int?
    private(set) var phase = Phase.scanning
    /// What has arrived and not yet been relayed.
    private(set) var held: [UInt8] = []
    private(set) var received = 0
    private(set) var isSpent = false
    /// Whether the whole body arrived before any of it was relayed (then it is `held`, whole).
    var isWhole: Bool { phase == .complete && !isSpent }
    private var sink: (any HTTPBodySink)?
    private var paused = false
    /// The form's start was read (or the whole form, when `model` came late):
    /// `scan` returns the route fields once it can (nil: read more; throws: refuse).
    private var scan: (([UInt8], _ whole: Bool) throws(RouteFields.Invalid) -> RouteFields?)?
    private var onRoutable: ((RouteFields) -> Void)?
    private var onInvalid: ((RouteFields.Invalid) -> Void)?
    /// Set by the session once it exists; before, the relay answers 413 itself.
    var onTooLarge: (() -> Void)?

    init(exchange: HTTPExchange, limit: Int, scanLimit: Int = 1024 * 1024, watermark: Int = 256 * 1024) {
        self.exchange = exchange
        self.limit = limit
        self.scanLimit = scanLimit
        self.watermark = watermark
        totalLength = exchange.head.contentLength
    }

    /// Starts reading the exchange's body.
    func start(scan: @escaping ([UInt8], _ whole: Bool) throws(RouteFields.Invalid) -> RouteFields?,
               routable: @escaping (RouteFields) -> Void, invalid: @escaping (RouteFields.Invalid) -> Void) {
        self.scan = scan
        onRoutable = routable
        onInvalid = invalid
        if let length = totalLength, length > limit { return tooLarge() }
        if exchange.isRequestComplete { return ended() }
        // Strong captures: the exchange drops its callbacks when it ends or is cancelled.
        exchange.onBody = { [self] bytes in self.arrived(bytes) }
        exchange.onEnd = { [self] in self.ended() }
        // Gone before it was routed (the session sets its own once it exists).
        exchange.onCancel = { [self] in self.drop() }
    }

    private func arrived(_ bytes: UnsafeRawBufferPointer) {
        guard phase != .dropped, phase != .complete else { return }
        received += bytes.count
        if received > limit { return tooLarge() }
        if phase == .relaying, let sink {
            sink.write(bytes)
            if sink.pendingBytes > watermark { pause() }
            return
        }
        held.append(contentsOf: bytes)
        switch phase {
        case .scanning where held.count <= scanLimit:
            tryRoute(whole: false)
        case .waiting where held.count > watermark:
            pause() // the route is awaited: hold no more than this
        default:
            break
        }
    }

    private func ended() {
        guard phase != .dropped, phase != .complete else { return }
        let wasScanning = phase == .scanning
        phase = .complete
        resume()
        if wasScanning {
            tryRoute(whole: true)
        } else if let sink {
            sink.end()
        }
    }

    private func tryRoute(whole: Bool) {
        guard let scan else { return }
        do {
            guard let fields = try scan(held, whole) else { return }
            self.scan = nil
            if phase == .scanning { phase = .waiting }
            let routable = onRoutable
            onRoutable = nil
            onInvalid = nil
            routable?(fields)
        } catch {
            self.scan = nil
            phase = .dropped
            held = []
            let invalid = onInvalid
            onRoutable = nil
            onInvalid = nil
            invalid?(error)
        }
    }

    private func drop() {
        phase = .dropped
        held = []
        scan = nil
        onRoutable = nil
        onInvalid = nil
        onTooLarge = nil
    }

    private func tooLarge() {
        phase = .dropped
        held = []
        resume()
        if let sink {
            self.sink = nil
            sink.end() // not reached: the session cancels the upstream request
        }
        let handler = onTooLarge
        onTooLarge = nil
        scan = nil
        onRoutable = nil
        if let handler {
            handler()
        } else {
            ClientError(status: 413, message: "the upload is over the limit of \(limit / (1024 * 1024)) MiB (--max-upload-mb)")
                .respond(exchange, api: .openai)
        }
    }

    private func pause() {
        guard !paused else { return }
        paused = true
        exchange.pauseRequestBody()
    }

    private func resume() {
        guard paused else { return }
        paused = false
        exchange.resumeRequestBody()
    }

    // MARK: HTTPBodySource

    func attach(_ sink: any HTTPBodySink) {
        guard phase == .waiting || phase == .complete, !isSpent else { return }
        isSpent = true
        self.sink = sink
        let wasComplete = phase == .complete
        if !wasComplete { phase = .relaying }
        if !held.isEmpty {
            held.withUnsafeBytes { sink.write($0) }
            held = []
        }
        if wasComplete {
            sink.end()
        } else if sink.pendingBytes <= watermark {
            resume()
        }
    }

    func detach(_ sink: any HTTPBodySink) {
        guard self.sink === sink else { return }
        self.sink = nil
        if phase == .relaying {
            // The backend's connection went before the whole upload: drop the rest.
            phase = .dropped
            resume()
        }
    }

    func sinkDrained() {
        if phase == .relaying { resume() }
    }
}
