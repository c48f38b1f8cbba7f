import Kube
import Logging
import Synchronization
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The agent on one Node: turns every Node's `wgmesh.dev/` annotations into this node's WireGuard
/// interface, peers, routes, firewall table and CNI configuration, and reports what it runs.
///
/// One informer feeds a trigger that coalesces bursts. Calico felix's way: a Node event gives a cheap
/// delta, the new plan diffed against the one the last pass applied, so a one-peer change is one
/// netlink message; the first pass, the periodic resync, a wireguard-go restart and any pass after a
/// failure read the whole kernel state instead, which repairs drift made by hand.
/// A restart adopts the interface as it is: nothing is deleted or reset that is already right.
public final class MeshAgent: Sendable {
    public struct Configuration: Sendable {
        public var nodeName: String
        public var interface: String
        public var stateDirectory: String
        public var cniConfDirectory: String
        public var clusterCIDRs: [IPPrefix]
        /// The outside peers' address ranges (`--peer-cidr`); empty: Peers are not read.
        public var peerCIDRs: [IPPrefix]
        /// Route the cluster CIDRs into the tunnel and drop Pod traffic that would leave any other way.
        public var strict: Bool
        /// nil: the MTU of the interface that carries the node's endpoint, less WireGuard's overhead.
        public var mtu: UInt32?
        /// Seconds between keepalives to each peer (0: none). On, handshakes stay fresh on idle links,
        /// so `WireGuardMeshReady` tells a dead peer from a quiet one.
        public var persistentKeepalive: UInt16
        public var resyncPeriod: Duration
        /// The pause after a reconcile, during which further changes gather into the next one.
        public var coalescePeriod: Duration

        public init(
            nodeName: String, interface: String = "wgmesh0", stateDirectory: String = "/var/lib/wgmesh",
            cniConfDirectory: String = "/etc/cni/net.d", clusterCIDRs: [IPPrefix], strict: Bool = true,
            mtu: UInt32? = nil,
            persistentKeepalive: UInt16 = 25, resyncPeriod: Duration = .seconds(60),
            coalescePeriod: Duration = .milliseconds(100), peerCIDRs: [IPPrefix] = []
        ) {
            self.peerCIDRs = peerCIDRs
            self.persistentKeepalive = persistentKeepalive
            self.nodeName = nodeName
            self.interface = interface
            self.stateDirectory = stateDirectory
            self.cniConfDirectory = cniConfDirectory
            self.clusterCIDRs = clusterCIDRs
            self.strict = strict
            self.mtu = mtu
            self.resyncPeriod = resyncPeriod
            self.coalescePeriod = coalescePeriod
        }

        public var cniFile: String { cniConfDirectory + "/" + CNIConfig.fileName }
    }

    /// The kernel as the agent touches it; one real implementation of each (Netlink, NFTables). The
    /// netlink handles are used by one pass at a time only: passes never overlap.
    public struct Kernel: @unchecked Sendable {
        public var interfaces: any WireGuardInterfaces
        public var wireGuard: any WireGuardDevice
        public var network: any LinkTable & RouteTable
        public var filter: any PacketFilter

        public init(
            interfaces: any WireGuardInterfaces, wireGuard: any WireGuardDevice, network: any LinkTable & RouteTable,
            filter: any PacketFilter
        ) {
            self.interfaces = interfaces
            self.wireGuard = wireGuard
            self.network = network
            self.filter = filter
        }
    }

    /// How soon a full pass looks again at peers still connecting, the first time.
    static let connectingRecheck: Duration = .seconds(3)

    /// The field manager of the agent's writes.
    public static let fieldManager = "wgmesh-agent"
    public static let reportingController = "wgmesh.dev/agent"
    /// WireGuard's listen port when the node's endpoint does not say.
    public static let defaultListenPort: UInt16 = 51820
    /// The MTU when the underlay interface cannot be found.
    public static let fallbackMTU: UInt32 = 1420

    public let configuration: Configuration
    let api: any KubeAPI
    let kernel: Kernel
    let logger: Logger
    let events: EventRecorder
    public let metrics: AgentMetrics
    let state: Mutex<PassState>
    /// Touched by passes only, which never overlap: held through a pass's planning, never by anything a
    /// request or an event waits on.
    let planning = Mutex(Planning())

