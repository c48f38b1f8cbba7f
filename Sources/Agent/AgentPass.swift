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

    /// One pass: plan from every Node, apply the difference, report. A full pass reads the kernel and
    /// reports the condition and metrics; otherwise the plan is diffed against the last pass's when the
    /// node's own inputs are unchanged. Never throws: a failure is logged and counted, and the next pass
    /// starts again from what the kernel reports.
    public func reconcile(_ objects: [KubeObject], full: Bool = true) async {
        let started = ContinuousClock.now
        do {
            try await pass(objects, full: full)
            metrics.reconciled(after: ContinuousClock.now - started, failed: false)
            state.withLock { m in
                m.retry.reset()
                m.failure = nil
                m.passes += 1
            }
        } catch {
            metrics.reconciled(after: ContinuousClock.now - started, failed: true)
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
                    the API server refused the agent's write for good (\(kube.code ?? 0) \
                    \(kube.status?.reason ?? "")): \(kube.status?.message ?? "\(kube)"); the agent's RBAC or an \
                    admission policy does not allow what it writes \
                    (docs/operations.md, "Security model"); it tries again, backed off
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
        if let enrollment = state.withLock({ $0.enrollment }) {
            do {
                keys = try NodeKeys.open(local, enrollmentPrivateKey: enrollment.privateKey)
            } catch {
                throw PassFailure(reason: "SealedKeyInvalid", message: "\(error)")
            }
        }

        let last =
            full
            ? nil
            : state.withLock { $0.applied }.flatMap {
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
            state.withLock { $0.followUp = .zero }
            logger.info(
                "switching the interface to a new private key",
                metadata: ["generation": "\(keys?.generation ?? 0)", "peers": "\(plan.peers.count)"])
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
            log(planned, plan: plan)
        }
        let configuredAt = noteConfigured(plan)
        // Forced handshakes leave keepalives off plan until the next diff: that one reads the kernel.
        if diff.device.privateKey == nil, taken == nil {
            state.withLock {
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
            state.withLock { m in
                m.fullPassWanted = true
                m.followUp = min(m.followUp ?? Self.connectingRecheck, Self.connectingRecheck)
            }
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
}

/// A pass that cannot do its work, with the condition's reason and a sentence for people.
struct PassFailure: Error, CustomStringConvertible {
    var reason: String
    var message: String
    var description: String { "\(reason): \(message)" }
}
