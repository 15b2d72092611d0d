import HerdRouting
import HerdRuntime

/// Where a finished request goes, in one place: the live event stream, the
/// trace store, the request log, `/metrics` and the per-minute tallies (the
/// views and the health checks read them). A new destination is added here,
/// not in the composition root. Loop-thread only.
final class FinishedRequests {
    private let clock: any LoopClock
    private let events: EventHub
    private let traces: TraceStore
    private let requestLog: RequestLog
    private let metrics: ControlMetrics
    private let stats: RequestStats

    init(clock: any LoopClock, events: EventHub, traces: TraceStore, requestLog: RequestLog, metrics: ControlMetrics, stats: RequestStats) {
        self.clock = clock
        self.events = events
        self.traces = traces
        self.requestLog = requestLog
        self.metrics = metrics
        self.stats = stats
    }

    func record(_ finished: FinishedRequest) {
        events.finished(finished)
        traces.record(finished, now: Int(clamping: EventLoop.wallClockMilliseconds()))
        requestLog.record(finished.result, request: finished.request)
        metrics.record(finished)
        stats.record(finished, now: clock.now)
    }
}
