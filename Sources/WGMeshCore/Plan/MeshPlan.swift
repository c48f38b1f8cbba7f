/// Cluster-wide settings every agent shares.
public struct ClusterSettings: Sendable, Hashable {
    public var clusterCIDRs: [IPPrefix]
    public var listenPort: UInt16
    /// Seconds; 0 turns keepalives off.
    public var persistentKeepalive: UInt16
    /// Route the whole cluster CIDR into the interface, so a Pod CIDR without a peer is dropped, not sent in the clear.
    public var strict: Bool
    public var mtu: UInt32
    public var routeTable: UInt32
    /// Metric of the strict-mode cluster routes: above the per-node routes, which longest-prefix match prefers anyway.
    public var strictRouteMetric: UInt32
    /// The outside peers' address ranges (the controller's `--peer-cidr`): in strict mode routed into the
    /// interface like the cluster CIDRs, and never masqueraded.
    public var peerCIDRs: [IPPrefix]

    public init(
        clusterCIDRs: [IPPrefix], listenPort: UInt16 = 51820, persistentKeepalive: UInt16 = 0, strict: Bool = true,
        mtu: UInt32 = 1420, routeTable: UInt32 = Route.mainTable, strictRouteMetric: UInt32 = 2000,
        peerCIDRs: [IPPrefix] = []
    ) {
        self.clusterCIDRs = clusterCIDRs
        self.peerCIDRs = peerCIDRs
        self.listenPort = listenPort
        self.persistentKeepalive = persistentKeepalive
        self.strict = strict
        self.mtu = mtu
        self.routeTable = routeTable
        self.strictRouteMetric = strictRouteMetric
    }
}

/// A peer the local interface should have.
public struct DesiredPeer: Sendable, Hashable {
    public var node: String
    public var publicKey: WireGuardKey
    /// Nil for an outside peer behind NAT: the kernel learns it from the peer's handshakes.
    public var endpoint: Endpoint?
    public var persistentKeepalive: UInt16
    /// Sorted and canonical; empty for a pre-staged next key.
    public var allowedIPs: [IPPrefix]

    public var isOutsidePeer: Bool { node.hasPrefix(OutsidePeer.meshPrefix) }
}

/// A node left out of the mesh, and why (for the agent's log and the people's commands).
public struct Exclusion: Sendable, Hashable, CustomStringConvertible {
    public var node: String
    public var reason: String
    /// Not a problem but a node still joining: no key, Pod CIDR or endpoint yet (its agent has not enrolled,
    /// or the controller has not answered). Nobody is warned about it.
    public var isJoining = false
    public var description: String { "node \(node) left out: \(reason)" }
}

/// What the local node's WireGuard interface and routes should be.
public struct MeshPlan: Sendable, Hashable {
    public var listenPort: UInt16
    public var peers: [DesiredPeer]
    public var routes: [Route]
    public var excluded: [Exclusion]

    /// Computes the plan for `localNode` from every node of the cluster (the local one included), from
    /// scratch: the reference `MeshPlanner`'s incremental plan is checked against at every resync.
    /// A node without key, endpoint or Pod CIDR yet is left out; two nodes claiming the same key, or
    /// overlapping Pod CIDRs, are both left out; a Pod CIDR outside the cluster CIDRs is left out too.
    public init(localNode: String, settings: ClusterSettings, nodes: [MeshNode], interfaceIndex: UInt32) {
        listenPort = settings.listenPort
        excluded = []
        var candidates: [MeshNode] = []
        let local = nodes.first { $0.name == localNode }
        for node in nodes.sorted(by: { $0.name < $1.name }) where node.name != localNode {
            if let exclusion = MeshPlan.precheck(node, settings: settings) {
                excluded.append(exclusion)
            } else {
                candidates.append(node)
            }
        }
        // Conflicts: the local node's own key or CIDR counts too, but only the remote side is dropped.
        let conflicted = MeshPlan.conflicts(among: candidates + (local.map { [$0] } ?? []))
        peers = []
        routes = []
        for node in candidates {
            if let reason = conflicted[node.name] {
                excluded.append(Exclusion(node: node.name, reason: reason))
                continue
            }
            let (p, r) = MeshPlan.contribution(of: node, settings: settings, interfaceIndex: interfaceIndex)
            peers += p
            routes += r
        }
        routes += MeshPlan.strictRoutes(settings: settings, interfaceIndex: interfaceIndex)
        peers.sort { $0.publicKey < $1.publicKey }
        routes.sort()
        excluded.sort { $0.node < $1.node }
    }

