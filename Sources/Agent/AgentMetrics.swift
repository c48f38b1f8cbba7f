import Prometheus
import Synchronization
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The agent's Prometheus metrics. Peers are labelled by node name, never by key.
public final class AgentMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let peersPlanned, peersConfigured, peersRecent, keyGeneration, keyAge, lastPassSucceeded: Gauge
    let reconcileDuration: DurationHistogram
    let reconcileErrors, writesRefused, netlinkOperations, unencryptedPackets, unencryptedBytes, planMismatches: Counter
    let perPeer = Mutex<[String: [Gauge]]>([:])
    let outsidePeers = Mutex<[String: Gauge]>([:])
    let lastUnencrypted = Mutex<(packets: UInt64, bytes: UInt64)>((0, 0))

    /// Per-peer series (handshake age, bytes) only while the mesh has at most this many peers: each
    /// node exporting one series per peer is N² series across a cluster, more than a Prometheus holds
    /// at thousands of nodes. Beyond it, the aggregate gauges stay.
    public let perPeerLimit: Int

    public init(perPeerLimit: Int = 100) {
        self.perPeerLimit = perPeerLimit
        peersPlanned = registry.makeGauge(
            descriptor: Self.name("peers_planned", "", "Peers this node should have (current keys)."))
        peersConfigured = registry.makeGauge(
            descriptor: Self.name("peers_configured", "", "Planned peers present on the WireGuard interface."))
        peersRecent = registry.makeGauge(
            descriptor: Self.name("peers_handshake_recent", "", "Planned peers with a handshake in the last 3 minutes.")
        )
        keyGeneration = registry.makeGauge(
            descriptor: Self.name("key_generation", "", "The key generation the interface runs."))
        keyAge = registry.makeGauge(
            descriptor: Self.name("key_age", "seconds", "Time since the controller issued the running key."))
        reconcileDuration = registry.makeDurationHistogram(
            descriptor: Self.name("reconcile_duration", "seconds", "Time of one reconcile pass."),
            buckets: [
                .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250),
                .seconds(1), .seconds(5), .seconds(30),
            ])
        reconcileErrors = registry.makeCounter(
            descriptor: Self.name("reconcile_errors", "total", "Reconcile passes that failed."))
        lastPassSucceeded = registry.makeGauge(
            descriptor: Self.name(
                "reconcile_last_succeeded", "",
                """
                1 when the last reconcile pass succeeded, 0 when it failed (the WireGuardMeshReady condition says \
                why).
                """
            ))
        writesRefused = registry.makeCounter(
            descriptor: Self.name(
                "api_writes_refused", "total",
                "Writes of the agent that the API server refused for good (RBAC or an admission policy: 400, 403, 422)."
            ))
        netlinkOperations = registry.makeCounter(
            descriptor: Self.name("netlink_operations", "total", "Peer, key and route changes applied through netlink.")
        )
        unencryptedPackets = registry.makeCounter(
            descriptor: Self.name(
                "unencrypted_packets_dropped", "total",
                """
                Pod packets to another node's Pod CIDR that would have left by another interface than the tunnel \
                (dropped in strict mode, counted only otherwise).
                """
            ))
        unencryptedBytes = registry.makeCounter(
            descriptor: Self.name("unencrypted_bytes_dropped", "total", "Bytes of those packets."))
        planMismatches = registry.makeCounter(
            descriptor: Self.name(
                "plan_mismatches", "total",
                """
                Resyncs at which the incremental plan differed from the plan computed from scratch (a bug: the plan \
                from scratch was applied).
                """
            ))
    }

    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "wgmesh", metricName: metric, unitName: unit, helpText: help)
    }

    func reconciled(after duration: Duration, failed: Bool) {
        reconcileDuration.record(duration)
        if failed { reconcileErrors.increment() }
        lastPassSucceeded.set(Double(failed ? 0 : 1))
    }

    func writeRefused() { writesRefused.increment() }

    /// The handshake age of each outside peer (a Peer) this node holds:
    /// `wgmesh_outside_peer_handshake_age_seconds{peer}`, -1 before the first one; a peer no longer held
    /// leaves the metrics.
    func observeOutsidePeers(_ held: [OutsidePeer], device: DeviceState, now: Date = Date()) {
        let have = Dictionary(device.peers.map { ($0.publicKey, $0) }, uniquingKeysWith: { a, _ in a })
        var gauges: [String: Gauge] = [:]
        for peer in held {
            let gauge = registry.makeGauge(
                descriptor: Self.name(
                    "outside_peer_handshake_age", "seconds",
                    "Time since the last handshake with an outside peer this node is the gateway of (-1: none yet)."),
                labels: [("peer", peer.name)])
            let seconds = have[peer.publicKey]?.lastHandshakeSeconds ?? 0
            gauge.set(seconds > 0 ? now.timeIntervalSince1970 - Double(seconds) : -1)
            gauges[peer.name] = gauge
        }
        let gone = outsidePeers.withLock { old in
            defer { old = gauges }
            return old.filter { gauges[$0.key] == nil }.map(\.value)
        }
        for g in gone { registry.unregisterGauge(g) }
    }

    func planMismatched() { planMismatches.increment() }

    func applied(_ diff: MeshDiff) {
        netlinkOperations.increment(
            by: Int64(
                diff.device.peers.count + diff.routesToAdd.count + diff.routesToReplace.count
                    + diff.routesToDelete.count
                    + (diff.device.privateKey == nil ? 0 : 1)))
    }

    /// `unencrypted` is the nftables counter as last read (nil: no table).
    func observe(
        plan: MeshPlan, device: DeviceState, keys: NodeKeys?, keyIssuedAt: Date?,
        unencrypted: (packets: UInt64, bytes: UInt64)?,
        now: Date = Date()
    ) {
        let current = plan.peers.filter { !$0.allowedIPs.isEmpty }
        let have = Dictionary(device.peers.map { ($0.publicKey, $0) }, uniquingKeysWith: { a, _ in a })
        peersPlanned.set(Double(current.count))
        peersConfigured.set(Double(current.filter { have[$0.publicKey] != nil }.count))
        var recent = 0
        var gauges: [String: [Gauge]] = [:]
        for peer in current {
            let state = have[peer.publicKey]
            let age = state.flatMap { s in
                s.lastHandshakeSeconds > 0 ? now.timeIntervalSince1970 - Double(s.lastHandshakeSeconds) : nil
            }
            if let age, age < 180 { recent += 1 }
            guard current.count <= perPeerLimit else { continue }
            let labels = [("node", peer.node)]
            let g = [
                registry.makeGauge(
                    descriptor: Self.name(
                        "peer_handshake_age", "seconds", "Time since the peer's last handshake (-1: none yet)."),
                    labels: labels),
                registry.makeGauge(
                    descriptor: Self.name("peer_received", "bytes", "Bytes received from the peer."), labels: labels),
                registry.makeGauge(
                    descriptor: Self.name("peer_transmitted", "bytes", "Bytes sent to the peer."), labels: labels),
            ]
            g[0].set(age ?? -1)
            g[1].set(Double(state?.receivedBytes ?? 0))
            g[2].set(Double(state?.transmittedBytes ?? 0))
            gauges[peer.node] = g
        }
        peersRecent.set(Double(recent))
        // Nodes that left the plan leave the metrics too.
        let gone = perPeer.withLock { old in
            defer { old = gauges }
            return old.filter { gauges[$0.key] == nil }.flatMap(\.value)
        }
        for g in gone { registry.unregisterGauge(g) }
        keyGeneration.set(Double(keys?.generation ?? 0))
        keyAge.set(keyIssuedAt.map { now.timeIntervalSince($0) } ?? 0)
        if let counted = unencrypted {
            // The kernel counts from the table's creation; a table written anew starts at zero again.
            let (dp, db) = lastUnencrypted.withLock { last in
                defer { last = counted }
                return counted.packets >= last.packets
                    ? (counted.packets - last.packets, counted.bytes &- last.bytes) : (counted.packets, counted.bytes)
            }
            if dp > 0 { unencryptedPackets.increment(by: Int64(dp)) }
            if db > 0 { unencryptedBytes.increment(by: Int64(db)) }
        }
    }
}
