import Kube
import Logging
import Synchronization
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The controller's work while it leads: watches Nodes, and for each one writes what
/// `NodeIssuance.decide` asks for in one annotation patch with a resourceVersion precondition,
/// making keypairs on the way. All state is rebuilt from the Nodes' annotations when it starts,
/// so a restart or a failover never hands out a CIDR twice or changes a node's CIDR.
public final class MeshController: Sendable {
    public struct Configuration: Sendable {
        /// Empty when CIDRs come only from `spec.podCIDRs`.
        public var clusterCIDRs: [IPPrefix]
        public var nodeMaskIPv4: Int
        public var nodeMaskIPv6: Int
        public var policy: ControllerPolicy
        public var maxConcurrentRotations: Int
        /// This replica, for Events.
        public var identity: String
        /// The field manager of the controller's writes (its client's `fieldManager`): a `pod-cidrs`
        /// annotation last written by it is the controller's own allocation, and wins an overlap.
        public var fieldManager: String
        /// The outside peers' address ranges, at most one per family; empty: Peers are not served.
        public var peerCIDRs: [IPPrefix]

        public init(
            clusterCIDRs: [IPPrefix], nodeMaskIPv4: Int = 24, nodeMaskIPv6: Int = 64,
            policy: ControllerPolicy = .init(),
            maxConcurrentRotations: Int = 1, identity: String, fieldManager: String = MeshController.fieldManager,
            peerCIDRs: [IPPrefix] = []
        ) {
            self.clusterCIDRs = clusterCIDRs
            self.peerCIDRs = peerCIDRs
            self.nodeMaskIPv4 = nodeMaskIPv4
            self.nodeMaskIPv6 = nodeMaskIPv6
            self.policy = policy
            self.maxConcurrentRotations = maxConcurrentRotations
            self.identity = identity
            self.fieldManager = fieldManager
        }
    }

    /// The field manager the controller writes as.
    public static let fieldManager = "wgmesh-controller"
    /// How many Warning texts per node the controller remembers having reported.
    static let reportedLimit = 32

    /// The Events' `reportingController`.
    public static let reportingController = "wgmesh.dev/controller"

    /// What happened, for tests and the benchmark.
    public struct Statistics: Sendable, Hashable {
        public var patches = 0
        public var conflicts = 0
        public var failures = 0
        public var keysIssued = 0
    }

    public let configuration: Configuration
    let api: any KubeAPI
    let events: EventRecorder
    let logger: Logger
    let informerConfiguration: Informer.Configuration
    let now: @Sendable () -> Date
    let stats = Mutex(Statistics())

    /// Refuses a configuration that cannot work (overlapping cluster CIDRs, a bad mask, no CIDR source).
    public init(
        api: any KubeAPI, configuration: Configuration, logger: Logger,
        informer: Informer.Configuration = .init(), now: @escaping @Sendable () -> Date = Date.init
    ) throws(ConfigurationError) {
        if configuration.clusterCIDRs.isEmpty, configuration.policy.cidrSource == .wgmesh {
            throw .cidrs(.noClusterCIDR)
        }
        do {
            _ = try PeerIssuance(peerCIDRs: configuration.peerCIDRs, clusterCIDRs: configuration.clusterCIDRs)
        } catch { throw .peerCIDRs(error) }
        do {
            _ = try PodCIDRAllocator(
                clusterCIDRs: configuration.clusterCIDRs, nodeMaskIPv4: configuration.nodeMaskIPv4,
                nodeMaskIPv6: configuration.nodeMaskIPv6)
        } catch { throw .cidrs(error) }
        self.api = api
        self.configuration = configuration
        self.logger = logger
        self.informerConfiguration = informer
        self.now = now
        events = EventRecorder(
            api: api, reportingController: Self.reportingController, reportingInstance: configuration.identity,
            logger: logger)
    }

    public var statistics: Statistics { stats.withLock { $0 } }

