import WGMeshCore

/// What every `WireGuardDevice` backend must do, with the kernel's generic-netlink meaning: the same
/// checks run against kernel WireGuard (NetlinkTests, in the VM) and wireguard-go (UserspaceTests, on the
/// host). Each throws a `ContractFailure` naming what differed. Test code only.
public enum WireGuardContract {
    public struct ContractFailure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    static func expect(_ ok: Bool, _ what: @autoclosure () -> String) throws {
        if !ok { throw ContractFailure(what()) }
    }

    static func peers(_ count: Int) throws -> [PeerConfig] {
        try (0..<count).map { i in
            PeerConfig(
                publicKey: WireGuardKeyPair.generate().publicKey,
                endpoint: try Endpoint("192.0.2.\(i % 250 + 1):\(40000 + i % 20000)"),
                persistentKeepalive: UInt16(i % 3 == 0 ? 25 : 0),
                allowedIPs: [
                    try IPPrefix(address: IPAddress(family: .v4, value: 0x0A00_0000 | UInt128(i) << 8), length: 24)
                ],
                replaceAllowedIPs: true)
        }
    }

    /// A whole configuration set, then read back equal.
    public static func readBackEqualsSet(_ device: some WireGuardDevice, interface: String) throws {
        let keys = WireGuardKeyPair.generate()
        let set = [
            PeerConfig(
                publicKey: WireGuardKeyPair.generate().publicKey, presharedKey: WireGuardKeyPair.generate().privateKey,
                endpoint: try Endpoint("192.0.2.10:51820"), persistentKeepalive: 25,
                allowedIPs: [try IPPrefix("10.244.1.0/24"), try IPPrefix("fd00:10:244:1::/64")]),
            PeerConfig(
                publicKey: WireGuardKeyPair.generate().publicKey, endpoint: try Endpoint("[2001:db8::20]:4500"),
                allowedIPs: [try IPPrefix("10.244.2.0/24")]),
            PeerConfig(publicKey: WireGuardKeyPair.generate().publicKey),
        ]
        try device.configure(
            interface, DeviceConfig(privateKey: keys.privateKey, listenPort: 51999, replacePeers: true, peers: set))
        let state = try device.device(named: interface)
        try expect(state.privateKey == keys.privateKey, "private key read back")
        try expect(state.publicKey == keys.publicKey, "public key derived: \(String(describing: state.publicKey))")
        try expect(state.listenPort == 51999, "listen port \(state.listenPort)")
        try expect(Set(state.peers.map(\.publicKey)) == Set(set.map(\.publicKey)), "peers \(state.peers.count)")
        for want in set {
            guard let got = state.peers.first(where: { $0.publicKey == want.publicKey }) else {
                throw ContractFailure("peer missing")
            }
            try expect(got.presharedKey == want.presharedKey, "preshared key of a peer")
            try expect(
                got.endpoint == want.endpoint,
                "endpoint \(String(describing: got.endpoint)), wanted \(String(describing: want.endpoint))")
            try expect(
                got.persistentKeepalive == (want.persistentKeepalive ?? 0), "keepalive \(got.persistentKeepalive)")
            try expect(Set(got.allowedIPs) == Set(want.allowedIPs), "allowed IPs \(got.allowedIPs)")
            try expect(
                got.lastHandshake == nil && got.receivedBytes == 0, "a peer never reached has no handshake and no bytes"
            )
        }
    }

    /// Update-only skips a peer that is not there; a change to one that is keeps its other fields;
    /// replace-allowed-ips replaces, without it the allowed IPs add up; removal removes.
    public static func updateOnlyReplaceAndRemoval(_ device: some WireGuardDevice, interface: String) throws {
        let a = WireGuardKeyPair.generate().publicKey
        let b = WireGuardKeyPair.generate().publicKey
        try device.configure(
            interface,
            DeviceConfig(
                privateKey: WireGuardKeyPair.generate().privateKey, replacePeers: true,
                peers: [
                    PeerConfig(
                        publicKey: a, endpoint: try Endpoint("192.0.2.1:1000"), persistentKeepalive: 25,
                        allowedIPs: [try IPPrefix("10.1.0.0/24")])
                ]))
        try device.configure(
            interface,
            DeviceConfig(peers: [PeerConfig(publicKey: b, allowedIPs: [try IPPrefix("10.2.0.0/24")], updateOnly: true)])
        )
        var state = try device.device(named: interface)
        try expect(state.peers.map(\.publicKey) == [a], "update-only added a peer that was not there")
        try device.configure(
            interface,
            DeviceConfig(peers: [PeerConfig(publicKey: a, allowedIPs: [try IPPrefix("10.3.0.0/24")], updateOnly: true)])
        )
        state = try device.device(named: interface)
        try expect(
            Set(state.peers[0].allowedIPs) == Set([try IPPrefix("10.1.0.0/24"), try IPPrefix("10.3.0.0/24")]),
            "allowed IPs add up: \(state.peers[0].allowedIPs)")
        try expect(
            state.peers[0].endpoint == (try Endpoint("192.0.2.1:1000")) && state.peers[0].persistentKeepalive == 25,
            "other fields kept")
        try device.configure(
            interface,
            DeviceConfig(peers: [
                PeerConfig(
                    publicKey: a, allowedIPs: [try IPPrefix("10.4.0.0/24")], replaceAllowedIPs: true,
                    updateOnly: true)
            ]))
        state = try device.device(named: interface)
        try expect(
            state.peers[0].allowedIPs == [try IPPrefix("10.4.0.0/24")],
            "replace-allowed-ips: \(state.peers[0].allowedIPs)")
        try device.configure(interface, DeviceConfig(peers: [.removal(of: a)]))
        try expect(try device.device(named: interface).peers.isEmpty, "removal")
    }

    /// Many peers in one configuration, all read back.
    public static func manyPeers(_ device: some WireGuardDevice, interface: String, count: Int) throws {
        let set = try peers(count)
        try device.configure(
            interface, DeviceConfig(privateKey: WireGuardKeyPair.generate().privateKey, replacePeers: true, peers: set))
        let state = try device.device(named: interface)
        try expect(state.peers.count == count, "\(state.peers.count) of \(count) peers read back")
        let byKey = Dictionary(uniqueKeysWithValues: state.peers.map { ($0.publicKey, $0) })
        for want in set {
            guard let got = byKey[want.publicKey] else { throw ContractFailure("peer missing") }
            try expect(
                got.allowedIPs == want.allowedIPs && got.endpoint == want.endpoint
                    && got.persistentKeepalive == want.persistentKeepalive,
                "peer read back differently")
        }
    }

    /// A failure names the operation and the interface.
    public static func errorsNameTheOperation(_ device: some WireGuardDevice, missing: String) throws {
        do {
            _ = try device.device(named: missing)
            throw ContractFailure("reading a missing interface succeeded")
        } catch let error as ContractFailure {
            throw error
        } catch {
            try expect("\(error)".contains(missing), "the error names the interface: \(error)")
        }
        do {
            try device.configure(missing, DeviceConfig(listenPort: 1))
            throw ContractFailure("configuring a missing interface succeeded")
        } catch let error as ContractFailure {
            throw error
        } catch {
            try expect("\(error)".contains(missing), "the error names the interface: \(error)")
        }
    }
}
