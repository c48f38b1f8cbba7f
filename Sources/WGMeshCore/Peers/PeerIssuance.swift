import Crypto
// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The controller's decisions for outside peers: each Peer's tunnel addresses (one per family of the peer
/// range, never one held by another Peer, freed only when the Peer is deleted), whether it is admitted,
/// and its gateway node. Pure: the controller feeds it the Peers and Nodes it watches.
public struct PeerIssuance: Sendable {
    /// The label that makes a node a gateway for outside peers. With no node labelled, every node is one.
    public static let gatewayLabel = "wgmesh.dev/peer-gateway"
    /// The condition type the controller writes on every Peer.
    public static let readyCondition = "Ready"

    /// A Peer as the controller reads it.
    public struct Input: Sendable {
        public var name: String
        public var spec: Result<OutsidePeer, PeerSpecError>
        /// The status as the API holds it (addresses, gateway): what the decision keeps when it can.
        public var status: OutsidePeer.Status
        public init(name: String, spec: Result<OutsidePeer, PeerSpecError>, status: OutsidePeer.Status) {
            self.name = name
            self.spec = spec
            self.status = status
        }
    }

    /// A node that may hold peers: in the mesh (key, Pod CIDR, endpoint) and, when any node carries
    /// `gatewayLabel`, carrying it.
    public struct Candidate: Sendable, Hashable {
        public var node: MeshNode
        public var labelled: Bool
        public init(node: MeshNode, labelled: Bool) {
            self.node = node
            self.labelled = labelled
        }
    }

    /// What a Peer's status should say.
    public struct Outcome: Sendable, Hashable {
        public var addresses: [IPAddress]
        public var gateway: String?
        public var ready: Bool
        /// The Ready condition's reason and message.
        public var reason: Reason
        public var message: String

        public enum Reason: String, Sendable {
            case ready = "GatewayAssigned", invalid = "InvalidSpec", conflict = "Conflict", expired = "Expired"
            case noGateway = "NoGateway", exhausted = "AddressesExhausted"
            /// Whether a Peer newly in this state gets a Warning Event.
            public var warning: Bool { self != .ready && self != .expired }
        }
    }

    private var allocator: PodCIDRAllocator
    public let peerCIDRs: [IPPrefix]
    public let clusterCIDRs: [IPPrefix]

    /// `peerCIDRs`: at most one per family, outside the cluster CIDRs. Their first address (the network) is
    /// never handed out.
    public init(peerCIDRs: [IPPrefix], clusterCIDRs: [IPPrefix]) throws(PeerRangeError) {
        for (i, a) in peerCIDRs.enumerated() {
            for b in peerCIDRs[..<i] where a.family == b.family { throw .twoOfOneFamily(b, a) }
            if let c = clusterCIDRs.first(where: { $0.overlaps(a) }) { throw .overlapsCluster(a, c) }
            // The allocator indexes blocks in 63 bits.
            guard a.family.bitWidth - a.length < 63 else { throw .tooLarge(a) }
        }
        do {
            allocator = try PodCIDRAllocator(clusterCIDRs: peerCIDRs, nodeMaskIPv4: 32, nodeMaskIPv6: 128)
            for range in peerCIDRs { try allocator.restore(node: "", cidr: IPPrefix.host(range.network)) }
        } catch {
            throw .invalid("\(error)")
        }
        self.peerCIDRs = peerCIDRs
        self.clusterCIDRs = clusterCIDRs
    }

    /// The addresses reserved for `peer`.
    public func addresses(of peer: String) -> [IPAddress] {
        (allocator.allocation(of: peer) ?? []).map(\.address).sorted()
    }

    /// Takes back the addresses a Peer's status holds (on start and failover, before anything new is handed
    /// out). An address outside the ranges, or held by another Peer, is not restored: the Peer gets a new one.
    @discardableResult
    public mutating func restore(_ peer: String, addresses: [IPAddress]) -> [IPAddress] {
        var refused: [IPAddress] = []
        for address in addresses {
            do { try allocator.restore(node: peer, cidr: IPPrefix.host(address)) } catch { refused.append(address) }
        }
        return refused
    }

    /// A Peer deleted: its addresses are free again.
    public mutating func release(_ peer: String) { allocator.release(node: peer) }

