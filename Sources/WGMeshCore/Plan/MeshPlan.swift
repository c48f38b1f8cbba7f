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

    public init(
        clusterCIDRs: [IPPrefix], listenPort: UInt16 = 51820, persistentKeepalive: UInt16 = 0, strict: Bool = true,
        mtu: UInt32 = 1420, routeTable: UInt32 = Route.mainTable, strictRouteMetric: UInt32 = 2000
    ) {
        self.clusterCIDRs = clusterCIDRs
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
    public var endpoint: Endpoint
    public var persistentKeepalive: UInt16
    /// Sorted and canonical; empty for a pre-staged next key.
    public var allowedIPs: [IPPrefix]
}

/// A node left out of the mesh, and why (for a log line and an Event).
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

    /// Computes the plan for `localNode` from every node of the cluster (the local one included).
    /// A node without key, endpoint or Pod CIDR yet is left out; two nodes claiming the same key, or
    /// overlapping Pod CIDRs, are both left out; a Pod CIDR outside the cluster CIDRs is left out too.
    public init(localNode: String, settings: ClusterSettings, nodes: [MeshNode], interfaceIndex: UInt32) {
        listenPort = settings.listenPort
        excluded = []
        var candidates: [MeshNode] = []
        let local = nodes.first { $0.name == localNode }
        for node in nodes.sorted(by: { $0.name < $1.name }) where node.name != localNode {
            if node.publicKey == nil {
                excluded.append(Exclusion(node: node.name, reason: "no public key yet", isJoining: true))
                continue
            }
            if node.podCIDRs.isEmpty {
                excluded.append(Exclusion(node: node.name, reason: "no Pod CIDR yet", isJoining: true))
                continue
            }
            if node.effectiveEndpoint == nil {
                excluded.append(Exclusion(node: node.name, reason: "no endpoint yet", isJoining: true))
                continue
            }
            if let outside = node.podCIDRs.first(where: { c in !settings.clusterCIDRs.contains { $0.contains(c) } }) {
                excluded.append(Exclusion(node: node.name, reason: "Pod CIDR \(outside) is outside the cluster CIDRs"))
                continue
            }
            candidates.append(node)
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
            let endpoint = node.effectiveEndpoint!
            let cidrs = node.podCIDRs.map(\.canonical).sorted()
            peers.append(
                DesiredPeer(
                    node: node.name, publicKey: node.publicKey!, endpoint: endpoint,
                    persistentKeepalive: settings.persistentKeepalive, allowedIPs: cidrs))
            if let next = node.nextPublicKey {
                // Pre-staged: a handshake from the next key is accepted at once when the node switches.
                peers.append(
                    DesiredPeer(
                        node: node.name, publicKey: next, endpoint: endpoint,
                        persistentKeepalive: settings.persistentKeepalive, allowedIPs: []))
            }
            for c in cidrs {
                routes.append(Route(destination: c, interfaceIndex: interfaceIndex, table: settings.routeTable))
            }
        }
        if settings.strict {
            for c in settings.clusterCIDRs {
                routes.append(
                    Route(
                        destination: c.canonical, interfaceIndex: interfaceIndex, table: settings.routeTable,
                        metric: settings.strictRouteMetric))
            }
        }
        peers.sort { $0.publicKey < $1.publicKey }
        routes.sort()
        excluded.sort { $0.node < $1.node }
    }

    /// The nodes among `claimants` that claim a public key (current or next) another one claims, or a Pod
    /// CIDR that overlaps another one's, each with a sentence naming the other node.
    public static func conflicts(among claimants: [MeshNode]) -> [String: String] {
        var keyOwners: [WireGuardKey: [String]] = [:]
        for n in claimants {
            for k in [n.publicKey, n.nextPublicKey].compactMap({ $0 }) { keyOwners[k, default: []].append(n.name) }
        }
        var conflicted: [String: String] = [:]
        for (key, owners) in keyOwners where Set(owners).count > 1 {
            for o in owners {
                conflicted[o] =
                    "public key \(key) is also claimed by \(owners.filter { $0 != o }.sorted().joined(separator: ", "))"
            }
        }
        // Overlaps in O(n log n): in (address, length) order, prefixes that overlap form a containment
        // chain, so a stack of still-open prefixes finds every containing one.
        let claims = claimants.flatMap { n in n.podCIDRs.map { (cidr: $0.canonical, node: n.name) } }
            .sorted { $0.cidr < $1.cidr }
        var open: [(cidr: IPPrefix, node: String)] = []
        for claim in claims {
            while let top = open.last, !top.cidr.contains(claim.cidr) { open.removeLast() }
            for outer in open where outer.node != claim.node {
                conflicted[outer.node] =
                    conflicted[outer.node] ?? "Pod CIDR \(outer.cidr) overlaps \(claim.cidr) of node \(claim.node)"
                conflicted[claim.node] =
                    conflicted[claim.node] ?? "Pod CIDR \(claim.cidr) overlaps \(outer.cidr) of node \(outer.node)"
            }
            open.append(claim)
        }
        return conflicted
    }
}

extension MeshPlan {
    /// Whether a node routed by both plans is routed to another key in this one: a rotation (or a key
    /// reissued) that `wgmesh rotate-keys --wait` waits to see, unlike a node joining or leaving.
    public func movesKeys(from previous: MeshPlan) -> Bool {
        let before = Dictionary(
            previous.peers.filter { !$0.allowedIPs.isEmpty }.map { ($0.node, $0.publicKey) },
            uniquingKeysWith: { a, _ in a })
        return peers.contains { peer in
            guard !peer.allowedIPs.isEmpty, let key = before[peer.node] else { return false }
            return key != peer.publicKey
        }
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
