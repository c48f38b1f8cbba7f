import Kube
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `wgmesh peer`: machines outside the cluster (a laptop, a VM) that join the mesh through a Peer. The
/// keypair is made here, on the person's machine: the private key goes into the wg-quick file only, never to
/// the cluster.
public enum Peers {
    /// One Peer as `wgmesh peer list`, `status` and `audit` show it.
    public struct Row: Codable, Sendable, Hashable {
        public var name: String
        public var addresses: [String]
        public var gateway: String?
        /// The Ready condition: `True`, `False`, or `Unknown` before the controller has written it.
        public var ready: String
        public var reason: String?
        public var message: String?
        public var expiresAt: String?
        public var expired: Bool
        public var lastHandshakeTime: String?
    }

    /// The Peers, oldest first; nil when the API server does not serve them (the CRD is not installed).
    public static func list(_ api: any KubeAPI) async throws -> [KubeObject]? {
        do {
            let items = try await api.listAll(.peers, namespace: nil).items
            return items.sorted {
                ($0.metadata.creationTimestamp ?? "", $0.metadata.name) < (
                    $1.metadata.creationTimestamp ?? "", $1.metadata.name
                )
            }
        } catch {
            // Not `catch where`: Swift 6.3 crashes on it with a typed throw.
            if error.isNotFound { return nil }
            throw error
        }
    }

    public static func rows(_ objects: [KubeObject], now: Date) -> [Row] {
        objects.map { object in
            let peer = Peer(object)
            let ready = peer.conditions.first { $0.type == PeerIssuance.readyCondition }
            return Row(
                name: object.metadata.name, addresses: peer.addresses, gateway: peer.gateway,
                ready: ready?.status ?? "Unknown", reason: ready?.reason, message: ready?.message,
                expiresAt: peer.expiresAt,
                expired: peer.expiresAt.flatMap(RFC3339.parse).map { $0 <= now } ?? false,
                lastHandshakeTime: peer.lastHandshakeTime)
        }
    }

    /// `kubectl get`'s way: NAME ADDRESSES GATEWAY READY EXPIRES LAST-HANDSHAKE.
    public static func table(_ rows: [Row], now: Date) -> String {
        func age(_ time: String?) -> String {
            guard let date = time.flatMap(RFC3339.parse) else { return "<none>" }
            return HumanDuration.format(seconds: Int64(now.timeIntervalSince(date))) + " ago"
        }
        func until(_ time: String?) -> String {
            guard let date = time.flatMap(RFC3339.parse) else { return "<never>" }
            let left = Int64(date.timeIntervalSince(now))
            return left <= 0 ? "expired" : "in " + HumanDuration.format(seconds: left)
        }
        return TextTable.render(
            header: ["NAME", "ADDRESSES", "GATEWAY", "READY", "EXPIRES", "LAST-HANDSHAKE"],
            rows: rows.map { r in
                [
                    r.name, r.addresses.isEmpty ? "<none>" : r.addresses.joined(separator: ","), r.gateway ?? "<none>",
                    r.ready == "True" ? "True" : "\(r.ready) (\(r.reason ?? "no status yet"))", until(r.expiresAt),
                    age(r.lastHandshakeTime),
                ]
            })
    }

    /// What `wgmesh peer add` asks for.
    public struct Request: Sendable {
        public var name: String
        public var allowedIPs: [String] = []
        public var endpoint: String?
        public var persistentKeepalive = OutsidePeer.defaultKeepalive
        public var expiresAt: Date?
        public init(name: String) { self.name = name }
    }