    /// A plan of the given parts, as they are (`MeshPlanner`).
    init(listenPort: UInt16, peers: [DesiredPeer], routes: [Route], excluded: [Exclusion]) {
        self.listenPort = listenPort
        self.peers = peers
        self.routes = routes
        self.excluded = excluded
    }

    /// Why a remote node cannot be a peer whatever the other nodes claim, or nil: it is still joining (no
    /// key, Pod CIDR or endpoint yet) or its Pod CIDR is outside the cluster's.
    static func precheck(_ node: MeshNode, settings: ClusterSettings) -> Exclusion? {
        // An outside peer comes with its key and prefixes; its addresses are checked by the controller.
        if node.isOutsidePeer { return nil }
        if node.publicKey == nil {
            return Exclusion(node: node.name, reason: "no public key yet", isJoining: true)
        }
        if node.podCIDRs.isEmpty { return Exclusion(node: node.name, reason: "no Pod CIDR yet", isJoining: true) }
        if node.effectiveEndpoint == nil {
            return Exclusion(node: node.name, reason: "no endpoint yet", isJoining: true)
        }
        if let outside = node.podCIDRs.first(where: { c in !settings.clusterCIDRs.contains { $0.contains(c) } }) {
            return Exclusion(node: node.name, reason: "Pod CIDR \(outside) is outside the cluster CIDRs")
        }
        return nil
    }

    /// The peers (its key, and its next key pre-staged) and routes of a node that passed `precheck` and
    /// conflicts with no one.
    static func contribution(of node: MeshNode, settings: ClusterSettings, interfaceIndex: UInt32) -> (
        peers: [DesiredPeer], routes: [Route]
    ) {
        let endpoint = node.effectiveEndpoint
        let keepalive = node.outsidePeerKeepalive ?? settings.persistentKeepalive
        let cidrs = node.routedPrefixes.map(\.canonical).sorted()
        var peers = [
            DesiredPeer(
                node: node.name, publicKey: node.publicKey!, endpoint: endpoint, persistentKeepalive: keepalive,
                allowedIPs: cidrs)
        ]
        if let next = node.nextPublicKey {
            // Pre-staged: a handshake from the next key is accepted at once when the node switches.
            peers.append(
                DesiredPeer(
                    node: node.name, publicKey: next, endpoint: endpoint, persistentKeepalive: keepalive,
                    allowedIPs: []))
        }
        let routes = cidrs.map { Route(destination: $0, interfaceIndex: interfaceIndex, table: settings.routeTable) }
        return (peers, routes)
    }

    /// In strict mode, the cluster CIDRs into the interface, below every node's own route.
    static func strictRoutes(settings: ClusterSettings, interfaceIndex: UInt32) -> [Route] {
        guard settings.strict else { return [] }
        return (settings.clusterCIDRs + settings.peerCIDRs).map {
            Route(
                destination: $0.canonical, interfaceIndex: interfaceIndex, table: settings.routeTable,
                metric: settings.strictRouteMetric)
        }
    }

