import Kube
import Logging
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The outside peers as this node plans them: the ones it holds as WireGuard peers (it is their gateway), and
/// the prefixes of the others, routed to their gateway nodes.
struct OutsidePlan: Sendable, Equatable {
    /// The peers this node holds, by name, with the handshake their status shows.
    var heldPeers: [String: OutsidePeer] = [:]
    /// The prefixes of the peers each other node holds, by node.
    var gatewayPrefixes: [String: [IPPrefix]] = [:]
    /// The networks behind every peer (their allowedIPs), sorted.
    var networks: [IPPrefix] = []

    /// From the Peers: those the controller made ready (addresses, a gateway), not expired at `now`, whose
    /// spec reads.
    init(peers: [KubeObject], localNode: String, now: Date) {
        for object in peers {
            guard var peer = MeshAgent.outsidePeer(object), peer.status.ready, let gateway = peer.status.gateway,
                !peer.status.addresses.isEmpty, !peer.isExpired(at: now)
            else { continue }
            networks += peer.allowedIPs
            if gateway == localNode {
                heldPeers[peer.name] = peer
            } else {
                gatewayPrefixes[gateway, default: []] += peer.prefixes
            }
        }
        for (node, prefixes) in gatewayPrefixes { gatewayPrefixes[node] = prefixes.sorted() }
        networks.sort()
    }

    init() {}

    /// The peers this node holds, as plan entries (`MeshNode(outsidePeer:)`), by `peer/NAME`.
    var held: [String: MeshNode] {
        Dictionary(uniqueKeysWithValues: heldPeers.values.map { ($0.meshName, MeshNode(outsidePeer: $0)) })
    }

    /// `node` with the prefixes of the peers it holds.
    func adding(to node: MeshNode) -> MeshNode {
        var node = node
        node.gatewayPrefixes = gatewayPrefixes[node.name] ?? []
        return node
    }

    /// The nodes (and held peers) whose plan entry differs between `self` and `next`.
    func changed(to next: OutsidePlan) -> Set<String> {
        var names: Set<String> = []
        for key in Set(gatewayPrefixes.keys).union(next.gatewayPrefixes.keys)
        where gatewayPrefixes[key] != next.gatewayPrefixes[key] {
            names.insert(key)
        }
        let (was, now) = (held, next.held)
        for key in Set(was.keys).union(now.keys) where was[key] != now[key] { names.insert(key) }
        return names
    }
}

extension MeshAgent {
    /// A Peer as the agent reads it: spec and the controller's status; nil when its spec does not read (the
    /// controller says why in the Peer's Ready condition).
    static func outsidePeer(_ object: KubeObject) -> OutsidePeer? {
        let view = Peer(object)
        guard
            var peer = try? OutsidePeer(
                name: object.metadata.name, publicKey: view.publicKey, endpoint: view.endpoint,
                persistentKeepalive: view.persistentKeepalive, allowedIPs: view.allowedIPs,
                expiresAt: view.expiresAt)
        else { return nil }
        peer.status.addresses = view.addresses.compactMap { try? IPAddress($0) }.sorted()
        peer.status.gateway = view.gateway
        peer.status.ready = view.conditions.contains {
            $0.type == PeerIssuance.readyCondition && $0.status == "True"
        }
        peer.status.lastHandshake = view.lastHandshakeTime.flatMap(RFC3339.parse)
        return peer
    }

    /// Reads the Peers (at a full pass): the new outside plan replaces the last one, and the plan entries it
    /// changes are returned, as `readChanges` returns the Nodes'.
    func readPeers(_ peers: [KubeObject], now: Date) -> [String: MeshNode?] {
        let next = OutsidePlan(peers: peers, localNode: configuration.nodeName, now: now)
        return planning.withLock { p in
            let changed = p.outside.changed(to: next)
            p.outside = next
            var changes: [String: MeshNode?] = [:]
            let held = next.held
            for name in changed {
                if name.hasPrefix(OutsidePeer.meshPrefix) {
                    changes[name] = .some(held[name])
                } else if let node = try? p.parsed[name]?.node.get() {
                    changes[name] = .some(next.adding(to: node))
                }
            }
            return changes
        }
    }

    /// Writes the last handshake of each peer this node holds into the Peer's status, when it is newer than
    /// what the status says by more than a minute (a handshake comes every two minutes while the peer talks).
    func publishHandshakes(_ device: DeviceState) async {
        let held = planning.withLock { $0.outside.heldPeers }
        metrics.observeOutsidePeers(Array(held.values), device: device)
        guard !held.isEmpty else { return }
        let handshakes = Dictionary(
            device.peers.map { ($0.publicKey, $0.lastHandshakeSeconds) }, uniquingKeysWith: { a, _ in a })
        for peer in held.values.sorted(by: { $0.name < $1.name }) {
            guard let seconds = handshakes[peer.publicKey], seconds > 0 else { continue }
            let seen = Date(timeIntervalSince1970: Double(seconds))
            if let published = peer.status.lastHandshake, seen.timeIntervalSince(published) < 60 { continue }
            let patch: JSON = .object(["status": .object(["lastHandshakeTime": .string(RFC3339.format(seen))])])
            do {
                _ = try await api.patch(.peers, namespace: nil, name: peer.name, .merge(patch), subresource: "status")
                planning.withLock { $0.outside.heldPeers[peer.name]?.status.lastHandshake = seen }
            } catch {
                logger.warning(
                    "could not publish a Peer's last handshake",
                    metadata: ["peer": "\(peer.name)", "error": "\(error)"])
            }
        }
    }
}
