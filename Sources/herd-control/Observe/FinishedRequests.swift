import HerdRouting
import HerdRuntime

/// Where a finished request goes, in one place: the live event stream, the
/// trace store, the request log, `/metrics`, the per-minute tallies (the
/// views and the health checks read them) and its client key's usage. A new destination is added here,
/// not in the composition root. Loop-thread only.
final class FinishedRequests {
    private let clock: any LoopClock
    private let events: EventHub
    private let traces: TraceStore
    private let requestLog: RequestLog
    private let metrics: ControlMetrics
    private let stats: RequestStats
    private let keys: KeyBook

    init(clock: any LoopClock, events: EventHub, traces: TraceStore, requestLog: RequestLog, metrics: ControlMetrics, stats: RequestStats,
         keys: KeyBook) {
        self.keys = keys
        self.clock = clock
        self.events = events
        self.traces = traces
        self.requestLog = requestLog
        self.metrics = metrics
        self.stats = stats
    }

    func record(_ finished: FinishedRequest) {
        events.finished(finished)
        let wall = keys.wallClock()
        let key = finished.request.map(\.key) ?? 0
        traces.record(finished, keyName: key != 0 ? keys.name(key) : nil, now: wall)
        if key != 0 { keys.finished(finished, now: clock.now, wallNow: wall) }
        requestLog.record(finished.result, request: finished.request)
        metrics.record(finished)
        stats.record(finished, now: clock.now)
    }
}
