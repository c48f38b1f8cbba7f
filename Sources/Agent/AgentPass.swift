import Kube
import Logging
import Synchronization
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension MeshAgent {
    // MARK: one pass

    /// One pass: plan from the Nodes, apply the difference, report. A full pass reads every Node and the
    /// kernel, computes the plan from scratch and reports the condition and metrics; otherwise only the Nodes
    /// changed since the last pass are read, and when the node's own inputs are unchanged, the incremental
    /// plan's change alone is applied. Never throws: a failure is logged and counted, and the next pass starts
    /// again from what the kernel reports.
    public func reconcile(_ objects: [KubeObject], peers: [KubeObject] = [], full: Bool = true) async {
        let byName = Dictionary(objects.map { ($0.metadata.name, $0) }, uniquingKeysWith: { a, _ in a })
        await reconcile(NodeView(get: { byName[$0] }, all: { objects }, peers: { peers }), full: full)
    }

    func reconcile(_ view: NodeView, full: Bool) async {
        let started = ContinuousClock.now
        do {
            try await pass(view, full: full)
            metrics.reconciled(after: ContinuousClock.now - started, failed: false)
            state.withLock { m in
                m.retry.reset()
                m.failure = nil
                m.passes += 1
            }
        } catch {
            metrics.reconciled(after: ContinuousClock.now - started, failed: true)
            // The pass may have read Nodes that never reached the planner: the next one plans them all again,
            // from the parsed Nodes, which hold every change read.
            planning.withLock { $0.planner = nil }
            let failure = Self.condition(failed: error)
            if failure.reason == Self.writeRefused { metrics.writeRefused() }
            // Retried from the kernel's state: after 0.5 s, doubling up to the resync period.
            let delay = state.withLock { m in
                m.failure = failure
                m.applied = nil
                m.passes += 1
                m.followUp = m.retry.next()
                return m.followUp!
            }
            logger.error(
                "reconcile failed; the next pass retries from the kernel's state",
                metadata: ["reason": "\(failure.reason)", "error": "\(error)", "retryIn": "\(delay)"])
            // Told where people look: an Event on this Node (once per text) and the condition, unless the
            // API is what fails. A malformed annotation is the controller's to report: one reporter per problem.
            if failure.reason != "InvalidAnnotation", let own = view.get(configuration.nodeName) {
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
                    the API server refused the agent's write for good (\(kube.code ?? 0) \
                    \(kube.status?.reason ?? "")): \(kube.status?.message ?? "\(kube)"); the agent's RBAC or an \
                    admission policy does not allow what it writes \
                    (docs/operations.md, "Security model"); it tries again, backed off
                    """)
        default:
            return .failed(reason: "ReconcileFailed", message: "\(error)")
        }
    }

    func pass(_ view: NodeView, full: Bool) async throws {
        let name = configuration.nodeName
        // The Peers first: the Nodes read next get the prefixes of the peers they hold.
        var changes = full ? readPeers(view.peers(), now: Date()) : [:]
        changes.merge(readChanges(view, everything: full)) { _, node in node }
        guard let localObject = view.get(name) else {
            throw PassFailure(
                reason: "NodeNotFound",
                message: "Node \(name) is not in the API yet: the kubelet registers it, and the agent waits for it")
        }
        try await publishSettings(on: localObject)
        let local: MeshNode
        switch planning.withLock({ $0.parsed[name]?.node }) {
        case .success(let node)?: local = node
        case .failure(let error)?:
            // Reported as the pass's failure, in the condition (the Event is the controller's).
            throw PassFailure(
                reason: "InvalidAnnotation",
                message: "this node's wgmesh annotations do not read, so nothing changes until they do: \(error)")
        case nil:
            throw PassFailure(reason: "InvalidAnnotation", message: "this node's wgmesh annotations are unreadable")
        }

        // The node's own keys: a key that does not open, or does not match, changes nothing.
        let keys = try openKeys(local)
        // The incremental change alone is applied when what the last pass left is known and the node's own
        // inputs (Pod CIDRs, endpoint, key) are the same; otherwise the kernel is read.
        let last =
            full
            ? nil
            : state.withLock { $0.applied }.flatMap {
                $0.podCIDRs == local.podCIDRs && $0.endpoint == local.effectiveEndpoint
                    && (keys == nil || keys?.privateKey == $0.privateKey) ? $0 : nil
            }
        let link: LinkState
        let mtu: UInt32
        if let last {
            (link, mtu) = (last.link, last.mtu)
        } else {
            mtu = try tunnelMTU(local)
            link = try ensureLink(mtu: mtu, adjustMTU: true)
            try ensureAddresses(TunnelAddressing.addresses(podCIDRs: local.podCIDRs), link: link)
        }
        let settings = settings(local: local, mtu: mtu)
        let (delta, fullPlan) = plan(
            changes, settings: settings, interfaceIndex: link.index, fromScratch: full, whole: last == nil)
        if delta?.movesKeys ?? true { state.withLock { $0.keysMoved = true } }
        for exclusion in delta?.newlyExcluded ?? [] where !exclusion.isJoining {
            // The controller reports it in an Event: one reporter for the whole cluster.
            logger.warning("node left out", metadata: ["about": "\(exclusion.node)", "why": "\(exclusion.reason)"])
        }

        var diff: MeshDiff
        var read: (device: DeviceState, routes: [Route])?
        if last != nil, let delta {
            diff = delta.diff(listenPort: settings.listenPort, interfaceIndex: link.index)
        } else {
            let device = try kernel.wireGuard.device(named: configuration.interface)
            let routes = try kernel.network.routes(family: nil)
            read = (device, routes)
            diff = MeshDiff(plan: fullPlan!, actual: device, actualRoutes: routes, privateKey: keys?.privateKey)
        }
        let planned = diff
        if let read, diff.device.privateKey != nil, !fullPlan!.peers.isEmpty {
            // A new private key: make every peer handshake at once instead of after a retry timeout. The
            // pass that follows at once reads the kernel and sets the keepalives back to the plan.
            diff.forceHandshakes(plan: fullPlan!, current: read.device)
            state.withLock { $0.followUp = .zero }
            logger.info(
                "switching the interface to a new private key",
                metadata: ["generation": "\(keys?.generation ?? 0)", "peers": "\(fullPlan!.peers.count)"])
        }
        state.withLock { $0.applied = nil }
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
            log(
                planned,
                owners: fullPlan.map {
                    Dictionary($0.peers.map { ($0.publicKey, $0.node) }, uniquingKeysWith: { a, _ in a })
                } ?? delta?.owners ?? [:])
        }
        var configuredAt: [WireGuardKey: Date] = [:]
        if let fullPlan {
            configuredAt = noteConfigured(fullPlan.nodesOnly)
        } else if let delta {
            noteConfigured(delta)
        }
        // Forced handshakes leave keepalives off plan until the next diff: that one reads the kernel.
        if diff.device.privateKey == nil, taken == nil {
            state.withLock {
                $0.applied = Applied(
                    privateKey: keys?.privateKey ?? read?.device.privateKey ?? last?.privateKey, link: link, mtu: mtu,
                    podCIDRs: local.podCIDRs, endpoint: local.effectiveEndpoint)
            }
        }
        guard let read, let plan = fullPlan?.nodesOnly, let whole = fullPlan else {
            // The condition, the metrics and the unencrypted count need handshakes and counters: the next
            // full pass (or a key switch) reports them. What the interface runs is the plan now.
            try await publishReport(
                keys: keys, routedKeys: { self.planning.withLock { $0.planner?.routedKeys ?? [] } }, drops: nil,
                published: localObject.metadata.annotations)
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

        let after = diff.isEmpty ? read.device : try kernel.wireGuard.device(named: configuration.interface)
        try await publishReport(
            keys: keys,
            routedKeys: {
                let outside = Set(whole.peers.filter(\.isOutsidePeer).map(\.publicKey))
                return after.peers.filter { !$0.allowedIPs.isEmpty && !outside.contains($0.publicKey) }.map(\.publicKey)
            }, drops: drops,
            published: localObject.metadata.annotations)
        metrics.observe(plan: plan, device: after, keys: keys, keyIssuedAt: local.keyIssuedAt, unencrypted: counted)
        await publishHandshakes(after)
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
            // not at the next resync, so that the condition says so. Each look is a full pass: backed off (3 s,
            // doubling up to the resync period) while a peer stays silent, a node that is down for instance.
            // The passes that Node events make in between stay incremental.
            state.withLock { m in
                let delay = m.recheck.next()
                m.followUp = min(m.followUp ?? delay, delay)
                m.followUpIsFull = true
            }
        } else {
            state.withLock { $0.recheck.reset() }
        }
    }

    /// Notes when each planned peer key was first configured by this process (`MeshCondition.evaluate`), and
    /// forgets keys no longer planned.
    func noteConfigured(_ plan: MeshPlan) -> [WireGuardKey: Date] {
        let now = Date()
        return state.withLock { m in
            var next: [WireGuardKey: Date] = [:]
            for peer in plan.peers where !peer.allowedIPs.isEmpty {
                next[peer.publicKey] = m.configuredAt[peer.publicKey] ?? now
            }
            m.configuredAt = next
            return next
        }
    }

    /// The same for the keys an incremental change adds and removes.
    func noteConfigured(_ delta: MeshPlanner.Delta) {
        let now = Date()
        let kept = Set(delta.after.values.compactMap(\.routedKey))
        state.withLock { m in
            for key in delta.before.values.compactMap(\.routedKey) where !kept.contains(key) {
                m.configuredAt[key] = nil
            }
            for key in kept where m.configuredAt[key] == nil { m.configuredAt[key] = now }
        }
    }

    /// Publishes the enrollment key and the settings an audit reads (cluster CIDRs, strict mode) when `node`'s
    /// differ: at the first pass, and whenever someone removed or changed them (a malformed enrollment key
    /// included). A refusal fails the pass (`WriteRefused`).
    func publishSettings(on node: KubeObject) async throws {
        guard let enrollment = state.withLock({ $0.enrollment }) else { return }
        var wanted = AgentReport.settings(clusterCIDRs: configuration.clusterCIDRs, strict: configuration.strict)
        wanted[Annotation.enrollmentKey] = enrollment.publicKey.base64
        let changes = wanted.filter { node.metadata.annotations[$0.key] != $0.value }
        guard !changes.isEmpty else { return }
        let patch = Patch.annotations(changes)
        _ = try await api.patch(.nodes, namespace: nil, name: configuration.nodeName, patch, subresource: nil)
        if changes[Annotation.enrollmentKey] != nil {
            logger.info("enrollment key published", metadata: ["enrollmentKey": "\(enrollment.publicKey.base64)"])
        } else {
            logger.info(
                "settings published", metadata: ["annotations": "\(changes.keys.sorted().joined(separator: ","))"])
        }
    }

    /// The Nodes whose wgmesh annotations read, and those that do not, with why (the dry run).
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

    /// The Nodes changed since the last pass, read: a Node's wgmesh annotations are parsed once per
    /// resourceVersion. `everything`: every Node is compared by resourceVersion (a resync); otherwise only
    /// those the informer's events named. A Node whose annotations do not read is out of the plan (nil), as
    /// a deleted one is.
    func readChanges(_ view: NodeView, everything: Bool) -> [String: MeshNode?] {
        let named = state.withLock { m in
            defer { m.changedNodes = [] }
            return m.changedNodes
        }
        var objects: [String: KubeObject?] = [:]
        if everything {
            for object in view.all() { objects[object.metadata.name] = object }
            for name in planning.withLock({ Array($0.parsed.keys) }) where objects[name] == nil {
                objects[name] = .some(nil)
            }
        } else {
            for name in named { objects[name] = .some(view.get(name)) }
        }
        let known = planning.withLock { p in objects.keys.map { ($0, p.parsed[$0]?.resourceVersion) } }
        var parsed: [String: ParsedNode?] = [:]
        for (name, version) in known {
            guard let object = objects[name] ?? nil else {
                if version != nil { parsed[name] = .some(nil) }
                continue
            }
            let resourceVersion = object.metadata.resourceVersion
            if let version, version == resourceVersion { continue }
            parsed[name] = ParsedNode(
                resourceVersion: resourceVersion,
                node: Result { () throws(AnnotationError) in
                    try MeshNode(name: name, annotations: object.metadata.annotations)
                })
        }
        return planning.withLock { p in
            var changes: [String: MeshNode?] = [:]
            for (name, node) in parsed {
                p.parsed[name] = node
                changes[name] = .some((try? node?.node.get()).map(p.outside.adding))
            }
            return changes
        }
    }

    /// The node's own keys, opened from the sealed box once per state of its annotations.
    func openKeys(_ local: MeshNode) throws -> NodeKeys? {
        guard let enrollment = state.withLock({ $0.enrollment }) else { return nil }
        if let opened = planning.withLock({ $0.opened }), opened.node == local,
            opened.enrollment == enrollment.publicKey
        {
            return opened.keys
        }
        do {
            let keys = try NodeKeys.open(local, enrollmentPrivateKey: enrollment.privateKey)
            planning.withLock { $0.opened = (local, enrollment.publicKey, keys) }
            return keys
        } catch {
            throw PassFailure(reason: "SealedKeyInvalid", message: "\(error)")
        }
    }

    /// The incremental planner's change for `changes` (nil when the planner starts anew: first pass, or new
    /// settings), and the whole plan when the kernel is read (`whole`). `fromScratch`: the whole plan is
    /// computed from every Node and compared with the incremental one; a difference is a bug, logged and
    /// counted, and the plan from scratch wins.
    func plan(
        _ changes: [String: MeshNode?], settings: ClusterSettings, interfaceIndex: UInt32, fromScratch: Bool,
        whole: Bool
    ) -> (delta: MeshPlanner.Delta?, plan: MeshPlan?) {
        let name = configuration.nodeName
        let (delta, plan, differing) = planning.withLock { p -> (MeshPlanner.Delta?, MeshPlan?, [String]) in
            var delta: MeshPlanner.Delta?
            // Compared without binding the planner, so that `apply` mutates it in place.
            if p.planner?.settings == settings, p.planner?.interfaceIndex == interfaceIndex {
                delta = p.planner!.apply(changes)
            } else {
                p.planner = MeshPlanner(
                    localNode: name, settings: settings, interfaceIndex: interfaceIndex, nodes: p.nodes)
            }
            guard fromScratch else { return (delta, whole || delta == nil ? p.planner!.plan : nil, []) }
            let scratch = MeshPlan(localNode: name, settings: settings, nodes: p.nodes, interfaceIndex: interfaceIndex)
            guard delta != nil else { return (delta, scratch, []) }
            let incremental = p.planner!.plan
            guard incremental != scratch else { return (delta, scratch, []) }
            p.planner = MeshPlanner(localNode: name, settings: settings, interfaceIndex: interfaceIndex, nodes: p.nodes)
            return (delta, scratch, MeshPlan.nodesDiffering(incremental, scratch))
        }
        if !differing.isEmpty {
            metrics.planMismatched()
            logger.error(
                """
                the incremental plan differs from the plan from scratch (a bug in wgmesh): the plan from scratch \
                is applied
                """,
                metadata: ["nodes": "\(differing.prefix(10).joined(separator: ","))", "count": "\(differing.count)"])
        }
        return (delta, plan)
    }

    /// This node's plan from `nodes`, from scratch (the dry run, and strict mode before the first pass).
    func plan(local: MeshNode?, nodes: [MeshNode], interfaceIndex: UInt32, mtu: UInt32) -> MeshPlan {
        MeshPlan(
            localNode: configuration.nodeName, settings: settings(local: local, mtu: mtu), nodes: nodes,
            interfaceIndex: interfaceIndex)
    }

    /// The cluster settings of this node's plan; the listen port is the one the controller published in its
    /// endpoint.
    func settings(local: MeshNode?, mtu: UInt32) -> ClusterSettings {
        ClusterSettings(
            clusterCIDRs: configuration.clusterCIDRs,
            listenPort: local?.effectiveEndpoint?.port ?? Self.defaultListenPort,
            persistentKeepalive: configuration.persistentKeepalive, strict: configuration.strict, mtu: mtu,
            peerCIDRs: configuration.peerCIDRs)
    }
}

/// The Nodes as a pass reads them: the informer's cache; and the Peers, which a full pass reads.
struct NodeView: Sendable {
    var get: @Sendable (String) -> KubeObject?
    var all: @Sendable () -> [KubeObject]
    var peers: @Sendable () -> [KubeObject] = { [] }
}

/// A Node's wgmesh annotations as read at one resourceVersion.
struct ParsedNode: Sendable {
    var resourceVersion: String?
    var node: Result<MeshNode, AnnotationError>
}

/// A pass that cannot do its work, with the condition's reason and a sentence for people.
struct PassFailure: Error, CustomStringConvertible {
    var reason: String
    var message: String
    var description: String { "\(reason): \(message)" }
}
