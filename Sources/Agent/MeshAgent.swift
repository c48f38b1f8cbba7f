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
            coalescePeriod: Duration = .milliseconds(100)
        ) {
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

    /// How soon a full pass looks again at peers still connecting.
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
    let memory = Mutex(Memory())

    /// What the agent remembers between passes; all of it can be lost (a restart re-derives it).
    struct Memory {
        var enrollment: WireGuardKeyPair?
        /// Events already sent, by node and text: each problem is reported once per process.
        var reported: Set<String> = []
        var ruleset: String?
        var condition: MeshCondition?
        var passes = 0
        /// Why the agent waits before its first pass (another process's wireguard-go does not answer yet).
        var waiting: String?
        /// The unencrypted-packet count as last computed, and when this process last published it.
        var drops: UnencryptedDrops?
        var dropsPublished: ContinuousClock.Instant?
        /// When this process last published `applied-peers`, and the plan of the last report: a peer
        /// routed to another key than in that plan is published at once.
        var peersPublished: ContinuousClock.Instant?
        var lastPlan: MeshPlan?
        /// What the last pass left on the interface; nil after a failure, so the next pass is full.
        var applied: Applied?
        var fullPassWanted = true
        /// A pass the last one asks for without a Node event (after a key switch, or a failure, backed off).
        var followUp: Duration?
        var failures = 0
        /// The condition of the last pass when it failed; nil while passes succeed. Until a pass succeeds
        /// again, `/readyz`, the condition and the metrics say so.
        var failure: MeshCondition?
        /// When this process first configured each planned peer key: a peer that never had a handshake is
        /// still connecting, not stale, for the first `maxHandshakeAge`.
        var configuredAt: [WireGuardKey: Date] = [:]
    }

    /// The interface as the last pass left it, as planned, with the inputs that a Node event cannot
    /// change without a full pass (the node's own Pod CIDRs and endpoint, hence addresses, MTU, rules).
    struct Applied {
        var plan: MeshPlan
        var privateKey: WireGuardKey?
        var link: LinkState
        var mtu: UInt32
        var podCIDRs: [IPPrefix]
        var endpoint: Endpoint?
    }

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
        events = EventRecorder(
            api: api, reportingController: Self.reportingController, reportingInstance: configuration.nodeName,
            logger: logger)
    }

    /// True once a pass has succeeded and the last one did (`/readyz`).
    public var isReady: Bool { readiness == nil }

    /// Why the agent is not ready, in a line; nil when it is: a pass ran and the last one succeeded.
    public var readiness: String? {
        memory.withLock { m in
            if let waiting = m.waiting { return "DeviceUnavailable: \(waiting)" }
            if let failure = m.failure { return "\(failure.reason): \(failure.message)" }
            return m.passes == 0 ? "no pass has run yet" : nil
        }
    }

    /// Reconcile passes so far.
    public var passes: Int { memory.withLock { $0.passes } }

    // MARK: running

    /// Enrols, closes the data plane before anything is known (strict mode), then reconciles until
    /// cancelled. Cancellation stops the watching only: the interface, routes and rules stay and keep
    /// carrying traffic.
    /// `wakeups` asks for a pass at once (the userspace backend's wireguard-go was started again).
    public func run(wakeups: AsyncStream<Void>? = nil) async throws {
        let enrollment = try EnrollmentKeyStore(directory: configuration.stateDirectory).loadOrCreate(logger: logger)
        memory.withLock { $0.enrollment = enrollment }
        guard await waitForInterface() else { return }
        try failClosed()

        let informer = Informer(
            api: api, resource: .nodes, configuration: .init(metadataOnly: true, transform: Self.slim), logger: logger)
        // At most one pass waits: a burst of changes becomes one pass. Node events ask for a delta;
        // the resync and the wakeups for a full pass, which wins when both wait.
        let (triggers, trigger) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await informer.run() }
            group.addTask {
                await informer.waitUntilSynced()
                trigger.yield()
                for await event in informer.events where Self.mayChangePlan(event, node: self.configuration.nodeName) {
                    trigger.yield()
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: self.configuration.resyncPeriod)
                    self.memory.withLock { $0.fullPassWanted = true }
                    trigger.yield()
                }
            }
            if let wakeups {
                group.addTask {
                    for await _ in wakeups {
                        self.memory.withLock { $0.fullPassWanted = true }
                        trigger.yield()
                    }
                }
            }
            var followUp: Task<Void, Never>?
            for await _ in triggers {
                if Task.isCancelled { break }
                let full = memory.withLock { m in
                    defer { m.fullPassWanted = false }
                    return m.fullPassWanted
                }
                await reconcile(informer.list(), full: full)
                if let delay = memory.withLock({ m in
                    defer { m.followUp = nil }
                    return m.followUp
                }) {
                    followUp?.cancel()
                    followUp = Task {
                        try? await Task.sleep(for: delay)
                        if !Task.isCancelled { trigger.yield() }
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
        memory.withLock { $0.waiting = why }
        defer { memory.withLock { $0.waiting = nil } }
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

    // MARK: one pass

    /// One pass: plan from every Node, apply the difference, report. A full pass reads the kernel and
    /// reports the condition and metrics; otherwise the plan is diffed against the last pass's when the
    /// node's own inputs are unchanged. Never throws: a failure is logged and counted, and the next pass
    /// starts again from what the kernel reports.
    public func reconcile(_ objects: [KubeObject], full: Bool = true) async {
        let started = ContinuousClock.now
        do {
            try await pass(objects, full: full)
            metrics.reconciled(after: ContinuousClock.now - started, failed: false)
            memory.withLock { m in
                m.failures = 0
                m.failure = nil
                m.passes += 1
            }
        } catch {
            metrics.reconciled(after: ContinuousClock.now - started, failed: true)
            let failure = Self.condition(failed: error)
            if failure.reason == Self.writeRefused { metrics.writeRefused() }
            // Retried from the kernel's state: after 0.5 s, doubling up to the resync period.
            let delay = memory.withLock { m in
                m.failures += 1
                m.failure = failure
                m.applied = nil
                m.passes += 1
                m.followUp = min(.milliseconds(500) * (1 << min(m.failures - 1, 16)), configuration.resyncPeriod)
                return m.followUp!
            }
            logger.error(
                "reconcile failed; the next pass retries from the kernel's state",
                metadata: ["reason": "\(failure.reason)", "error": "\(error)", "retryIn": "\(delay)"])
            // Told where people look: an Event on this Node (once per text) and the condition, unless the
            // API is what fails.
            if let own = objects.first(where: { $0.metadata.name == configuration.nodeName }) {
                await report(own, warning: true, reason: failure.reason, note: failure.message)
            }
            do { try await writeCondition(failure) } catch {
                logger.warning("cannot write the \(MeshCondition.type) condition", metadata: ["error": "\(error)"])
            }
        }
    }

    /// The condition's reason when the API server refuses one of the agent's writes for good (403, 422, 400:
    /// RBAC or an admission policy), unlike a Node that is not registered yet (404) or a busy server.
    static let writeRefused = "WriteRefused"

    /// What a failed pass tells people: why, in the condition's terms.
    static func condition(failed error: any Error) -> MeshCondition {
        switch error {
        case let failure as PassFailure:
            return .failed(reason: failure.reason, message: failure.message)
        case let taken as RoutesTaken:
            return .failed(reason: "RouteConflict", message: taken.description)
        case let kube as KubeError where [400, 403, 422].contains(kube.code ?? 0):
            return .failed(
                reason: writeRefused,
                message: """
                    the API server refused the agent's write for good (\(kube.code ?? 0) \(kube.status?.reason ?? "")): \
                    \(kube.status?.message ?? "\(kube)"); the agent's RBAC or an admission policy does not allow what it writes \
                    (README, Security model); it tries again, backed off
                    """)
        default:
            return .failed(reason: "ReconcileFailed", message: "\(error)")
        }
    }

    func pass(_ objects: [KubeObject], full: Bool) async throws {
        let name = configuration.nodeName
        guard let localObject = objects.first(where: { $0.metadata.name == name }) else {
            throw PassFailure(
                reason: "NodeNotFound",
                message: "Node \(name) is not in the API yet: the kubelet registers it, and the agent waits for it")
        }
        try await publishSettings(on: localObject)
        let (nodes, invalid) = meshNodes(objects)
        // This node's own are the pass's failure, reported as such below.
        for (object, error) in invalid where object.metadata.name != name {
            await report(object, warning: true, reason: "InvalidAnnotation", note: "\(error)")
        }
        guard let local = nodes.first(where: { $0.name == name }) else {
            let why = invalid.first { $0.0.metadata.name == name }.map { "\($0.1)" } ?? "unreadable"
            throw PassFailure(
                reason: "InvalidAnnotation",
                message: "this node's wgmesh annotations do not read, so nothing changes until they do: \(why)")
        }

        // The node's own keys: a key that does not open, or does not match, changes nothing.
        var keys: NodeKeys?
        if let enrollment = memory.withLock({ $0.enrollment }) {
            do {
                keys = try NodeKeys.open(local, enrollmentPrivateKey: enrollment.privateKey)
            } catch {
                throw PassFailure(reason: "SealedKeyInvalid", message: "\(error)")
            }
        }

        let last =
            full
            ? nil
            : memory.withLock { $0.applied }.flatMap {
                $0.podCIDRs == local.podCIDRs && $0.endpoint == local.effectiveEndpoint ? $0 : nil
            }
        let link: LinkState
        let mtu: UInt32
        let device: DeviceState
        let routes: [Route]
        if let last {
            (link, mtu) = (last.link, last.mtu)
            device = last.plan.device(
                named: configuration.interface, interfaceIndex: link.index, privateKey: last.privateKey)
            routes = last.plan.routes
        } else {
            mtu = try tunnelMTU(local)
            link = try ensureLink(mtu: mtu, adjustMTU: true)
            try ensureAddresses(TunnelAddressing.addresses(podCIDRs: local.podCIDRs), link: link)
            device = try kernel.wireGuard.device(named: configuration.interface)
            routes = try kernel.network.routes(family: nil)
        }
        let plan = plan(local: local, nodes: nodes, interfaceIndex: link.index, mtu: mtu)
        // A node still joining is no one's problem; a conflict or a Pod CIDR outside the cluster's is.
        for exclusion in plan.excluded where !exclusion.isJoining {
            if let object = objects.first(where: { $0.metadata.name == exclusion.node }) {
                await report(object, warning: true, reason: "NodeLeftOut", note: "\(exclusion) (seen by node \(name))")
            }
        }

        var diff = MeshDiff(plan: plan, actual: device, actualRoutes: routes, privateKey: keys?.privateKey)
        let planned = diff
        if diff.device.privateKey != nil, !plan.peers.isEmpty {
            // A new private key: make every peer handshake at once instead of after a retry timeout. The
            // pass that follows at once reads the kernel and sets the keepalives back to the plan.
            diff.forceHandshakes(plan: plan, current: device)
            memory.withLock { $0.followUp = .zero }
            logger.info(
                "switching the interface to a new private key",
                metadata: ["generation": "\(keys?.generation ?? 0)", "peers": "\(plan.peers.count)"])
        }
        memory.withLock { $0.applied = nil }
        // Another program's route to a peer's Pod CIDR keeps that route out, and nothing else: the rest is
        // applied, the CNI file written and the report made, and then the pass fails, naming the route.
        var taken: RoutesTaken?
        if !diff.isEmpty {
            do {
                try diff.apply(interface: configuration.interface, wireGuard: kernel.wireGuard, routes: kernel.network)
            } catch let error as RoutesTaken {
                taken = error
            }
            metrics.applied(diff)
            log(planned, plan: plan)
        }
        let configuredAt = noteConfigured(plan)
        // Forced handshakes leave keepalives off plan until the next diff: that one reads the kernel.
        if diff.device.privateKey == nil, taken == nil {
            memory.withLock {
                $0.applied = Applied(
                    plan: plan, privateKey: keys?.privateKey ?? device.privateKey, link: link, mtu: mtu,
                    podCIDRs: local.podCIDRs, endpoint: local.effectiveEndpoint)
            }
        }
        guard last == nil || diff.device.privateKey != nil else {
            // The condition, the metrics and the unencrypted count need handshakes and counters: the next
            // full pass (or a key switch, below) reports them. What the interface runs is the plan now.
            try await publishReport(
                keys: keys,
                device: plan.device(named: configuration.interface, interfaceIndex: link.index, privateKey: nil),
                drops: nil, plan: plan, published: localObject.metadata.annotations)
            if let taken { throw taken }
            return
        }
        // One read of the table's counter serves both: is the table there, and what did it count.
        var counted = try? kernel.filter.unencrypted()
        var drops = counted.map {
            countDrops($0.packets, published: localObject.metadata.annotations[Annotation.unencryptedDrops])
        }
        if try applyRuleset(localPodCIDRs: local.podCIDRs, present: counted != nil) {
            counted = (0, 0)
            drops = countDrops(0, published: nil)
        }
        if !local.podCIDRs.isEmpty {
            try removeStaleBridgeAddresses(podCIDRs: local.podCIDRs)
            try writeCNIConfig(podCIDRs: local.podCIDRs, mtu: mtu)
        }

        let after = diff.isEmpty ? device : try kernel.wireGuard.device(named: configuration.interface)
        try await publishReport(
            keys: keys, device: after, drops: drops, plan: plan, published: localObject.metadata.annotations)
        metrics.observe(plan: plan, device: after, keys: keys, keyIssuedAt: local.keyIssuedAt, unencrypted: counted)
        if let taken { throw taken }
        let condition =
            keys == nil
            ? MeshCondition(
                ready: false, reason: "NoKey",
                message: "the controller has not issued a keypair for this node's enrollment key yet")
            : MeshCondition.evaluate(plan: plan, device: after, now: Date(), configuredAt: configuredAt)
        try await writeCondition(condition)
        let now = Date()
        if after.peers.contains(where: {
            $0.lastHandshake == nil && configuredAt[$0.publicKey].map { now.timeIntervalSince($0) < 180 } == true
        }) {
            // Handshakes come within a second of a peer's configuration (keepalives force one): look again soon,
            // not at the next resync, so that the condition says so.
            memory.withLock { m in
                m.fullPassWanted = true
                m.followUp = min(m.followUp ?? Self.connectingRecheck, Self.connectingRecheck)
            }
        }
    }

    /// Notes when each planned peer key was first configured by this process (`MeshCondition.evaluate`), and
    /// forgets keys no longer planned.
    func noteConfigured(_ plan: MeshPlan) -> [WireGuardKey: Date] {
        let now = Date()
        return memory.withLock { m in
            var next: [WireGuardKey: Date] = [:]
            for peer in plan.peers where !peer.allowedIPs.isEmpty {
                next[peer.publicKey] = m.configuredAt[peer.publicKey] ?? now
            }
            m.configuredAt = next
            return next
        }
    }

    /// Publishes the enrollment key and the settings an audit reads (cluster CIDRs, strict mode) when `node`'s
    /// differ: at the first pass, and whenever someone removed or changed them (a malformed enrollment key
    /// included). A refusal fails the pass (`WriteRefused`).
    func publishSettings(on node: KubeObject) async throws {
        guard let enrollment = memory.withLock({ $0.enrollment }) else { return }
        var wanted = AgentReport.settings(clusterCIDRs: configuration.clusterCIDRs, strict: configuration.strict)
        wanted[Annotation.enrollmentKey] = enrollment.publicKey.base64
        let changes = wanted.filter { node.metadata.annotations[$0.key] != $0.value }
        guard !changes.isEmpty else { return }
        let patch = Patch.merge(
            .object(["metadata": .object(["annotations": .object(changes.mapValues(JSON.string))])]))
        _ = try await api.patch(.nodes, namespace: nil, name: configuration.nodeName, patch, subresource: nil)
        if changes[Annotation.enrollmentKey] != nil {
            logger.info("enrollment key published", metadata: ["enrollmentKey": "\(enrollment.publicKey.base64)"])
        } else {
            logger.info(
                "settings published", metadata: ["annotations": "\(changes.keys.sorted().joined(separator: ","))"])
        }
    }

    /// The Nodes whose wgmesh annotations read, and those that do not, with why.
    func meshNodes(_ objects: [KubeObject]) -> (nodes: [MeshNode], invalid: [(KubeObject, AnnotationError)]) {
        var nodes: [MeshNode] = []
        var invalid: [(KubeObject, AnnotationError)] = []
        for object in objects {
            do {
                nodes.append(try MeshNode(name: object.metadata.name, annotations: object.metadata.annotations))
            } catch { invalid.append((object, error)) }
        }
        return (nodes, invalid)
    }

    /// This node's plan; the listen port is the one the controller published in its endpoint.
    func plan(local: MeshNode?, nodes: [MeshNode], interfaceIndex: UInt32, mtu: UInt32) -> MeshPlan {
        let settings = ClusterSettings(
            clusterCIDRs: configuration.clusterCIDRs,
            listenPort: local?.effectiveEndpoint?.port ?? Self.defaultListenPort,
            persistentKeepalive: configuration.persistentKeepalive, strict: configuration.strict, mtu: mtu)
        return MeshPlan(
            localNode: configuration.nodeName, settings: settings, nodes: nodes, interfaceIndex: interfaceIndex)
    }

    // MARK: the interface

    /// The override, else the endpoint interface's MTU less WireGuard's overhead.
    func tunnelMTU(_ local: MeshNode) throws -> UInt32 {
        if let mtu = configuration.mtu { return mtu }
        guard let address = local.effectiveEndpoint?.address,
            let underlay = try kernel.network.interface(carrying: address)
        else {
            return Self.fallbackMTU
        }
        return TunnelAddressing.mtu(underlayMTU: underlay.mtu)
    }

    /// The WireGuard interface, created when missing and up; an existing one is adopted as it is.
    func ensureLink(mtu: UInt32, adjustMTU: Bool) throws -> LinkState {
        let name = configuration.interface
        let created = try kernel.interfaces.ensure(named: name, mtu: mtu)
        if created {
            logger.info(
                "interface created",
                metadata: ["interface": "\(name)", "backend": "\(kernel.interfaces.backend)", "mtu": "\(mtu)"])
        }
        guard var link = try kernel.network.link(named: name) else {
            throw InterfaceError.notWireGuard(name, kind: nil)
        }
        // A new interface always gets the MTU (wireguard-go makes its tun device with a default of
        // its own); one adopted at start-up keeps its MTU until the first pass knows the right one.
        let setMTU = link.mtu != mtu && (adjustMTU || created)
        if setMTU || !link.isUp {
            try kernel.network.setLink(index: link.index, mtu: setMTU ? mtu : nil, up: true)
            if setMTU { logger.info("interface MTU set", metadata: ["interface": "\(name)", "mtu": "\(mtu)"]) }
            link.mtu = setMTU ? mtu : link.mtu
            link.isUp = true
        }
        return link
    }

    /// Exactly `wanted` on the interface: it is wgmesh's own, so any other address goes.
    func ensureAddresses(_ wanted: [IPPrefix], link: LinkState) throws {
        let have = try kernel.network.addresses(ofLinkIndex: link.index)
        for address in have where !wanted.contains(address) {
            try kernel.network.removeAddress(address, fromLinkIndex: link.index)
            logger.info("interface address removed", metadata: ["address": "\(address)"])
        }
        for address in wanted where !have.contains(address) {
            try kernel.network.addAddress(address, toLinkIndex: link.index, scope: TunnelAddressing.scope)
            logger.info("interface address added", metadata: ["address": "\(address)"])
        }
    }

    /// Writes the table when it changed or is not `present` (deleted by hand, it comes back); true when written.
    func applyRuleset(localPodCIDRs: [IPPrefix], present: Bool) throws -> Bool {
        let ruleset = FirewallRuleset.ruleset(
            interface: configuration.interface, localPodCIDRs: localPodCIDRs,
            clusterCIDRs: configuration.clusterCIDRs, strict: configuration.strict)
        guard !present || memory.withLock({ $0.ruleset }) != ruleset else { return false }
        try kernel.filter.apply(ruleset)
        memory.withLock { $0.ruleset = ruleset }
        logger.info(
            "nftables table inet \(FirewallRuleset.table) written",
            metadata: ["podCIDRs": "\(localPodCIDRs.map(\.description).joined(separator: ","))"])
        return true
    }

    /// Removes the addresses of the CNI bridge that lie in the cluster CIDRs but outside this node's Pod CIDRs:
    /// the gateways of an earlier install or allocation. The bridge plugin refuses to add a Pod to a bridge
    /// with another gateway ("already has an IP address different from …"), and their routes would keep a
    /// peer's Pod CIDR out of the tunnel. The bridge is wgmesh's: its CNI configuration names it.
    func removeStaleBridgeAddresses(podCIDRs: [IPPrefix]) throws {
        guard let bridge = try kernel.network.link(named: CNIConfig.bridge), bridge.kind == "bridge" else { return }
        for address in try kernel.network.addresses(ofLinkIndex: bridge.index)
        where configuration.clusterCIDRs.contains(where: { $0.contains(address.address) })
            && !podCIDRs.contains(where: { $0.contains(address.address) })
        {
            try kernel.network.removeAddress(address, fromLinkIndex: bridge.index)
            logger.info(
                "stale address removed from the CNI bridge",
                metadata: ["bridge": "\(CNIConfig.bridge)", "address": "\(address)"])
        }
    }

    /// The CNI configuration, written only when its content changes.
    func writeCNIConfig(podCIDRs: [IPPrefix], mtu: UInt32) throws {
        let path = configuration.cniFile
        let text = Array(CNIConfig.conflist(podCIDRs: podCIDRs, mtu: mtu).utf8)
        if try AtomicFile.read(path) == text { return }
        try AtomicFile.write(path, text, mode: 0o644)
        logger.info(
            "CNI configuration written",
            metadata: ["file": "\(path)", "podCIDRs": "\(podCIDRs.map(\.description).joined(separator: ","))"])
    }

    // MARK: reporting

    /// The unencrypted-packet count after the table's counter read `reading`: it goes on from the count this
    /// process has, else from the one this node published (a restarted agent adds only what the table
    /// counted since).
    func countDrops(_ reading: UInt64, published: String?) -> UnencryptedDrops {
        memory.withLock { m in
            let next = (m.drops ?? published.flatMap(UnencryptedDrops.init) ?? UnencryptedDrops()).observing(
                counter: reading, at: Date())
            m.drops = next
            return next
        }
    }

    /// What the node runs, in one annotation patch of the values that changed: `applied-key-generation`,
    /// `applied-peers` (the keys the interface routes to, so that `wgmesh rotate-keys --wait` can tell every
    /// peer moved to a new key) and `unencrypted-drops`. Every agent watches every Node, so a value that
    /// changes with every join or every pass would make each write a pass on every node: `applied-peers`
    /// is written at once when a peer moved to another key and otherwise at most once per resync period,
    /// and `unencrypted-drops` at most once per resync period while it grows.
    func publishReport(
        keys: NodeKeys?, device: DeviceState, drops: UnencryptedDrops?, plan: MeshPlan, published: [String: String]
    ) async throws {
        let keysMoved = memory.withLock { $0.lastPlan }.map { plan.movesKeys(from: $0) } ?? true
        var changes: [String: String] = [:]
        if let keys { changes[Annotation.appliedKeyGeneration] = String(keys.generation) }
        let now = ContinuousClock.now
        func due(_ last: ContinuousClock.Instant?) -> Bool {
            last.map { now - $0 >= configuration.resyncPeriod } ?? true
        }
        if keysMoved || due(memory.withLock { $0.peersPublished }) {
            changes[Annotation.appliedPeers] = AppliedPeers.digest(
                device.peers.filter { !$0.allowedIPs.isEmpty }.map(\.publicKey))
        }
        if let drops, due(memory.withLock { $0.dropsPublished }) {
            changes[Annotation.unencryptedDrops] = drops.description
        }
        changes = changes.filter { published[$0.key] != $0.value }
        if !changes.isEmpty {
            let patch = Patch.merge(
                .object(["metadata": .object(["annotations": .object(changes.mapValues(JSON.string))])]))
            _ = try await api.patch(.nodes, namespace: nil, name: configuration.nodeName, patch, subresource: nil)
        }
        memory.withLock { $0.lastPlan = plan }
        guard !changes.isEmpty else { return }
        if changes[Annotation.appliedPeers] != nil { memory.withLock { $0.peersPublished = now } }
        if changes[Annotation.unencryptedDrops] != nil { memory.withLock { $0.dropsPublished = now } }
        if let generation = changes[Annotation.appliedKeyGeneration] {
            logger.info("the interface runs key generation \(generation)", metadata: ["generation": "\(generation)"])
        }
        if let value = changes[Annotation.unencryptedDrops], drops?.packets ?? 0 > 0 {
            logger.warning("Pod packets counted leaving unencrypted", metadata: ["unencryptedDrops": "\(value)"])
        }
    }

    /// The `WireGuardMeshReady` condition, through the status subresource, only when it changes.
    func writeCondition(_ condition: MeshCondition) async throws {
        guard memory.withLock({ $0.condition }) != condition else { return }
        let now = RFC3339.format(Date())
        let entry: JSON = .object([
            "type": .string(MeshCondition.type), "status": .string(condition.ready ? "True" : "False"),
            "reason": .string(condition.reason), "message": .string(condition.message),
            "lastTransitionTime": .string(now), "lastHeartbeatTime": .string(now),
        ])
        // Strategic merge: conditions merge by type, so the kubelet's own conditions stay.
        _ = try await api.patch(
            .nodes, namespace: nil, name: configuration.nodeName,
            .strategicMerge(.object(["status": .object(["conditions": .array([entry])])])), subresource: "status")
        memory.withLock { $0.condition = condition }
        logger.info(
            "condition \(MeshCondition.type)=\(condition.ready ? "True" : "False")",
            metadata: ["reason": "\(condition.reason)", "message": "\(condition.message)"])
    }

    /// An Event about `object` and a log line, once per process for the same text.
    func report(_ object: KubeObject, warning: Bool, reason: String, note: String) async {
        let key = object.metadata.name + "\u{0}" + reason + "\u{0}" + note
        guard memory.withLock({ $0.reported.insert(key).inserted }) else { return }
        if warning {
            logger.warning("\(reason)", metadata: ["about": "\(object.metadata.name)", "note": "\(note)"])
        } else {
            logger.info("\(reason)", metadata: ["about": "\(object.metadata.name)", "note": "\(note)"])
        }
        // A metadata-only object says PartialObjectMetadata; the Event is about the Node.
        var json = object.json.object ?? [:]
        json["kind"] = "Node"
        json["apiVersion"] = "v1"
        let node = (try? KubeObject(json: .object(json))) ?? object
        await events.record(about: node, warning: warning, reason: reason, action: "Reconcile", note: note)
    }

    /// A diff of more changes than this is logged as one line of counts, the changes themselves at debug
    /// level: a node joining a 5,000-node cluster logs one line, not 10,000.
    static let loggedChangeLimit = 20

    /// One line per peer and route change (the forced keepalives of a key switch are not changes).
    func log(_ diff: MeshDiff, plan: MeshPlan) {
        let owners = Dictionary(plan.peers.map { ($0.publicKey, $0.node) }, uniquingKeysWith: { a, _ in a })
        let peers = diff.device.peers
        let changes = peers.count + diff.routesToAdd.count + diff.routesToReplace.count + diff.routesToDelete.count
        let level: Logger.Level = changes > Self.loggedChangeLimit ? .debug : .info
        if level == .debug {
            let added = peers.filter { !$0.remove && !$0.updateOnly }.count
            let removed = peers.filter(\.remove).count
            logger.info(
                "\(changes) changes applied",
                metadata: [
                    "peersAdded": "\(added)", "peersUpdated": "\(peers.count - added - removed)",
                    "peersRemoved": "\(removed)",
                    "routesAdded": "\(diff.routesToAdd.count)", "routesReplaced": "\(diff.routesToReplace.count)",
                    "routesDeleted": "\(diff.routesToDelete.count)",
                ])
        }
        for peer in peers {
            let who = owners[peer.publicKey] ?? "a node no longer in the plan"
            let what = peer.remove ? "peer removed" : peer.updateOnly ? "peer updated" : "peer added"
            logger.log(
                level: level, "\(what)",
                metadata: [
                    "peer": "\(who)", "allowedIPs": "\(peer.allowedIPs.map(\.description).joined(separator: ","))",
                ])
        }
        for r in diff.routesToAdd { logger.log(level: level, "route added", metadata: ["route": "\(r.destination)"]) }
        for r in diff.routesToReplace {
            logger.log(level: level, "route replaced", metadata: ["route": "\(r.destination)"])
        }
        for r in diff.routesToDelete {
            logger.log(level: level, "route deleted", metadata: ["route": "\(r.destination)"])
        }
    }
}

/// A pass that cannot do its work, with the condition's reason and a sentence for people.
struct PassFailure: Error, CustomStringConvertible {
    var reason: String
    var message: String
    var description: String { "\(reason): \(message)" }
}
