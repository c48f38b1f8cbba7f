import Logging
import Synchronization
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics: a candidate takes
/// the lease when it is free or has not been renewed for `leaseDurationSeconds` (measured on the
/// candidate's own clock from when it last saw the record change, so clock skew does not matter); the
/// leader renews every `retryPeriod` and gives up, cancelling its work, when it could not renew for
/// `renewDeadline`. On a clean shutdown it releases the lease so that another replica takes over at once.
public final class LeaderElector: Sendable {
    public struct Configuration: Sendable {
        public var namespace: String
        public var name: String
        /// This replica, usually its Pod name.
        public var identity: String
        public var leaseDuration: Duration
        public var renewDeadline: Duration
        public var retryPeriod: Duration
        /// Clear the holder when the work ends or the task is cancelled.
        public var releaseOnCancel: Bool

        public init(
            namespace: String, name: String, identity: String, leaseDuration: Duration = .seconds(15),
            renewDeadline: Duration = .seconds(10), retryPeriod: Duration = .seconds(2), releaseOnCancel: Bool = true
        ) {
            self.namespace = namespace
            self.name = name
            self.identity = identity
            self.leaseDuration = leaseDuration
            self.renewDeadline = renewDeadline
            self.retryPeriod = retryPeriod
            self.releaseOnCancel = releaseOnCancel
        }
    }

    enum Attempt { case held, heldByOther(String), failed }

    struct Observation {
        /// The lease as last read or written; `at` is when its spec last changed.
        var lease: KubeObject?
        var at: ContinuousClock.Instant = .now
        var leading = false
        /// The spec this process last wrote: a lease naming this identity is ours only while it still
        /// holds that spec. Another process with the same identity renewing it is another leader.
        var written: JSON?
        /// When the API server last answered a lease request as it should (a lost race included).
        var answered: ContinuousClock.Instant?
    }

    public let configuration: Configuration
    let api: any KubeAPI
    let logger: Logger
    let observation = Mutex(Observation())