    /// What the agent remembers between passes; all of it can be lost (a restart re-derives it).
    struct PassState {
        var enrollment: WireGuardKeyPair?
        /// The texts of the Events already sent about this node, oldest first: each problem is reported once
        /// per process, and the list keeps the last `reportedLimit` only.
        var reported: [String] = []
        /// Nodes named by informer events since the last pass took them.
        var changedNodes: Set<String> = []
        /// A peer moved to another key since `applied-peers` was last published: it is published at once.
        var keysMoved = true
        var ruleset: String?
        var condition: MeshCondition?
        var passes = 0
        /// Why the agent waits before its first pass (another process's wireguard-go does not answer yet).
        var waiting: String?
        /// The unencrypted-packet count as last computed, and when this process last published it.
        var drops: UnencryptedDrops?
        var dropsPublished: ContinuousClock.Instant?
        /// When this process last published `applied-peers`.
        var peersPublished: ContinuousClock.Instant?
        /// What the last pass left on the interface; nil after a failure, so the next pass is full.
        var applied: Applied?
        var fullPassWanted = true
        /// A pass the last one asks for without a Node event (after a key switch, or a failure, backed off), and
        /// whether it is a full pass (a look at peers still connecting).
        var followUp: Duration?
        var followUpIsFull = false
        /// The follow-up delay after failed passes: 0.5 s, doubling up to the resync period; reset by a success.
        var retry: Backoff
        /// The follow-up delay while planned peers are still connecting: `connectingRecheck`, doubling up to the
        /// resync period; reset by a full pass that finds none.
        var recheck: Backoff
        /// The condition of the last pass when it failed; nil while passes succeed. Until a pass succeeds
        /// again, `/readyz`, the condition and the metrics say so.
        var failure: MeshCondition?
        /// When this process first configured each planned peer key: a peer that never had a handshake is
        /// still connecting, not stale, for the first `maxHandshakeAge`.
        var configuredAt: [WireGuardKey: Date] = [:]
    }

    /// What the last pass left on the interface beside the planner's plan: the inputs that a Node event
    /// cannot change without reading the kernel (the node's own key, Pod CIDRs and endpoint, hence
    /// addresses, MTU, rules).
    struct Applied {
        var privateKey: WireGuardKey?
        var link: LinkState
        var mtu: UInt32
        var podCIDRs: [IPPrefix]
        var endpoint: Endpoint?
    }

    /// The planner and what it is fed, kept between passes.
    struct Planning {
        /// Each Node's wgmesh annotations as read at its resourceVersion, by name.
        var parsed: [String: ParsedNode] = [:]
        var planner: MeshPlanner?
        /// The local node as its keys were last opened, the enrollment key they were opened with, and the keys.
        var opened: (node: MeshNode, enrollment: WireGuardKey, keys: NodeKeys?)?
        /// The outside peers as the last full pass read them.
        var outside = OutsidePlan()

        /// Every Node whose annotations read, with the outside peers' prefixes its gateway role adds, and the
        /// outside peers this node holds.
        var nodes: [MeshNode] {
            parsed.values.compactMap { (try? $0.node.get()).map(outside.adding) } + outside.held.values
        }
    }

    /// How many Event texts about its node the agent remembers having sent.
    static let reportedLimit = 64

