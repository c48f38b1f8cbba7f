// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A machine outside the cluster that joins the mesh: a `Peer` (`peers.wgmesh.dev`), typed and validated.
/// Its spec is a person's; its status (addresses, gateway, Ready) the controller's, but for the last
/// handshake, which its gateway node's agent writes.
public struct OutsidePeer: Sendable, Hashable {
    public var name: String
    public var publicKey: WireGuardKey
    /// Where the gateway may dial it first; nil for a peer behind NAT, reached once it has sent a handshake.
    public var endpoint: Endpoint?
    /// Seconds; 0 is off.
    public var persistentKeepalive: UInt16
    /// The networks behind the peer, canonical and sorted.
    public var allowedIPs: [IPPrefix]
    public var expiresAt: Date?

    public var status = Status()

    public struct Status: Sendable, Hashable {
        /// The peer's tunnel addresses, one per family.
        public var addresses: [IPAddress] = []
        /// The node that holds the peer.
        public var gateway: String?
        /// The controller's Ready condition: true once the peer has its addresses and a gateway.
        public var ready = false
        public var lastHandshake: Date?
        public init() {}
    }

    /// The WireGuard keepalive `wgmesh peer add` gives a peer when none is asked for: 25 s keeps a NAT
    /// mapping open, as wg-quick's documentation advises.
    public static let defaultKeepalive: UInt16 = 25

    public init(
        name: String, publicKey: WireGuardKey, endpoint: Endpoint? = nil,
        persistentKeepalive: UInt16 = OutsidePeer.defaultKeepalive, allowedIPs: [IPPrefix] = [],
        expiresAt: Date? = nil
    ) {
        self.name = name
        self.publicKey = publicKey
        self.endpoint = endpoint
        self.persistentKeepalive = persistentKeepalive
        self.allowedIPs = allowedIPs.map(\.canonical).sorted()
        self.expiresAt = expiresAt
    }

    /// Reads a Peer's spec, as the API server stored it. The schema has refused what it can; this refuses
    /// the rest: a CIDR with host bits set, and two allowedIPs that overlap.
    public init(
        name: String, publicKey: String?, endpoint: String?, persistentKeepalive: Int64?, allowedIPs: [String],
        expiresAt: String?
    ) throws(PeerSpecError) {
        self.name = name
        func fail(_ field: String, _ value: String, _ why: String) -> PeerSpecError {
            PeerSpecError(peer: name, field: field, value: value, reason: why)
        }
        guard let publicKey else { throw fail("spec.publicKey", "", "required: the peer's WireGuard public key") }
        do { self.publicKey = try WireGuardKey(base64: publicKey) } catch {
            throw fail("spec.publicKey", publicKey, "not a WireGuard key (\(error)); use `wg pubkey`'s output")
        }
        if let endpoint, !endpoint.isEmpty {
            do { self.endpoint = try Endpoint(endpoint) } catch {
                throw fail("spec.endpoint", endpoint, "\(error)")
            }
        }
        let keepalive = persistentKeepalive ?? 0
        guard (0...Int64(UInt16.max)).contains(keepalive) else {
            throw fail("spec.persistentKeepalive", String(keepalive), "seconds between 0 and 65535")
        }
        self.persistentKeepalive = UInt16(keepalive)
        var prefixes: [IPPrefix] = []
        for text in allowedIPs {
            let prefix: IPPrefix
            do { prefix = try IPPrefix(text) } catch {
                throw fail("spec.allowedIPs", text, "\(error)")
            }
            guard prefix == prefix.canonical else {
                throw fail("spec.allowedIPs", text, "host bits are set: write the network, \(prefix.canonical)")
            }
            if let other = prefixes.first(where: { $0.contains(prefix) || prefix.contains($0) }) {
                throw fail("spec.allowedIPs", text, "overlaps \(other), also in allowedIPs: keep one of them")
            }
            prefixes.append(prefix)
        }
        self.allowedIPs = prefixes.sorted()
        if let expiresAt {
            guard let date = RFC3339.parse(expiresAt) else {
                throw fail("spec.expiresAt", expiresAt, "not an RFC 3339 time (2026-12-31T23:00:00Z)")
            }
            self.expiresAt = date
        }
    }

    public func isExpired(at now: Date) -> Bool { expiresAt.map { $0 <= now } ?? false }

    /// Every prefix routed to the peer: its tunnel addresses (/32, /128), then its allowedIPs.
    public var prefixes: [IPPrefix] {
        status.addresses.map { IPPrefix.host($0) } + allowedIPs
    }

    /// The name the peer goes by among the nodes of a plan: a Node name has no `/`, so it is never a Node's.
    public var meshName: String { OutsidePeer.meshPrefix + name }
    public static let meshPrefix = "peer/"
}

/// A Peer spec that does not read: names the Peer, the field, the value and the fix.
public struct PeerSpecError: Error, Sendable, Hashable, CustomStringConvertible {
    public var peer: String
    public var field: String
    public var value: String
    public var reason: String
    public var description: String { "Peer \(peer): \(field) \"\(value)\": \(reason)" }
}