    /// Creates the Peer for `keys`' public key, waits until the controller has reserved its addresses and
    /// chosen its gateway, and returns the wg-quick file. When the controller refuses the Peer (a conflict), or
    /// it is not ready within `timeout`, the Peer is deleted again and the error says why: nothing is left
    /// behind.
    public static func add(
        _ api: any KubeAPI, _ request: Request, keys: WireGuardKeyPair, serviceCIDRs: [IPPrefix],
        timeout: Duration, progress: (String) -> Void
    ) async throws -> String {
        let name = request.name
        // What the controller would refuse, refused here first, with the same words.
        do {
            _ = try OutsidePeer(
                name: name, publicKey: keys.publicKey.base64, endpoint: request.endpoint,
                persistentKeepalive: Int64(request.persistentKeepalive), allowedIPs: request.allowedIPs,
                expiresAt: request.expiresAt.map(RFC3339.format))
        } catch { throw CLIError("\(error)") }
        var spec: [String: JSON] = [
            "publicKey": .string(keys.publicKey.base64),
            "persistentKeepalive": .integer(Int64(request.persistentKeepalive)),
        ]
        if let endpoint = request.endpoint { spec["endpoint"] = .string(endpoint) }
        if !request.allowedIPs.isEmpty { spec["allowedIPs"] = .array(request.allowedIPs.map(JSON.string)) }
        if let at = request.expiresAt { spec["expiresAt"] = .string(RFC3339.format(at)) }
        let object: JSON = .object([
            "apiVersion": .string(APIResource.peers.apiVersion), "kind": .string(APIResource.peers.kind),
            "metadata": .object(["name": .string(name)]), "spec": .object(spec),
        ])
        do {
            _ = try await api.create(.peers, namespace: nil, object)
        } catch {
            if error.code == 409 {
                throw CLIError(
                    """
                    Peer \(name) already exists: `wgmesh peer config \(name)` prints its configuration again, \
                    `wgmesh peer remove \(name)` removes it
                    """)
            }
            if error.isNotFound { throw missing(error, name) }
            throw CLIError("cannot create Peer \(name): \(error.status?.message ?? "\(error)")")
        }
        progress("Peer \(name) created (public key \(keys.publicKey.base64)); waiting for its address")
        let deadline = ContinuousClock.now + timeout
        var last = "the controller has not written its status yet (is wgmesh-controller running?)"
        while true {
            if let object = try? await api.get(.peers, namespace: nil, name: name) {
                let peer = Peer(object)
                if let ready = peer.conditions.first(where: { $0.type == PeerIssuance.readyCondition }) {
                    if ready.status == "True" {
                        return try await config(api, object, privateKey: keys.privateKey, serviceCIDRs: serviceCIDRs)
                    }
                    last = "\(ready.reason ?? ""): \(ready.message ?? "")"
                    let reason = PeerIssuance.Outcome.Reason(rawValue: ready.reason ?? "")
                    if reason == .invalid || reason == .conflict { break }
                }
            }
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        try? await api.delete(.peers, namespace: nil, name: name)
        throw CLIError("Peer \(name) was not admitted, and is deleted again: \(last)")
    }

    /// The wg-quick file of an admitted Peer: its addresses (and the port of its endpoint, if it has one, to listen
    /// on); its gateway node as the one [Peer], with the node's key and endpoint, the Peer's keepalive, and
    /// AllowedIPs the cluster's Pod CIDRs (as the gateway's agent publishes them) and `serviceCIDRs`. Without
    /// `privateKey`, a comment stands in its place.
    public static func config(_ api: any KubeAPI, name: String, privateKey: WireGuardKey?, serviceCIDRs: [IPPrefix])
        async throws -> String
    {
        let object: KubeObject
        do { object = try await api.get(.peers, namespace: nil, name: name) } catch {
            throw missing(error, name)
        }
        return try await config(api, object, privateKey: privateKey, serviceCIDRs: serviceCIDRs)
    }

    static func config(_ api: any KubeAPI, _ object: KubeObject, privateKey: WireGuardKey?, serviceCIDRs: [IPPrefix])
        async throws -> String
    {
        let name = object.metadata.name
        let peer = Peer(object)
        guard let gateway = peer.gateway, !peer.addresses.isEmpty else {
            let ready = peer.conditions.first { $0.type == PeerIssuance.readyCondition }
            let why =
                ready.map { "\($0.reason ?? ""): \($0.message ?? "")" } ?? "the controller has not written its status"
            throw CLIError("Peer \(name) has no address or gateway yet: \(why)")
        }
        let nodeObject = try await api.get(.nodes, namespace: nil, name: gateway)
        let annotations = nodeObject.metadata.annotations
        let node: MeshNode
        do { node = try MeshNode(name: gateway, annotations: annotations) } catch {
            throw CLIError("the gateway node \(gateway)'s annotations do not read: \(error)")
        }
        guard let key = node.publicKey, let endpoint = node.effectiveEndpoint else {
            throw CLIError("the gateway node \(gateway) has no key or endpoint yet: try again in a moment")
        }
        guard let cidrs = annotations[Annotation.clusterCIDRs].flatMap({ try? IPPrefix.list($0) }), !cidrs.isEmpty
        else {
            throw CLIError(
                "the gateway node \(gateway)'s agent has not published \(Annotation.clusterCIDRs) yet: is it running?")
        }
        if let privateKey, let derived = try? WireGuardKeyPair.publicKey(for: privateKey),
            derived.base64 != peer.publicKey
        {
            throw CLIError(
                """
                that private key is not Peer \(name)'s: its public key is \(derived), the Peer's \
                \(peer.publicKey ?? "none")
                """)
        }
        let addresses = peer.addresses.compactMap { try? IPAddress($0) }.map { IPPrefix.host($0).description }
        var lines = [
            "# wgmesh Peer \(name): `wg-quick up ./\(name).conf`. Its gateway is node \(gateway); if the Peer moves",
            "# to another gateway, or that node's key rotates, `wgmesh peer config \(name)` prints the new one.",
            "[Interface]",
            privateKey.map { "PrivateKey = \($0.base64)" }
                ?? """
                # PrivateKey = (never in the cluster: from the file `wgmesh peer add` wrote, or --private-key-file)
                """,
            "Address = \(addresses.joined(separator: ", "))",
        ]
        // The gateway dials a Peer with an endpoint: it must listen on that port, not on one wg picks.
        if let port = peer.endpoint.flatMap({ try? Endpoint($0) })?.port { lines.append("ListenPort = \(port)") }
        lines += [
            "",
            "[Peer]",
            "# node \(gateway)",
            "PublicKey = \(key.base64)",
            "Endpoint = \(endpoint)",
            "AllowedIPs = \((cidrs + serviceCIDRs).map(\.description).joined(separator: ", "))",
        ]
        if let keepalive = peer.persistentKeepalive, keepalive > 0 {
            lines.append("PersistentKeepalive = \(keepalive)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public static func remove(_ api: any KubeAPI, name: String) async throws {
        do { try await api.delete(.peers, namespace: nil, name: name) } catch { throw missing(error, name) }
    }

    /// A 404 says which is missing: the Peer (its name in `details`), or the resource (the CRD).
    static func missing(_ error: KubeError, _ name: String) -> any Error {
        guard error.isNotFound else { return error }
        if error.status?.details?["name"]?.string == name {
            return CLIError("there is no Peer \(name): `wgmesh peer list` lists them")
        }
        return notServed
    }

    public static let notServedMessage = """
        the API server does not serve peers.wgmesh.dev: install the Peer CRD (kubectl apply -k manifests/ \
        includes manifests/peer-crd.yaml)
        """
    static let notServed = CLIError(notServedMessage)
}