    public init(
        api: any KubeAPI, kernel: Kernel, configuration: Configuration, logger: Logger,
        metrics: AgentMetrics = AgentMetrics()
    ) {
        self.api = api
        self.kernel = kernel
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "node"] = "\(configuration.nodeName)"
        self.logger = logger
        self.metrics = metrics
        state = Mutex(
            PassState(
                retry: Backoff(
                    initial: min(.milliseconds(500), configuration.resyncPeriod), maximum: configuration.resyncPeriod,
                    jitter: 0),
                recheck: Backoff(
                    initial: min(Self.connectingRecheck, configuration.resyncPeriod),
                    maximum: configuration.resyncPeriod, jitter: 0)))
        events = EventRecorder(
            api: api, reportingController: Self.reportingController, reportingInstance: configuration.nodeName,
            logger: logger)
    }

    /// True once a pass has succeeded and the last one did (`/readyz`).
    public var isReady: Bool { readiness == nil }

    /// Why the agent is not ready, in a line; nil when it is: a pass ran and the last one succeeded.
    public var readiness: String? {
        state.withLock { m in
            if let waiting = m.waiting { return "DeviceUnavailable: \(waiting)" }
            if let failure = m.failure { return "\(failure.reason): \(failure.message)" }
            return m.passes == 0 ? "no pass has run yet" : nil
        }
    }

    /// Reconcile passes so far.
    public var passes: Int { state.withLock { $0.passes } }

    // MARK: running

    /// Enrols, closes the data plane before anything is known (strict mode), then reconciles until
    /// cancelled. Cancellation stops the watching only: the interface, routes and rules stay and keep
    /// carrying traffic.
    /// `wakeups` asks for a pass at once (the userspace backend's wireguard-go was started again).
    public func run(wakeups: AsyncStream<Void>? = nil) async throws {
        let enrollment = try EnrollmentKeyStore(directory: configuration.stateDirectory).loadOrCreate(logger: logger)
        state.withLock { $0.enrollment = enrollment }
        guard await waitForInterface() else { return }
        try failClosed()

        let informer = Informer(
            api: api, resource: .nodes, configuration: .init(metadataOnly: true, transform: Self.slim), logger: logger)
        // Peers change seldom: each change makes a full pass (the ruleset and the routes to a gateway change).
        let peers =
            configuration.peerCIDRs.isEmpty
            ? nil : Informer(api: api, resource: .peers, configuration: .init(), logger: logger)
        // At most one pass waits: a burst of changes becomes one pass. Node events ask for a delta;
        // the resync and the wakeups for a full pass, which wins when both wait.
        let (triggers, trigger) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await informer.run() }
            group.addTask {
                await informer.waitUntilSynced()
                trigger.yield()
                for await event in informer.events where Self.mayChangePlan(event, node: self.configuration.nodeName) {
                    self.state.withLock { _ = $0.changedNodes.insert(event.object.metadata.name) }
                    trigger.yield()
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: self.configuration.resyncPeriod)
                    self.state.withLock { $0.fullPassWanted = true }
                    trigger.yield()
                }
            }
            if let peers {
                group.addTask { await peers.run() }
                group.addTask {
                    for await _ in peers.events {
                        self.state.withLock { $0.fullPassWanted = true }
                        trigger.yield()
                    }
                }
            }
            if let wakeups {
                group.addTask {
                    for await _ in wakeups {
                        self.state.withLock { $0.fullPassWanted = true }
                        trigger.yield()
                    }
                }
            }
            var followUp: Task<Void, Never>?
            for await _ in triggers {
                if Task.isCancelled { break }
                let full = state.withLock { m in
                    defer { m.fullPassWanted = false }
                    return m.fullPassWanted
                }
                await reconcile(
                    NodeView(get: { informer.get($0) }, all: { informer.list() }, peers: { peers?.list() ?? [] }),
                    full: full)
                if let (delay, isFull) = state.withLock({ m -> (Duration, Bool)? in
                    defer { (m.followUp, m.followUpIsFull) = (nil, false) }
                    return m.followUp.map { ($0, m.followUpIsFull) }
                }) {
                    followUp?.cancel()
                    followUp = Task {
                        try? await Task.sleep(for: delay)
                        guard !Task.isCancelled else { return }
                        if isFull { self.state.withLock { $0.fullPassWanted = true } }
                        trigger.yield()
                    }
                }
                try? await Task.sleep(for: configuration.coalescePeriod)
            }
            followUp?.cancel()
            group.cancelAll()
        }
        logger.info("stopped watching; the interface, routes and rules stay as they are")
    }

    /// Whether a Node event can change what the agent on `node` plans or publishes. Every agent writes its
    /// report to its own Node (and a real cluster's kubelets write Node status): a pass on every node for
    /// each of those would make the cost of a change grow with the square of the cluster. Only the agent's
    /// own Node's agent keys matter, to it: one removed or changed by someone else is written again at once.
    /// The resync still reads all.
    public static func mayChangePlan(_ event: InformerEvent, node: String) -> Bool {
        guard case .updated(let old, let new) = event else { return true }
        func inputs(_ o: KubeObject) -> [String: String] {
            o.metadata.annotations.filter { !Annotation.agentOwned.contains($0.key) }
        }
        func reports(_ o: KubeObject) -> [String: String] {
            o.metadata.annotations.filter { Annotation.agentOwned.contains($0.key) }
        }
        return old.metadata.uid != new.metadata.uid || inputs(old) != inputs(new)
            || (new.metadata.name == node && reports(old) != reports(new))
    }

    /// What the agent keeps of a Node: what names it in an Event, and wgmesh's annotations. At 5,000
    /// Nodes, managedFields and other owners' annotations would be most of the agent's memory.
    static func slim(_ node: KubeObject) -> KubeObject {
        let metadata = node.json["metadata"]
        var kept: [String: JSON] = [:]
        for key in ["name", "uid", "resourceVersion"] { kept[key] = metadata?[key] }
        kept["annotations"] = .object(
            (metadata?["annotations"]?.object ?? [:]).filter { $0.key.hasPrefix(Annotation.prefix) })
        var json: [String: JSON] = ["metadata": .object(kept)]
        for key in ["apiVersion", "kind"] { json[key] = node.json[key] }
        return (try? KubeObject(json: .object(json))) ?? node
    }

    /// Until the interface can be had: another process's wireguard-go (the wgmesh-device DaemonSet's, with
    /// --external-wireguard-go) answers. Not ready meanwhile, with the reason; false when cancelled first.
    func waitForInterface() async -> Bool {
        let name = configuration.interface
        guard let why = kernel.interfaces.unavailable(named: name) else { return true }
        logger.notice(
            "waiting for the WireGuard device; not ready until it answers",
            metadata: ["interface": "\(name)", "why": "\(why)"])
        state.withLock { $0.waiting = why }
        defer { state.withLock { $0.waiting = nil } }
        let started = ContinuousClock.now
        var reminded = started
        while kernel.interfaces.unavailable(named: name) != nil {
            guard (try? await Task.sleep(for: .milliseconds(200))) != nil else { return false }
            if ContinuousClock.now - reminded >= .seconds(60) {
                reminded = .now
                logger.warning(
                    "still waiting for the WireGuard device",
                    metadata: ["interface": "\(name)", "for": "\(reminded - started)"])
            }
        }
        logger.info(
            "the WireGuard device answers",
            metadata: ["interface": "\(name)", "after": "\(ContinuousClock.now - started)"])
        return true
    }

    /// Strict mode before the first plan: the interface exists and the cluster CIDRs are routed into
    /// it, so nothing from a Pod to another node leaves in the clear while the agent starts.
    func failClosed() throws {
        try enableForwarding()
        let link = try ensureLink(mtu: configuration.mtu ?? Self.fallbackMTU, adjustMTU: false)
        guard configuration.strict else { return }
        let plan = plan(local: nil, nodes: [], interfaceIndex: link.index, mtu: link.mtu)
        let existing = Set(try kernel.network.routes(family: nil).map(\.key))
        for route in plan.routes where !existing.contains(route.key) {
            try kernel.network.replace(route)
            logger.info("strict route installed before the first plan", metadata: ["route": "\(route.destination)"])
        }
        // A table left by an earlier run is adopted as it is: written anew without the node's own Pod
        // CIDRs, it would drop the replies to the node's Pods until the first pass.
        if try kernel.filter.unencrypted() == nil { _ = try applyRuleset(localPodCIDRs: [], present: false) }
    }

    func enableForwarding() throws { try Self.enableForwarding(logger: logger) }

    /// Pods' traffic is routed through the node: forwarding on for both families (in the caller's network
    /// namespace: the agent's is the host's). Also `wgmesh agent --forwarding-only`, for a container whose
    /// /proc/sys is writable where the agent's is not.
    public static func enableForwarding(logger: Logger) throws {
        for path in ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"] {
            guard try AtomicFile.read(path) != Array("1\n".utf8) else { continue }
            try AtomicFile.overwrite(path, Array("1\n".utf8))
            logger.info("forwarding enabled", metadata: ["sysctl": "\(path)"])
        }
    }
}