    /// A configuration the controller refuses to start with.
    public enum ConfigurationError: Error, CustomStringConvertible {
        case cidrs(IPAMError), peerCIDRs(PeerRangeError)
        public var description: String {
            switch self {
            case .cidrs(let e): return "\(e)"
            case .peerCIDRs(let e): return "\(e)"
            }
        }
    }

    /// The state one term of leadership builds from the annotations and keeps in memory.
    struct State {
        /// Every node's allocation and every CIDR a node publishes.
        var allocator: PodCIDRAllocator
        /// Nodes with `spec.podCIDRs` of each family: the families the cluster assigns itself.
        var specNodes: [IPFamily: Set<String>] = [:]
        /// When this term staged each node's next key (lost on restart: the grace restarts).
        var stagedAt: [String: Date] = [:]
        /// Nodes with a rotation in progress, for `maxConcurrentRotations`.
        var rotating: Set<String> = []
        /// Warnings already reported per node (`reason:note`), so that neither a resync nor a new term
        /// repeats them; at most `reportedLimit` per node, and none for a deleted node.
        var reported: [String: Set<String>] = [:]
        /// The public keys each node publishes: a key published twice is reported on both nodes.
        var keyClaims = KeyClaims()

        /// Notes a Warning reported about `node`; false when it already was. A node's list starts again
        /// once it holds `reportedLimit` texts: a problem whose text keeps changing is not remembered for ever.
        mutating func noteReported(_ key: String, about node: String) -> Bool {
            guard reported[node]?.contains(key) != true else { return false }
            if reported[node, default: []].count >= MeshController.reportedLimit { reported[node] = [] }
            reported[node, default: []].insert(key)
            return true
        }
        /// The back-off of each node whose last write failed.
        var retries: [String: Backoff] = [:]
        /// Nodes refused a CIDR because the pools are full: looked at again when one is freed.
        var waitingForCIDR: Set<String> = []
        /// Nodes due for rotation while the concurrent-rotation limit is reached.
        var waitingForRotation: Set<String> = []
        /// Events go out in order from their own task: the next node need not wait for them.
        var eventQueue: AsyncStream<PendingEvent>.Continuation?
        /// Nodes with a write on its way: never two at once for one node.
        var writing: Set<String> = []
        /// Nodes that changed while their write was on its way: decided again once it has landed.
        var changedWhileWriting: Set<String> = []
        /// Nodes waiting for a free write slot, in order, each once.
        var backlog: [String] = []
        var backlogHead = 0
        var inBacklog: Set<String> = []
        /// The resourceVersion each node's last landed write was made over: until the watch brings a newer
        /// one, the cached node is stale.
        var writtenOver: [String: String] = [:]

        mutating func queue(_ name: String) {
            if inBacklog.insert(name).inserted { backlog.append(name) }
        }

        mutating func nextQueued() -> String? {
            guard backlogHead < backlog.count else { return nil }
            let name = backlog[backlogHead]
            backlogHead += 1
            if backlogHead > 1024, backlogHead * 2 > backlog.count {
                backlog.removeFirst(backlogHead)
                backlogHead = 0
            }
            inBacklog.remove(name)
            return name
        }
    }

    /// Writes on their way at once: the API's round trips overlap, while every decision stays on one loop.
    static let writesInFlight = 8

    struct PendingEvent: Sendable {
        var object: KubeObject
        var notice: NodeIssuance.Notice
        var at: Date
    }

    enum Work: Sendable {
        case node(String)
        case deleted(KubeObject)
        case written(WriteOutcome)
    }

