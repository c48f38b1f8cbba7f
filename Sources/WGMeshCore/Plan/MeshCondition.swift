// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The Node condition `WireGuardMeshReady` the agent publishes: whether this node reaches every peer through the
/// tunnel.
public struct MeshCondition: Sendable, Equatable {
    /// The condition's `type` on the Node.
    public static let type = "WireGuardMeshReady"
    public var ready: Bool
    /// CamelCase, as Kubernetes condition reasons are: `AllPeersConnected`, `NoPeers`, `PeersStale`, `NoKey`.
    public var reason: String
    /// One sentence an operator reads in `kubectl describe node`.
    public var message: String

    public init(ready: Bool, reason: String, message: String) {
        self.ready = ready
        self.reason = reason
        self.message = message
    }

    /// How many stale nodes a message names before it only counts the rest.
    public static let namedNodeLimit = 20

    /// Ready when every planned peer (current keys only: a pre-staged next key with no allowed IPs does not count) had
    /// a handshake within `maxHandshakeAge` (3 minutes by default); otherwise not ready, naming the stale nodes
    /// (sorted, at most 20 named, then "and N more").
    ///
    /// WireGuard renews a handshake every 2 minutes only while packets flow, so an idle peer without
    /// persistent keepalive shows as stale too. A device without a key is `NoKey` whatever its peers.
    ///
    /// A peer that never had a handshake and was configured less than `maxHandshakeAge` ago (`configuredAt`,
    /// by key) is still connecting, not stale: a node that just joined, or one that just joined it. A node
    /// whose peers are all still connecting is `PeersConnecting` (not ready yet).
    public static func evaluate(
        plan: MeshPlan, device: DeviceState, now: Date, maxHandshakeAge: TimeInterval = 180,
        configuredAt: [WireGuardKey: Date] = [:]
    ) -> MeshCondition {
        // The kernel reports the public key with the private one; either counts, the zero key does not.
        guard let key = device.privateKey ?? device.publicKey, !key.isZero else {
            return MeshCondition(
                ready: false, reason: "NoKey",
                message: """
                    interface \(device.name) has no private key yet: the controller has not issued this node's \
                    keypair, \
                    or the agent cannot open it (see the agent's log)
                    """)
        }
        let problems = plan.excluded.filter { !$0.isJoining }.count
        let joining = plan.excluded.count - problems
        let left =
            (problems == 0 ? "" : "; \(count(problems, "node")) left out of the mesh (see the Events of those Nodes)")
            + (joining == 0 ? "" : "; \(count(joining, "node")) still joining (no key, Pod CIDR or endpoint yet)")
        let current = plan.peers.filter { !$0.allowedIPs.isEmpty }
        guard !current.isEmpty else {
            return MeshCondition(
                ready: true, reason: "NoPeers",
                message: "no other node is in the mesh yet, so there is no peer to connect to\(left)")
        }
        let handshakes = Dictionary(
            device.peers.map { ($0.publicKey, $0.lastHandshake) }, uniquingKeysWith: { a, _ in a })
        var stale = Set<String>()
        var connecting = Set<String>()
        for peer in current {
            if let at = handshakes[peer.publicKey] ?? nil {
                let seconds = Double(at.seconds) + Double(at.nanoseconds) / 1_000_000_000
                if now.timeIntervalSince(Date(timeIntervalSince1970: seconds)) > maxHandshakeAge {
                    stale.insert(peer.node)
                }
            } else if let since = configuredAt[peer.publicKey], now.timeIntervalSince(since) < maxHandshakeAge {
                connecting.insert(peer.node)
            } else {
                stale.insert(peer.node)
            }
        }
        let age = "\(Int(maxHandshakeAge)) s"
        let nodes = Set(current.map(\.node)).count
        func named(_ set: Set<String>) -> String {
            let sorted = set.sorted()
            return sorted.prefix(namedNodeLimit).joined(separator: ", ")
                + (sorted.count > namedNodeLimit ? " and \(sorted.count - namedNodeLimit) more" : "")
        }
        if !stale.isEmpty {
            return MeshCondition(
                ready: false, reason: "PeersStale",
                message: """
                    no handshake in the last \(age) with \(stale.count) of \(count(nodes, "peer")): \(named(stale)); \
                    check that their endpoints' UDP port is reachable\(left)
                    """)
        }
        if connecting.count == nodes {
            return MeshCondition(
                ready: false, reason: "PeersConnecting",
                message: "waiting for the first handshake with \(count(nodes, "peer")): \(named(connecting))\(left)")
        }
        let joined =
            connecting.isEmpty
            ? "" : " (\(connecting.count) added less than \(age) ago and still connecting: \(named(connecting)))"
        return MeshCondition(
            ready: true, reason: "AllPeersConnected",
            message: "all \(count(nodes, "peer")) had a handshake in the last \(age)\(joined)\(left)")
    }

    /// A pass that failed: not ready, whatever the last good pass said, until a pass succeeds again.
    /// `reason` is CamelCase (`RouteConflict`, `WriteRefused`, `ReconcileFailed`, …); long messages are cut.
    public static func failed(reason: String, message: String) -> MeshCondition {
        let cut = message.count > 1000 ? String(message.prefix(1000)) + "…" : message
        return MeshCondition(ready: false, reason: reason, message: cut)
    }

    private static func count(_ n: Int, _ noun: String) -> String { n == 1 ? "1 \(noun)" : "\(n) \(noun)s" }

    /// The peers with a recent handshake and the peers in all, as `evaluate` wrote them into a condition's
    /// reason and message; nil when they do not say (`NoKey`, or another writer's words).
    public static func peerCounts(reason: String, message: String) -> (ready: Int, total: Int)? {
        /// The number at the start of `text` after `prefix`, and what follows it.
        func number(after prefix: String, in text: Substring) -> (Int, Substring)? {
            guard text.hasPrefix(prefix) else { return nil }
            let rest = text.dropFirst(prefix.count)
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            return Int(digits).map { ($0, rest.dropFirst(digits.count)) }
        }
        switch reason {
        case "NoPeers":
            return (0, 0)
        case "AllPeersConnected":
            guard let (n, rest) = number(after: "all ", in: message[...]), rest.hasPrefix(" peer") else { return nil }
            return (n, n)
        case "PeersConnecting":
            guard let at = message.firstRange(of: " with "),
                let (n, rest) = number(after: " with ", in: message[at.lowerBound...]),
                rest.hasPrefix(" peer")
            else { return nil }
            return (0, n)
        case "PeersStale":
            guard let at = message.firstRange(of: " with "),
                let (stale, rest) = number(after: " with ", in: message[at.lowerBound...]),
                let (n, tail) = number(after: " of ", in: rest), tail.hasPrefix(" peer"), stale <= n
            else { return nil }
            return (n - stale, n)
        default:
            return nil
        }
    }
}