    public init(api: any KubeAPI, configuration: Configuration, logger: Logger) {
        self.api = api
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "lease"] = "\(configuration.namespace)/\(configuration.name)"
        logger[metadataKey: "identity"] = "\(configuration.identity)"
        self.logger = logger
    }

    public var isLeader: Bool { observation.withLock { $0.leading } }

    /// Whether the API server answered a lease request within the last `leaseDuration`. Leader and
    /// standby both ask every `retryPeriod` or so, so this is a replica's readiness either way.
    public var isConnected: Bool {
        observation.withLock { o in o.answered.map { ContinuousClock.now - $0 < configuration.leaseDuration } ?? false }
    }

    /// The holder named in the lease as last read.
    public var observedHolder: String? {
        observation.withLock { $0.lease.flatMap { Lease($0).holderIdentity } }
    }

    /// Campaigns, then runs `work` while leading. When leadership is lost, `work` is cancelled and the
    /// campaign starts again. Returns when `work` returns or the calling task is cancelled; rethrows
    /// what `work` throws. The lease is released in both cases when `releaseOnCancel` is set.
    public func run(_ work: @escaping @Sendable () async throws -> Void) async throws {
        enum Outcome { case lost, done, failed(any Error) }
        while !Task.isCancelled {
            guard await acquire() else { break }
            logger.info("became leader")
            let outcome = await withTaskGroup(of: Outcome.self) { group in
                group.addTask {
                    do {
                        try await work()
                        return .done
                    } catch { return .failed(error) }
                }
                group.addTask {
                    await self.renewWhileLeading()
                    return .lost
                }
                let first = await group.next()!
                group.cancelAll()
                return first
            }
            observation.withLock { $0.leading = false }
            if Task.isCancelled { break }
            switch outcome {
            case .lost:
                logger.warning("lost leadership; work cancelled, campaigning again")
            case .done:
                await releaseIfConfigured()
                return
            case .failed(let error):
                await releaseIfConfigured()
                throw error
            }
        }
        await releaseIfConfigured()
    }

    // MARK: campaign

    /// Tries until the lease is ours; false when cancelled first.
    func acquire() async -> Bool {
        var lastHolder: String?
        while !Task.isCancelled {
            switch await attempt() {
            case .held:
                return true
            case .heldByOther(let holder):
                if holder != lastHolder {
                    logger.info("lease held by another replica", metadata: ["holder": "\(holder)"])
                }
                lastHolder = holder
            case .failed:
                break
            }
            // client-go's jitter factor 1.2: candidates do not retry in step.
            try? await Task.sleep(for: configuration.retryPeriod * (1 + Double.random(in: 0...1.2)))
        }
        return false
    }

    /// Renews every `retryPeriod`; returns when leadership is lost: another holder appeared, or no
    /// renewal succeeded within `renewDeadline`. Each attempt is cut off at the deadline.
    func renewWhileLeading() async {
        var lastRenew = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.retryPeriod)
            if Task.isCancelled { return }
            let remaining = configuration.renewDeadline - (ContinuousClock.now - lastRenew)
            switch await attempt(within: remaining) {
            case .held:
                lastRenew = .now
            case .heldByOther(let holder):
                logger.warning(
                    "lost leadership: the lease was renewed by someone else", metadata: ["holder": "\(holder)"])
                return
            case .failed:
                if ContinuousClock.now - lastRenew >= configuration.renewDeadline {
                    logger.error("could not renew the lease within the renew deadline")
                    return
                }
            }
        }
    }

    func attempt(within limit: Duration) async -> Attempt {
        guard limit > .zero else { return .failed }
        return await withTaskGroup(of: Attempt?.self) { group in
            group.addTask { await self.attempt() }
            group.addTask {
                try? await Task.sleep(for: limit)
                return nil
            }
            let first = await group.next()!
            group.cancelAll()
            return first ?? .failed
        }
    }

    /// One try to create, take over or renew the lease.
    func attempt() async -> Attempt {
        let c = configuration
        let now = MicroTime.now()
        do throws(KubeError) {
            let lease: KubeObject
            do {
                lease = try await api.get(.leases, namespace: c.namespace, name: c.name)
            } catch  where error.isNotFound {
                let spec: JSON = .object([
                    "holderIdentity": .string(c.identity), "leaseDurationSeconds": .integer(c.leaseDuration.seconds),
                    "acquireTime": .string(now), "renewTime": .string(now), "leaseTransitions": .integer(0),
                ])
                let created = try await api.create(
                    .leases, namespace: c.namespace,
                    .object([
                        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": .object(["name": .string(c.name), "namespace": .string(c.namespace)]), "spec": spec,
                    ]))
                observe(created, leading: true)
                return .held
            }
            let observedAt = observe(lease, leading: nil)
            let held = Lease(lease)
            let holder = held.holderIdentity ?? ""
            let duration = Duration.seconds(held.leaseDurationSeconds ?? 0)
            // Ours only if this process wrote what the lease holds: another process with the same
            // identity (two replicas given one --identity) must not lead beside us.
            let ours = holder == c.identity && observation.withLock { $0.written == lease.json["spec"] }
            if !holder.isEmpty, !ours, ContinuousClock.now < observedAt + duration {
                if holder == c.identity {
                    logger.warning(
                        """
                        another process holds the lease under this replica's identity; \
                        give each replica its own --identity
                        """,
                        metadata: ["holder": "\(holder)"])
                }
                return .heldByOther(holder)
            }
            var spec = lease.json["spec"]?.object ?? [:]
            if !ours {
                spec["acquireTime"] = .string(now)
                spec["leaseTransitions"] = .integer((held.leaseTransitions ?? 0) + 1)
            }
            spec["holderIdentity"] = .string(c.identity)
            spec["leaseDurationSeconds"] = .integer(c.leaseDuration.seconds)
            spec["renewTime"] = .string(now)
            var body = lease.json.object ?? [:]
            body["spec"] = .object(spec)
            // The read's resourceVersion stays in the body: if another replica wrote first, this is a 409.
            let updated = try await api.update(.leases, namespace: c.namespace, .object(body), subresource: nil)
            observe(updated, leading: true)
            return .held
        } catch {
            if error.isCancelled { return .failed }
            if error.code != 409 {
                logger.warning("lease request failed", metadata: ["error": "\(error)"])
            } else if isLeader {
                // Someone else wrote the lease while we led: the next read says who.
                logger.warning(
                    "the lease was changed by someone else while this replica led", metadata: ["error": "\(error)"])
            } else {
                logger.debug("lost a race for the lease", metadata: ["error": "\(error)"])
            }
            if error.code == 409 { observation.withLock { $0.answered = .now } }
            return .failed
        }
    }

    /// Records the lease as the server answered it; the observation time moves only when the record changed.
    @discardableResult
    func observe(_ lease: KubeObject, leading: Bool?) -> ContinuousClock.Instant {
        observation.withLock { o in
            if o.lease?.json["spec"] != lease.json["spec"] { o.at = .now }
            o.lease = lease
            o.answered = .now
            if let leading {
                o.leading = leading
                if leading { o.written = lease.json["spec"] }
            }
            return o.at
        }
    }

    func releaseIfConfigured() async {
        guard configuration.releaseOnCancel else { return }
        // The caller may be cancelled; the release must still reach the server.
        await Task { await self.release() }.value
    }

    /// Clears the holder if it is still this process, so another takes over without waiting.
    func release() async {
        guard let lease = observation.withLock({ o in o.lease.flatMap { o.written == $0.json["spec"] ? $0 : nil } }),
            Lease(lease).holderIdentity == configuration.identity
        else { return }
        var body = lease.json.object ?? [:]
        var spec = lease.json["spec"]?.object ?? [:]
        // As client-go releases: an empty holder, and a one-second duration.
        spec["holderIdentity"] = ""
        spec["leaseDurationSeconds"] = .integer(1)
        spec["renewTime"] = .string(MicroTime.now())
        body["spec"] = .object(spec)
        do {
            let updated = try await api.update(
                .leases, namespace: configuration.namespace, .object(body), subresource: nil)
            observe(updated, leading: false)
            logger.info("released the lease")
        } catch  where error.code == 409 {
            logger.info("the lease changed since this replica last renewed it: nothing to release")
        } catch {
            logger.warning("could not release the lease; it expires on its own", metadata: ["error": "\(error)"])
        }
    }
}

/// `metav1.MicroTime`: RFC 3339 in UTC with six fractional digits, as Leases carry.
enum MicroTime {
    static func now() -> String { format(Date()) }

    static func format(_ date: Date) -> String {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        let micros = Int((date.timeIntervalSince1970 - seconds) * 1_000_000)
        let whole = Date(timeIntervalSince1970: seconds).formatted(Date.ISO8601FormatStyle())
        let digits = String(micros)
        return whole.dropLast() + "." + String(repeating: "0", count: 6 - digits.count) + digits + "Z"
    }
}

extension Duration {
    /// Whole seconds, rounded up so that a lease never promises less than asked.
    var seconds: Int64 {
        let c = components
        return c.seconds + (c.attoseconds > 0 ? 1 : 0)
    }
}
