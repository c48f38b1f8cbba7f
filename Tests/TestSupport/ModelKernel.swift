import WGMeshCore

/// A test double of the kernel's WireGuard and route table, with the semantics of WG_CMD_SET_DEVICE
/// and RTM_NEWROUTE/RTM_DELROUTE, to check diffs without a kernel. Test code only (Tests/).
public final class ModelKernel: WireGuardDevice, RouteTable {
    public var state: DeviceState
    public var table: [Route]

    public init(state: DeviceState, routes: [Route]) {
        self.state = state
        self.table = routes
    }

    public func device(named name: String) throws -> DeviceState { state }
    public func configure(_ name: String, _ config: DeviceConfig) throws {
        state = KernelModel.apply(config, to: state)
    }
    public func routes(family: IPFamily?) throws -> [Route] {
        table.filter { family == nil || $0.destination.family == family }.sorted()
    }
    public func add(_ route: Route) throws {
        precondition(!table.contains { $0.key == route.key }, "add of an existing route would fail with EEXIST")
        table.append(route)
    }
    public func replace(_ route: Route) throws {
        table.removeAll { $0.key == route.key }
        table.append(route)
    }
    public func delete(_ route: Route) throws {
        precondition(table.contains { $0.key == route.key }, "delete of a missing route would fail with ESRCH")
        table.removeAll { $0.key == route.key }
    }
}

public enum KernelModel {
    public static func apply(_ config: DeviceConfig, to state: DeviceState) -> DeviceState {
        var s = state
        if let k = config.privateKey { s.privateKey = k.isZero ? nil : k }
        if let p = config.listenPort { s.listenPort = p }
        if let m = config.firewallMark { s.firewallMark = m }
        if config.replacePeers { s.peers = [] }
        for change in config.peers {
            let i = s.peers.firstIndex { $0.publicKey == change.publicKey }
            if change.remove {
                if let i { s.peers.remove(at: i) }
                continue
            }
            if i == nil && change.updateOnly { continue }
            var peer = i.map { s.peers[$0] } ?? PeerState(publicKey: change.publicKey)
            if let psk = change.presharedKey { peer.presharedKey = psk.isZero ? nil : psk }
            if let e = change.endpoint { peer.endpoint = e }
            if let k = change.persistentKeepalive { peer.persistentKeepalive = k }
            if change.replaceAllowedIPs { peer.allowedIPs = [] }
            for ip in change.allowedIPs where !peer.allowedIPs.contains(ip.canonical) {
                peer.allowedIPs.append(ip.canonical)
            }
            // An allowed IP belongs to one peer: adding it elsewhere takes it away (as the kernel's trie does).
            for j in s.peers.indices where s.peers[j].publicKey != peer.publicKey {
                s.peers[j].allowedIPs.removeAll { change.allowedIPs.map(\.canonical).contains($0) }
            }
            if let i { s.peers[i] = peer } else { s.peers.append(peer) }
        }
        return s
    }

}