    /// Decides for every Peer at once (Peers are few): addresses for any Peer without them, then, in
    /// `order` (oldest first, so that an older Peer keeps what a newer one copies), admission and gateway.
    public mutating func decide(_ peers: [Input], candidates: [Candidate], now: Date) -> [String: Outcome] {
        let labelled = candidates.filter(\.labelled)
        let settings = ClusterSettings(clusterCIDRs: clusterCIDRs)
        let eligible = (labelled.isEmpty ? candidates : labelled).filter {
            MeshPlan.precheck($0.node, settings: settings) == nil
        }
        let eligibleNames = Set(eligible.map(\.node.name))
        let nodeKeys = Dictionary(
            candidates.flatMap { c in c.node.claimedKeys.map { ($0, c.node.name) } }, uniquingKeysWith: { a, _ in a })
        var acceptedKeys: [WireGuardKey: String] = [:]
        var acceptedNetworks: [(IPPrefix, String)] = []
        var outcomes: [String: Outcome] = [:]
        for input in peers {
            let name = input.name
            if (allocator.allocation(of: name)?.count ?? 0) < peerCIDRs.count {
                _ = try? allocator.allocate(node: name)
            }
            let addresses = self.addresses(of: name)
            func outcome(_ reason: Outcome.Reason, _ message: String, gateway: String? = nil) {
                outcomes[name] = Outcome(
                    addresses: addresses, gateway: gateway, ready: reason == .ready, reason: reason, message: message)
            }
            guard addresses.count == peerCIDRs.count else {
                outcome(.exhausted, "no free address in the peer range \(list(peerCIDRs)): delete an unused Peer")
                continue
            }
            let peer: OutsidePeer
            switch input.spec {
            case .failure(let error):
                outcome(.invalid, "\(error)")
                continue
            case .success(let p):
                peer = p
            }
            if let problem = conflict(peer, nodeKeys: nodeKeys, acceptedKeys: acceptedKeys, networks: acceptedNetworks)
            {
                outcome(.conflict, problem)
                continue
            }
            acceptedKeys[peer.publicKey] = name
            acceptedNetworks += peer.allowedIPs.map { ($0, name) }
            if peer.isExpired(at: now) {
                outcome(
                    .expired,
                    """
                    expired at \(RFC3339.format(peer.expiresAt!)): every node has dropped it; delete the Peer, or set \
                    a later spec.expiresAt
                    """
                )
                continue
            }
            let gateway =
                input.status.gateway.flatMap { eligibleNames.contains($0) ? $0 : nil }
                ?? PeerIssuance.rendezvous(name, among: eligible.map(\.node.name))
            guard let gateway else {
                outcome(
                    .noGateway,
                    labelled.isEmpty
                        ? "no node is in the mesh yet to hold the peer"
                        : "no node labelled \(PeerIssuance.gatewayLabel)=true is in the mesh: label another node")
                continue
            }
            outcome(
                .ready, "addresses \(addresses.map(\.description).joined(separator: ", ")); gateway node \(gateway)",
                gateway: gateway)
        }
        return outcomes
    }

    /// Why `peer` cannot be admitted beside the Nodes and the Peers already admitted, or nil.
    func conflict(
        _ peer: OutsidePeer, nodeKeys: [WireGuardKey: String], acceptedKeys: [WireGuardKey: String],
        networks: [(IPPrefix, String)]
    ) -> String? {
        if let node = nodeKeys[peer.publicKey] {
            return
                "spec.publicKey \(peer.publicKey) is node \(node)'s key: make the peer a keypair of its own (wg genkey)"
        }
        if let other = acceptedKeys[peer.publicKey] {
            return "spec.publicKey \(peer.publicKey) is also Peer \(other)'s: give each peer a keypair of its own"
        }
        for network in peer.allowedIPs {
            if let c = clusterCIDRs.first(where: { $0.overlaps(network) }) {
                return """
                    spec.allowedIPs \(network) overlaps the cluster CIDR \(c): a Pod CIDR is routed to its node, not \
                    to a peer
                    """
            }
            if let c = peerCIDRs.first(where: { $0.overlaps(network) }) {
                return
                    "spec.allowedIPs \(network) overlaps the peer range \(c), whose addresses the controller hands out"
            }
            if let (c, other) = networks.first(where: { $0.0.overlaps(network) }) {
                return "spec.allowedIPs \(network) overlaps \(c) of Peer \(other): a network is routed to one peer only"
            }
        }
        return nil
    }

    /// Rendezvous hashing: the candidate with the highest SHA-256 of (peer, node). When a node comes or goes,
    /// only the peers it wins or held move.
    public static func rendezvous(_ peer: String, among nodes: [String]) -> String? {
        nodes.max { score(peer, $0).lexicographicallyPrecedes(score(peer, $1)) }
    }

    static func score(_ peer: String, _ node: String) -> [UInt8] {
        Array(SHA256.hash(data: Array((peer + "\u{0}" + node).utf8)))
    }

    private func list(_ prefixes: [IPPrefix]) -> String { prefixes.map(\.description).joined(separator: ", ") }
}

public enum PeerRangeError: Error, Sendable, Hashable, CustomStringConvertible {
    case twoOfOneFamily(IPPrefix, IPPrefix), overlapsCluster(IPPrefix, IPPrefix), tooLarge(IPPrefix), invalid(String)
    public var description: String {
        switch self {
        case .twoOfOneFamily(let a, let b):
            return "--peer-cidr \(a) and \(b) are of one family: give at most one IPv4 and one IPv6 range"
        case .overlapsCluster(let a, let c):
            return "--peer-cidr \(a) overlaps the cluster CIDR \(c): choose a range outside the Pod network"
        case .tooLarge(let a):
            return "--peer-cidr \(a) is too large: use at most 2^62 addresses (an IPv6 /66 or longer)"
        case .invalid(let why): return "--peer-cidr: \(why)"
        }
    }
}