    /// The nodes among `claimants` that claim a public key (current or next) another one claims, or a Pod
    /// CIDR that overlaps another one's, each with a sentence naming the other node. The sentence is the
    /// same whatever the order of `claimants`: a key conflict first (the current key before the next one),
    /// else the node's smallest overlapping CIDR with the smallest CIDR (then node name) it overlaps.
    public static func conflicts(among claimants: [MeshNode]) -> [String: String] {
        var keyOwners: [WireGuardKey: Set<String>] = [:]
        for n in claimants {
            for k in n.claimedKeys { keyOwners[k, default: []].insert(n.name) }
        }
        var conflicted: [String: String] = [:]
        for n in claimants where conflicted[n.name] == nil {
            for k in n.claimedKeys {
                let others = keyOwners[k, default: []].subtracting([n.name])
                if !others.isEmpty {
                    conflicted[n.name] = keyConflict(k, others: others)
                    break
                }
            }
        }
        // Overlaps in O(n log n + pairs): in (address, length) order, prefixes that overlap form a
        // containment chain, so a stack of still-open prefixes finds every containing one.
        let claims = claimants.flatMap { n in n.routedPrefixes.map { PrefixClaim(cidr: $0.canonical, node: n.name) } }
            .sorted { $0.cidr < $1.cidr }
        var smallest: [String: (own: IPPrefix, other: PrefixClaim)] = [:]
        func note(_ own: PrefixClaim, _ other: PrefixClaim) {
            if let best = smallest[own.node], (best.own, best.other) <= (own.cidr, other) { return }
            smallest[own.node] = (own.cidr, other)
        }
        var open: [PrefixClaim] = []
        for claim in claims {
            while let top = open.last, !top.cidr.contains(claim.cidr) { open.removeLast() }
            for outer in open where outer.node != claim.node {
                note(outer, claim)
                note(claim, outer)
            }
            open.append(claim)
        }
        for (node, overlap) in smallest where conflicted[node] == nil {
            conflicted[node] = cidrConflict(overlap.own, overlap.other)
        }
        return conflicted
    }

    static func keyConflict(_ key: WireGuardKey, others: Set<String>) -> String {
        "public key \(key) is also claimed by \(others.sorted().joined(separator: ", "))"
    }

    static func cidrConflict(_ own: IPPrefix, _ other: PrefixClaim) -> String {
        "\(own) overlaps \(other.cidr) of \(other.node.hasPrefix(OutsidePeer.meshPrefix) ? "" : "node ")\(other.node)"
    }
}

/// A Pod CIDR (canonical) and the node that claims it, in (CIDR, node) order.
struct PrefixClaim: Hashable, Comparable, Sendable {
    var cidr: IPPrefix
    var node: String
    static func < (a: PrefixClaim, b: PrefixClaim) -> Bool { (a.cidr, a.node) < (b.cidr, b.node) }
}

extension MeshNode {
    /// The keys a node claims: its current key, then its next one.
    var claimedKeys: [WireGuardKey] { [publicKey, nextPublicKey].compactMap { $0 } }
}

extension MeshPlan {
    /// The keys the plan routes Pod CIDRs to: every node's current key (`applied-peers`), not the pre-staged
    /// next keys nor the outside peers.
    public var routedNodeKeys: [WireGuardKey] {
        peers.filter { !$0.allowedIPs.isEmpty && !$0.isOutsidePeer }.map(\.publicKey)
    }

    /// The plan's Nodes alone: what the node's condition, its metrics and the connecting-peer rechecks judge.
    /// An outside peer (a laptop) is often away, and its absence says nothing of the node's health.
    public var nodesOnly: MeshPlan {
        var plan = self
        plan.peers.removeAll(where: \.isOutsidePeer)
        return plan
    }

    /// What differs between two plans, for a log line: the nodes whose peers or exclusions differ, and the
    /// routes in one plan only.
    public static func nodesDiffering(_ a: MeshPlan, _ b: MeshPlan) -> [String] {
        let peers = Set(a.peers).symmetricDifference(b.peers).map(\.node)
        let excluded = Set(a.excluded).symmetricDifference(b.excluded).map(\.node)
        let routes = Set(a.routes).symmetricDifference(b.routes).map { "route \($0.destination)" }
        return Set(peers + excluded + routes).sorted()
    }

    /// The interface as it is once this plan is applied: what the next plan is diffed against when the
    /// kernel is not read again. Handshakes and counters are not part of a plan, so they are zero.
    public func device(named name: String, interfaceIndex: UInt32, privateKey: WireGuardKey?) -> DeviceState {
        DeviceState(
            name: name, interfaceIndex: interfaceIndex, privateKey: privateKey, listenPort: listenPort,
            peers: peers.map {
                PeerState(
                    publicKey: $0.publicKey, endpoint: $0.endpoint,
                    persistentKeepalive: $0.persistentKeepalive, allowedIPs: $0.allowedIPs)
            })
    }
}
