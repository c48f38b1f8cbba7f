import WGMeshCore

/// A model of the kernel's WG_CMD_SET_DEVICE and route semantics, to check diffs without a kernel.
enum KernelModel {
    static func apply(_ config: DeviceConfig, to state: DeviceState) -> DeviceState {
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
            for ip in change.allowedIPs where !peer.allowedIPs.contains(ip.canonical) { peer.allowedIPs.append(ip.canonical) }
            // An allowed IP belongs to one peer: adding it elsewhere takes it away (as the kernel's trie does).
            for j in s.peers.indices where s.peers[j].publicKey != peer.publicKey {
                s.peers[j].allowedIPs.removeAll { change.allowedIPs.map(\.canonical).contains($0) }
            }
            if let i { s.peers[i] = peer } else { s.peers.append(peer) }
        }
        return s
    }

    static func apply(_ diff: MeshDiff, to routes: [Route]) -> [Route] {
        var r = routes
        r.removeAll { old in diff.routesToDelete.contains { $0.key == old.key } }
        for new in diff.routesToReplace { r.removeAll { $0.key == new.key }; r.append(new) }
        for new in diff.routesToAdd {
            precondition(!r.contains { $0.key == new.key }, "add of an existing route would fail with EEXIST")
            r.append(new)
        }
        return r.sorted()
    }
}
