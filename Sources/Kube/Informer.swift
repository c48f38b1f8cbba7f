import Logging
import Synchronization

/// A change to an informer's cache, as the consumer sees it.
public enum InformerEvent: Sendable, Hashable {
    case added(KubeObject)
    case updated(old: KubeObject, new: KubeObject)
    case deleted(KubeObject)

    /// The object after the change (for `deleted`, its last state).
    public var object: KubeObject {
        switch self {
        case .added(let o), .deleted(let o), .updated(_, let o): return o
        }
    }

    /// What the consumer should see when `next` happens to an object while `self` is still undelivered:
    /// one event with the consumer's last view as `old`, or nil when the two cancel out.
    public func coalesced(with next: InformerEvent) -> InformerEvent? {
        switch (self, next) {
        case (.added, .added(let o)), (.added, .updated(_, let o)): return .added(o)
        case (.added, .deleted): return nil
        case (.updated(let old, _), .updated(_, let o)), (.updated(let old, _), .added(let o)):
            return .updated(old: old, new: o)
        case (.updated(let old, _), .deleted): return .deleted(old)
        case (.deleted(let old), .added(let o)), (.deleted(let old), .updated(_, let o)):
            return .updated(old: old, new: o)
        case (.deleted, .deleted(let o)): return .deleted(o)
        }
    }
}

/// List-then-watch into an in-memory cache keyed by namespace/name, as client-go's reflector and
/// informer do: the watch resumes from the last resourceVersion after a dropped connection, a 410
/// Gone relists, and a periodic relist repairs any gap. Changes reach one consumer through `events`;
/// changes to an object the consumer has not yet taken are merged into one event.
public final class Informer: Sendable {
    public struct Configuration: Sendable {
        public var namespace: String?
        public var labelSelector: String?
        /// Watch `PartialObjectMetadata` only (no spec or status).
        public var metadataOnly: Bool
        public var pageSize: Int
        /// Each watch asks the server to end it after a random time in this range, spreading reconnects.
        public var watchTimeoutSeconds: ClosedRange<Int>
        /// A full relist this often; differences found are delivered as events. Nil: only after 410.
        public var resyncInterval: Duration?
        public var backoff: Backoff
        /// Applied to every object before it is cached (client-go's SetTransform): what the consumer
        /// does not read need not stay in memory, such as `managedFields` or other owners' annotations.
        public var transform: (@Sendable (KubeObject) -> KubeObject)?

        public init(
            namespace: String? = nil, labelSelector: String? = nil, metadataOnly: Bool = false, pageSize: Int = 500,
            watchTimeoutSeconds: ClosedRange<Int> = 300...600, resyncInterval: Duration? = .seconds(600),
            backoff: Backoff = Backoff(initial: .milliseconds(800), maximum: .seconds(30)),
            transform: (@Sendable (KubeObject) -> KubeObject)? = nil
        ) {
            self.transform = transform
            self.namespace = namespace
            self.labelSelector = labelSelector
            self.metadataOnly = metadataOnly
            self.pageSize = pageSize
            self.watchTimeoutSeconds = watchTimeoutSeconds
            self.resyncInterval = resyncInterval
            self.backoff = backoff
        }
    }

    /// Counts of what `run` did, for logs and tests.
    public struct Statistics: Sendable, Hashable {
        public var lists = 0
        public var watches = 0
        /// Watches that ended with an error, not by the server's timeout.
        public var watchFailures = 0
        public var expired = 0
    }

    struct State {
        var objects: [String: KubeObject] = [:]
        var pending: [String: InformerEvent] = [:]
        /// Keys of `pending` in the order they first became pending; stale entries are skipped.
        var order: [String] = []
        var head = 0
        var consumer: CheckedContinuation<InformerEvent?, Never>?
        var synced = false
        var syncWaiters: [CheckedContinuation<Void, Never>] = []
        var finished = false
        var resourceVersion: String?
        var statistics = Statistics()
        /// Whom a change under the lock woke: `withState` resumes them once the lock is released.
        var woken = Wakeups()

        mutating func enqueue(_ key: String, _ event: InformerEvent) {
            if let earlier = pending[key] {
                pending[key] = earlier.coalesced(with: event)
            } else {
                pending[key] = event
                order.append(key)
            }
            if let consumer, let e = pop() {
                self.consumer = nil
                woken.consumer = (consumer, e)
            }
        }

        /// Wakes the consumer with nil and every sync waiter: `run` has ended.
        mutating func finish() {
            finished = true
            if let consumer { woken.consumer = (consumer, nil) }
            consumer = nil
            woken.syncWaiters += syncWaiters
            syncWaiters = []
        }

