import Logging
import Synchronization
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Writes events.k8s.io/v1 Events about objects. A failed write is logged, never thrown: an Event is
/// a courtesy to the operator and must not stop the work it describes. As client-go's recorder, it
/// sends at most 25 Events about one object at once, then one per 5 minutes (`EventSpamFilter`).
public struct EventRecorder: Sendable {
    let api: any KubeAPI
    let spam = SpamFilterBox()
    /// `wgmesh.dev/controller`.
    public let reportingController: String
    /// This replica (its Pod name).
    public let reportingInstance: String
    let logger: Logger

    public init(api: any KubeAPI, reportingController: String, reportingInstance: String, logger: Logger) {
        self.api = api
        self.reportingController = reportingController
        self.reportingInstance = reportingInstance
        self.logger = logger
    }

    /// Counts, against the spam filter, the Events about an object that the API holds (sent by another replica,
    /// or by this process in an earlier term), at the times given, in place of what this recorder counted: a
    /// new leader does not start with a full allowance for an object already reported about.
    public func seed(kind: String, namespace: String?, name: String, uid: String?, sentAt times: [Date]) {
        let key = Self.spamKey(kind: kind, namespace: namespace, name: name, uid: uid)
        let (now, wall) = (ContinuousClock.now, Date())
        let instants = times.sorted().map { now - .seconds(max(0, wall.timeIntervalSince($0))) }
        spam.state.withLock { $0.replay(key, sentAt: instants) }
    }

    static func spamKey(kind: String, namespace: String?, name: String, uid: String?) -> String {
        [kind, namespace ?? "", name, uid ?? ""].joined(separator: "\u{0}")
    }

    /// Records an Event about `object`; cluster-scoped objects' Events go to `default`, as client-go does.
    /// `at` is when it happened (now by default).
    public func record(
        about object: KubeObject, warning: Bool, reason: String, action: String, note: String, at now: Date = Date()
    ) async {
        let meta = object.metadata
        let key = Self.spamKey(kind: object.kind ?? "Node", namespace: meta.namespace, name: meta.name, uid: meta.uid)
        guard spam.state.withLock({ $0.allow(key, at: .now) }) else {
            logger.debug(
                "Event not sent: more than the spam filter allows about one object",
                metadata: ["object": "\(meta.name)", "reason": "\(reason)"])
            return
        }
        var regarding: [String: JSON] = [
            "kind": .string(object.kind ?? "Node"), "name": .string(meta.name),
            "apiVersion": .string(object.apiVersion ?? "v1"),
        ]
        regarding["uid"] = meta.uid.map(JSON.string)
        regarding["namespace"] = meta.namespace.map(JSON.string)
        // client-go names Events "<object>.<unix nanoseconds in hex>"; several Events about one object
        // can share a time here, so random digits follow.
        let nanos = UInt64(now.timeIntervalSince1970 * 1_000_000_000)
        let unique =
            String(nanos, radix: 16) + String(UInt64.random(in: 0..<(1 << 32)) | (1 << 32), radix: 16).dropFirst()
        let event: JSON = .object([
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": .object(["name": .string("\(meta.name).\(unique)")]),
            "eventTime": .string(MicroTime.format(now)),
            "reportingController": .string(reportingController), "reportingInstance": .string(reportingInstance),
            "action": .string(action), "reason": .string(reason), "type": .string(warning ? "Warning" : "Normal"),
            // The API caps a note at 1 kB.
            "note": .string(String(note.prefix(1024))),
            "regarding": .object(regarding),
        ])
        do {
            _ = try await api.create(.events, namespace: meta.namespace ?? "default", event)
        } catch {
            guard !error.isCancelled else { return }
            logger.warning(
                "could not record an Event",
                metadata: ["object": "\(meta.name)", "reason": "\(reason)", "error": "\(error)"])
        }
    }
}

final class SpamFilterBox: Sendable {
    let state = Mutex(EventSpamFilter())
}

/// client-go's `EventSourceObjectSpamFilter`: a token bucket per object a recorder reports about, of
/// `burst` tokens refilled at one per `refill`, for at most `capacity` objects (the least recently
/// seen forgotten first). Twenty agents each reporting a node's hundred bad values send 25 Events each,
/// not 2,000.
public struct EventSpamFilter: Sendable {
    public var burst = 25.0
    public var refill: Duration = .seconds(300)
    public var capacity = 4096
    var buckets: [String: (tokens: Double, at: ContinuousClock.Instant)] = [:]

    public init() {}

    /// The bucket of `key` as if the Events sent at `instants`, and those only, had gone through this filter.
    public mutating func replay(_ key: String, sentAt instants: [ContinuousClock.Instant]) {
        buckets[key] = nil
        for instant in instants.sorted() { _ = allow(key, at: instant) }
    }

    /// Whether an Event about the object `key` may be sent at `now`; takes a token if so.
    public mutating func allow(_ key: String, at now: ContinuousClock.Instant) -> Bool {
        var bucket = buckets[key] ?? (burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) / refill)
        bucket.at = now
        let allowed = bucket.tokens >= 1
        if allowed { bucket.tokens -= 1 }
        if buckets[key] == nil, buckets.count >= capacity,
            let oldest = buckets.min(by: { $0.value.at < $1.value.at })?.key
        {
            buckets[oldest] = nil
        }
        buckets[key] = bucket
        return allowed
    }
}
