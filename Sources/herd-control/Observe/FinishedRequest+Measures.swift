import HerdRouting
import HerdWire

/// What the trace store, the metrics and the live tallies read from a finished
/// request, defined once.
extension FinishedRequest {
    /// A fallback model served it (not the one asked for).
    var servedByFallback: Bool {
        // A cloud provider serves the model under its own name (the operator's map): not a fallback.
        guard let request, !result.model.isEmpty, !result.node.hasPrefix(CloudProvider.nodePrefix) else { return false }
        return !ModelName.same(request.model, result.model)
    }

    /// Time it waited in herd's queue (ms; 0 when it did not, or control did not route it).
    var queuedMilliseconds: Double { Double(decision?.queuedMilliseconds ?? 0) }

    /// herd's own time (ms): its duration minus the backend's (as the proxy
    /// saw it) and the queue wait; nil unless it succeeded and the proxy timed the backend.
    var overheadMilliseconds: Double? {
        guard result.outcome == .ok, let upstream = result.upstreamMilliseconds, upstream.isFinite else { return nil }
        return max(0, result.durationMilliseconds - upstream - queuedMilliseconds)
    }
}
