/// The smallest set of changes that turns the actual interface and routes into the plan.
public struct MeshDiff: Sendable, Hashable {
    /// Peer additions, field-level updates (update-only) and removals; the listen port if it differs.
    public var device: DeviceConfig
    public var routesToAdd: [Route]
    public var routesToReplace: [Route]
    public var routesToDelete: [Route]

    public var isEmpty: Bool {
        device.isEmpty && routesToAdd.isEmpty && routesToReplace.isEmpty && routesToDelete.isEmpty
    }

    /// - Parameters:
    ///   - privateKey: the key the interface must run, when the caller knows it (opened from the sealed box).
    public init(plan: MeshPlan, actual: DeviceState, actualRoutes: [Route], privateKey: WireGuardKey? = nil) {
        device = DeviceConfig()
        if let privateKey, actual.privateKey != privateKey { device.privateKey = privateKey }
        if actual.listenPort != plan.listenPort { device.listenPort = plan.listenPort }

        let current = Dictionary(actual.peers.map { ($0.publicKey, $0) }, uniquingKeysWith: { a, _ in a })
        let wanted = Set(plan.peers.map(\.publicKey))
        for want in plan.peers {
            guard let have = current[want.publicKey] else {
                device.peers.append(
                    PeerConfig(
                        publicKey: want.publicKey, endpoint: want.endpoint,
                        persistentKeepalive: want.persistentKeepalive,
                        allowedIPs: want.allowedIPs, replaceAllowedIPs: true))
                continue
            }
            let unchanged = PeerConfig(publicKey: want.publicKey, updateOnly: true)
            var change = unchanged
            if have.endpoint != want.endpoint { change.endpoint = want.endpoint }
            if have.persistentKeepalive != want.persistentKeepalive {
                change.persistentKeepalive = want.persistentKeepalive
            }
            if Set(have.allowedIPs.map(\.canonical)) != Set(want.allowedIPs) {
                change.allowedIPs = want.allowedIPs
                change.replaceAllowedIPs = true
            }
            // wgmesh uses no preshared keys: one left by hand is cleared.
            if have.presharedKey != nil { change.presharedKey = .zero }
            if change != unchanged { device.peers.append(change) }
        }
        for have in actual.peers where !wanted.contains(have.publicKey) {
            device.peers.append(.removal(of: have.publicKey))
        }

        let desiredByKey = Dictionary(plan.routes.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        let actualByKey = Dictionary(actualRoutes.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        routesToAdd = plan.routes.filter { actualByKey[$0.key] == nil }
        routesToReplace = plan.routes.filter { r in actualByKey[r.key].map { $0 != r } ?? false }
        routesToDelete = actualRoutes.filter { desiredByKey[$0.key] == nil }
    }
}

extension MeshDiff {
    /// With a new private key in this diff, makes every planned peer send a keepalive, hence a handshake,
    /// at once (docs/architecture.md, "Key rotation without a gap"). The kernel sends one when a peer's
    /// persistent keepalive goes from 0 to a positive value, so each peer gets that transition in the same SET
    /// message as the key: a peer whose keepalive is on is listed twice, first with 0, then with its interval;
    /// a peer planned without keepalive gets `interval`, and the next diff turns it off again.
    public mutating func forceHandshakes(plan: MeshPlan, current: DeviceState, interval: UInt16 = 25) {
        let running = Dictionary(
            current.peers.map { ($0.publicKey, $0.persistentKeepalive) }, uniquingKeysWith: { a, _ in a })
        for want in plan.peers where !want.allowedIPs.isEmpty {
            let target = want.persistentKeepalive > 0 ? want.persistentKeepalive : interval
            let reset = PeerConfig(publicKey: want.publicKey, persistentKeepalive: 0, updateOnly: true)
            let isOn = (running[want.publicKey] ?? 0) > 0
            if let i = device.peers.firstIndex(where: { $0.publicKey == want.publicKey && !$0.remove }) {
                device.peers[i].persistentKeepalive = target
                if isOn { device.peers.insert(reset, at: i) }
            } else {
                if isOn { device.peers.append(reset) }
                device.peers.append(
                    PeerConfig(publicKey: want.publicKey, persistentKeepalive: target, updateOnly: true))
            }
        }
    }

    /// Applies the diff through the seams: peers first (so a new Pod CIDR has its peer before its
    /// route), then stale routes out, changed routes replaced, new routes in. Stops at the first error;
    /// what was applied stays, and the next diff picks up from the state the kernel then reports. A route
    /// that another program's route keeps out does not stop the others: they are all added, then
    /// `RoutesTaken` names the ones that were not.
    public func apply(interface: String, wireGuard: some WireGuardDevice, routes: some RouteTable) throws {
        if !device.isEmpty { try wireGuard.configure(interface, device) }
        for r in routesToDelete { try routes.delete(r) }
        for r in routesToReplace { try routes.replace(r) }
        var taken: [RouteTaken] = []
        for r in routesToAdd {
            do { try routes.add(r) } catch let error as RouteTaken { taken.append(error) }
        }
        if !taken.isEmpty { throw RoutesTaken(taken) }
    }
}