    /// Runs until cancelled (leadership lost or shutdown).
    public func run() async {
        let informer = Informer(api: api, resource: .nodes, configuration: informerConfiguration, logger: logger)
        let (work, queue) = AsyncStream<Work>.makeStream()
        let (nodeChanges, nodeChanged) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
            group.addTask { await informer.run() }
            group.addTask { await self.runPeers(nodes: informer, nodeChanges: nodeChanges) }
            let (pending, eventQueue) = AsyncStream<PendingEvent>.makeStream()
            group.addTask {
                for await e in pending {
                    await self.events.record(
                        about: e.object, warning: e.notice.warning, reason: e.notice.reason.rawValue,
                        action: e.notice.reason.action, note: e.notice.note, at: e.at)
                }
            }
            await informer.waitUntilSynced()
            var state = rebuild(from: informer.list(), eventQueue: eventQueue)
            state.reported = await standingWarnings()
            group.addTask {
                for await event in informer.events {
                    nodeChanged.yield()
                    if case .deleted(let o) = event {
                        queue.yield(.deleted(o))
                    } else {
                        queue.yield(.node(event.object.metadata.name))
                    }
                }
                queue.finish()
                nodeChanged.finish()
            }
            let wakeups = NodeWakeups(queue: queue)
            /// Decides for the node, and sends its write if it needs one.
            func start(_ name: String) {
                if state.writing.contains(name) { return _ = state.changedWhileWriting.insert(name) }
                guard let object = informer.get(name) else { return }
                if let over = state.writtenOver[name] {
                    // The watch has not yet brought our own write; its event will bring the node back.
                    if object.metadata.resourceVersion == over { return }
                    state.writtenOver[name] = nil
                }
                guard let write = reconcile(object, &state, wakeups, lookup: informer.get) else { return }
                state.writing.insert(name)
                group.addTask { queue.yield(.written(await self.send(write))) }
            }
            for await item in work {
                if Task.isCancelled { break }
                switch item {
                case .deleted(let object):
                    forget(object, &state, wakeups)
                case .node(let name):
                    if state.writing.contains(name) {
                        state.changedWhileWriting.insert(name)
                    } else if state.writing.count >= Self.writesInFlight {
                        state.queue(name)
                    } else {
                        start(name)
                    }
                case .written(let outcome):
                    let name = outcome.write.object.metadata.name
                    state.writing.remove(name)
                    landed(outcome, &state, wakeups, lookup: informer.get)
                    if state.changedWhileWriting.remove(name) != nil { state.queue(name) }
                    while state.writing.count < Self.writesInFlight, let next = state.nextQueued() { start(next) }
                }
            }
            wakeups.cancelAll()
            // The Events already decided still go out; then everything stops.
            eventQueue.finish()
            group.cancelAll()
        }
    }

    /// Restores every published allocation before anything new is handed out, each CIDR on its own, and
    /// claims every CIDR any node publishes. When two nodes publish one CIDR, the allocation goes to the
    /// node whose `pod-cidrs` the controller itself wrote (`managedFields`), else to the older node; the
    /// reconcile that follows reports the overlap on both.
    func rebuild(from nodes: [KubeObject], eventQueue: AsyncStream<PendingEvent>.Continuation?) -> State {
        let c = configuration
        var state = State(
            allocator: try! PodCIDRAllocator(
                clusterCIDRs: c.clusterCIDRs, nodeMaskIPv4: c.nodeMaskIPv4, nodeMaskIPv6: c.nodeMaskIPv6),
            eventQueue: eventQueue)
        func rank(_ o: KubeObject) -> (Int, String, String) {
            (
                o.manager(ofAnnotation: Annotation.podCIDRs) == c.fieldManager ? 0 : 1,
                o.metadata.creationTimestamp ?? "", o.metadata.name
            )
        }
        // Each node ranked once, not once per comparison.
        let ranked = nodes.map { (rank($0), $0) }.sorted { $0.0 < $1.0 }.map(\.1)
        for object in ranked {
            let name = object.metadata.name
            let facts = self.facts(object)
            state.allocator.claim(node: name, cidrs: facts.publishedCIDRs)
            noteSpec(facts, &state)
            if object.metadata.annotations[Annotation.nextPublicKey] != nil { state.rotating.insert(name) }
            guard
                let published = try? MeshNode(
                    name: name,
                    annotations: [Annotation.podCIDRs: object.metadata.annotations[Annotation.podCIDRs] ?? ""])
            else {
                continue
            }
            // Failures are reported by the node's reconcile, which follows.
            for cidr in published.podCIDRs { try? state.allocator.restore(node: name, cidr: cidr) }
        }
        logger.info(
            "state rebuilt from annotations",
            metadata: [
                "nodes": "\(nodes.count)", "allocations": "\(state.allocator.count)",
                "rotating": "\(state.rotating.count)",
            ])
        return state
    }

    /// The Warnings this controller reported that still stand (Events live for an hour by default): a new
    /// term does not report them again. Every Event of the controller's earlier terms, whichever replica sent
    /// it, counts against this term's spam filter: one node's problems make at most 25 Events at once across
    /// leader changes too, not 25 per term.
    func standingWarnings() async -> [String: Set<String>] {
        guard let list = try? await api.listAll(.events, namespace: "default") else { return [:] }
        var reported: [String: Set<String>] = [:]
        var sent: [String: (uid: String?, times: [Date])] = [:]
        for event in list.items
        where event.json["reportingController"]?.string == Self.reportingController
            && event.json["regarding"]?["kind"]?.string == "Node"
        {
            guard let node = event.json["regarding"]?["name"]?.string, let reason = event.json["reason"]?.string,
                let note = event.json["note"]?.string
            else { continue }
            if let time = event.json["eventTime"]?.string.flatMap(RFC3339.parse) {
                sent[node, default: (event.json["regarding"]?["uid"]?.string, [])].times.append(time)
            }
            guard event.json["type"]?.string == "Warning" else { continue }
            reported[node, default: []].insert(Self.reportKey(reason, note))
        }
        for (node, events) in sent {
            self.events.seed(kind: "Node", namespace: nil, name: node, uid: events.uid, sentAt: events.times)
        }
        return reported
    }

    static func reportKey(_ reason: String, _ note: String) -> String {
        // An Event's note is cut at 1 kB: compare what it can hold.
        reason + ":" + note.prefix(1024)
    }

    func facts(_ object: KubeObject) -> NodeFacts {
        let node = Node(object)
        return NodeFacts(
            name: object.metadata.name, annotations: object.metadata.annotations,
            addresses: node.addresses.map { .init(type: $0.type, address: $0.address) }, specPodCIDRs: node.podCIDRs,
            created: object.metadata.creationTimestamp.flatMap(RFC3339.parse))
    }

    /// Records which families the node has in `spec.podCIDRs`.
    func noteSpec(_ facts: NodeFacts, _ state: inout State) {
        let families = Set(facts.specPodCIDRs.compactMap { try? IPPrefix($0).family })
        for family in IPFamily.allCases {
            if families.contains(family) {
                state.specNodes[family, default: []].insert(facts.name)
            } else {
                state.specNodes[family]?.remove(facts.name)
            }
        }
    }

    func forget(_ object: KubeObject, _ state: inout State, _ wakeups: NodeWakeups) {
        let name = object.metadata.name
        // Freed only now that the Node is gone: a CIDR is never reused while its node exists.
        for family in IPFamily.allCases { state.specNodes[family]?.remove(name) }
        let cidrs = state.allocator.allocation(of: name)
        state.allocator.release(node: name)
        if let cidrs {
            logger.info(
                "node deleted, Pod CIDRs freed",
                metadata: ["node": "\(name)", "cidrs": "\(cidrs.map(\.description).joined(separator: ","))"])
            let now = self.now()
            for waiting in state.waitingForCIDR { wakeups.schedule(waiting, at: now, now: now) }
        }
        state.waitingForCIDR.remove(name)
        state.stagedAt[name] = nil
        state.rotating.remove(name)
        state.reported[name] = nil
        state.keyClaims.forget(name)
        state.retries[name] = nil
        state.writtenOver[name] = nil
        state.changedWhileWriting.remove(name)
        wakeups.cancel(name)
    }
}