        mutating func pop() -> InformerEvent? {
            while head < order.count {
                let key = order[head]
                head += 1
                if head > 1024, head * 2 > order.count {
                    order.removeFirst(head)
                    head = 0
                }
                if let e = pending.removeValue(forKey: key) { return e }
            }
            return nil
        }

        mutating func apply(_ event: WatchEvent.Change) {
            switch event {
            case .upsert(let o):
                let key = Informer.key(o)
                let old = objects[key]
                if let old, old.metadata.resourceVersion == o.metadata.resourceVersion { return }
                objects[key] = o
                enqueue(key, old.map { .updated(old: $0, new: o) } ?? .added(o))
            case .delete(let o):
                let key = Informer.key(o)
                guard let old = objects.removeValue(forKey: key) else { return }
                enqueue(key, .deleted(o.metadata.resourceVersion == nil ? old : o))
            }
        }
    }

    public let resource: APIResource
    public let configuration: Configuration
    let api: any KubeAPI
    let logger: Logger
    let state = Mutex(State())

    public init(api: any KubeAPI, resource: APIResource, configuration: Configuration = Configuration(), logger: Logger)
    {
        self.api = api
        self.resource = resource
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "resource"] = "\(resource)"
        self.logger = logger
    }

    static func key(_ o: KubeObject) -> String {
        let m = o.metadata
        return m.namespace.map { "\($0)/\(m.name)" } ?? m.name
    }

    // MARK: reading the cache

    /// The cached object, by `name` or `namespace/name`.
    public func get(_ key: String) -> KubeObject? { state.withLock { $0.objects[key] } }

    /// Continuations to resume, gathered under the lock. They are resumed only after it is released: resuming
    /// one wakes its task, which takes the task's status lock, while a task being cancelled holds that lock as it
    /// runs `nextEvent`'s cancellation handler, which takes this lock: holding both in opposite orders deadlocks.
    struct Wakeups {
        var consumer: (CheckedContinuation<InformerEvent?, Never>, InformerEvent?)?
        var syncWaiters: [CheckedContinuation<Void, Never>] = []

        func resume() {
            if let (c, e) = consumer { c.resume(returning: e) }
            for w in syncWaiters { w.resume() }
        }
    }

    /// Runs `body` under the lock, then resumes whom it woke.
    func withState<T: Sendable>(_ body: (inout State) -> T) -> T {
        let (result, woken) = state.withLock { s in
            let result = body(&s)
            defer { s.woken = Wakeups() }
            return (result, s.woken)
        }
        woken.resume()
        return result
    }

    /// Every cached object.
    public func list() -> [KubeObject] { state.withLock { Array($0.objects.values) } }

    /// The last resourceVersion seen (from a list, an event or a bookmark).
    public var resourceVersion: String? { state.withLock { $0.resourceVersion } }

    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// Returns once the first list is in the cache, or once `run` has ended without one.
    public func waitUntilSynced() async {
        await withCheckedContinuation { c in
            withState { s in
                if s.synced || s.finished { s.woken.syncWaiters.append(c) } else { s.syncWaiters.append(c) }
            }
        }
    }

    /// The changes, for one consumer. Ends when `run` returns.
    public var events: Events { Events(informer: self) }

    public struct Events: AsyncSequence, Sendable {
        let informer: Informer
        public func makeAsyncIterator() -> Iterator { Iterator(informer: informer) }
        public struct Iterator: AsyncIteratorProtocol {
            let informer: Informer
            public mutating func next() async -> InformerEvent? { await informer.nextEvent() }
        }
    }

    func nextEvent() async -> InformerEvent? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { c in
                withState { s in
                    if let e = s.pop() {
                        s.woken.consumer = (c, e)
                    } else if s.finished || Task.isCancelled {
                        s.woken.consumer = (c, nil)
                    } else {
                        s.consumer = c
                    }
                }
            }
        } onCancel: {
            withState { s in
                if let c = s.consumer { s.woken.consumer = (c, nil) }
                s.consumer = nil
            }
        }
    }

    // MARK: list and watch

    /// Lists, then watches, until the task is cancelled.
    public func run() async {
        // Nothing will sync any more: whoever waits for it goes on (and sees the cancellation).
        defer { withState { $0.finish() } }
        var needList = true
        var backoff = configuration.backoff
        var lastList = ContinuousClock.now
        while !Task.isCancelled {
            // Events a watch delivered before it broke: it worked, so the next try starts without delay.
            var delivered = 0
            do throws(KubeError) {
                if needList {
                    try await relist()
                    needList = false
                    lastList = .now
                }
                let started = ContinuousClock.now
                if try await watchOnce(delivered: &delivered) {
                    needList = true
                    continue
                }
                if delivered == 0, ContinuousClock.now - started < .seconds(1) {
                    throw KubeError.transport(request: "watch \(resource)", "the server ended the watch at once")
                }
                backoff.reset()
                if let resync = configuration.resyncInterval, ContinuousClock.now - lastList >= resync {
                    needList = true
                }
            } catch  where error.code == 410 {
                state.withLock { $0.statistics.expired += 1 }
                logger.info("resourceVersion expired, relisting", metadata: ["error": "\(error)"])
                needList = true
            } catch {
                if Task.isCancelled { break }
                state.withLock { $0.statistics.watchFailures += 1 }
                if delivered > 0 { backoff.reset() }
                let delay = backoff.next()
                logger.warning(
                    "list/watch failed, retrying", metadata: ["error": "\(error)", "delay": "\(Seconds(delay))"])
                try? await Task.sleep(for: delay)
            }
        }
    }

    /// Lists every page and replaces the cache; the differences become events.
    func relist() async throws(KubeError) {
        // Transformed page by page: 5,000 whole Nodes (managedFields and all) are never in memory at once.
        let list = try await api.listAll(
            resource, namespace: configuration.namespace, pageSize: configuration.pageSize,
            metadataOnly: configuration.metadataOnly, labelSelector: configuration.labelSelector,
            transform: configuration.transform)
        let fresh = Dictionary(list.items.map { (Informer.key($0), $0) }, uniquingKeysWith: { $1 })
        withState { s in
            s.statistics.lists += 1
            for (key, old) in s.objects where fresh[key] == nil { s.apply(.delete(old)) }
            for o in fresh.values { s.apply(.upsert(o)) }
            s.resourceVersion = list.resourceVersion
            if !s.synced {
                s.synced = true
                s.woken.syncWaiters += s.syncWaiters
                s.syncWaiters = []
            }
        }
        logger.debug(
            "listed", metadata: ["items": "\(fresh.count)", "resourceVersion": "\(list.resourceVersion ?? "")"])
    }

    /// One watch from the last resourceVersion until the server ends it, counting the events in
    /// `delivered`. Returns whether the server said the version expired (an ERROR event with 410
    /// inside a 200).
    func watchOnce(delivered: inout Int) async throws(KubeError) -> Bool {
        let options = WatchOptions(
            resourceVersion: state.withLock { $0.resourceVersion },
            timeoutSeconds: Int.random(in: configuration.watchTimeoutSeconds), allowBookmarks: true,
            labelSelector: configuration.labelSelector, metadataOnly: configuration.metadataOnly)
        let stream = try await api.watch(resource, namespace: configuration.namespace, options: options)
        state.withLock { $0.statistics.watches += 1 }
        do {
            for try await event in stream {
                delivered += 1
                if case .error(let status) = event {
                    guard status.code == 410 else { throw KubeError.api(request: "watch \(resource)", status) }
                    state.withLock { $0.statistics.expired += 1 }
                    logger.info("watch expired, relisting", metadata: ["message": "\(status.message ?? "")"])
                    return true
                }
                let change = event.change?.transformed(by: configuration.transform)
                withState { s in
                    if let change { s.apply(change) }
                    if let rv = event.resourceVersion { s.resourceVersion = rv }
                }
            }
        } catch let error as KubeError {
            throw error
        } catch {
            throw .transport("watch \(resource)", error)
        }
        return false
    }
}

extension WatchEvent {
    enum Change {
        case upsert(KubeObject)
        case delete(KubeObject)

        func transformed(by transform: (@Sendable (KubeObject) -> KubeObject)?) -> Change {
            guard let transform else { return self }
            switch self {
            case .upsert(let o): return .upsert(transform(o))
            case .delete(let o): return .delete(transform(o))
            }
        }
    }

    var change: Change? {
        switch self {
        case .added(let o), .modified(let o): return .upsert(o)
        case .deleted(let o): return .delete(o)
        case .bookmark, .error: return nil
        }
    }

    /// The version to resume a watch from after this event.
    var resourceVersion: String? {
        switch self {
        case .added(let o), .modified(let o), .deleted(let o): return o.metadata.resourceVersion
        case .bookmark(let rv, _): return rv
        case .error: return nil
        }
    }
}
