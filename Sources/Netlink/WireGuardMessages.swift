import CMnl
import WGMeshCore

/// Attribute numbers of the kernel's `wireguard.h` (generic netlink family "wireguard", version 1).
enum WG {
    static let familyName = "wireguard"
    static let version: UInt8 = 1
    static let cmdGetDevice: UInt8 = 0
    static let cmdSetDevice: UInt8 = 1

    static let deviceIfindex: UInt16 = 1, deviceIfname: UInt16 = 2, devicePrivateKey: UInt16 = 3,
        devicePublicKey: UInt16 = 4
    static let deviceFlags: UInt16 = 5, deviceListenPort: UInt16 = 6, deviceFwmark: UInt16 = 7, devicePeers: UInt16 = 8
    static let deviceFlagReplacePeers: UInt32 = 1 << 0

    static let peerPublicKey: UInt16 = 1, peerPresharedKey: UInt16 = 2, peerFlags: UInt16 = 3, peerEndpoint: UInt16 = 4
    static let peerKeepalive: UInt16 = 5, peerLastHandshake: UInt16 = 6, peerRxBytes: UInt16 = 7,
        peerTxBytes: UInt16 = 8
    static let peerAllowedIPs: UInt16 = 9, peerProtocolVersion: UInt16 = 10
    static let peerFlagRemoveMe: UInt32 = 1 << 0, peerFlagReplaceAllowedIPs: UInt32 = 1 << 1,
        peerFlagUpdateOnly: UInt32 = 1 << 2

    static let allowedIPFamily: UInt16 = 1, allowedIPAddress: UInt16 = 2, allowedIPCidrMask: UInt16 = 3

}

/// Builds and reads WG_CMD_SET_DEVICE / WG_CMD_GET_DEVICE messages.
enum WireGuardMessages {
    static let defaultCapacity = KernelWireGuard.defaultMessageCapacity

    /// Encodes `config` for device `name` as one or more SET messages of at most `capacity` bytes each. Later messages
    /// carry only the interface name and the remaining peers; a peer whose allowed IPs do not fit even in a message of
    /// its own continues in the next message with only its key and the rest of its allowed IPs, so replace-peers and
    /// replace-allowed-ips act once, in the first fragment (see `wireguard.h`).
    static func setDevice(family: UInt16, name: String, config: DeviceConfig, capacity: Int = defaultCapacity) throws
        -> [MessageBuilder]
    {
        try InterfaceName.validate(name, operation: "set wireguard device \"\(name)\"")
        precondition(capacity >= 1024 && capacity < 65536, "message capacity must fit a peer and a 16-bit nest length")
        var messages: [MessageBuilder] = []
        var peerIndex = 0
        var ipIndex = 0
        repeat {
            let m = MessageBuilder(capacity: capacity, type: family, flags: 0)
            m.putHeader(genlmsghdr(cmd: WG.cmdSetDevice, version: WG.version, reserved: 0))
            m.put(WG.deviceIfname, string: name)
            if messages.isEmpty {
                if let key = config.privateKey { m.put(WG.devicePrivateKey, bytes: key.bytes) }
                if let port = config.listenPort { m.put(WG.deviceListenPort, u16: port) }
                if let mark = config.firewallMark { m.put(WG.deviceFwmark, u32: mark) }
                if config.replacePeers { m.put(WG.deviceFlags, u32: WG.deviceFlagReplacePeers) }
            }
            if peerIndex < config.peers.count, let peers = m.nestStart(WG.devicePeers) {
                var peersInMessage = 0
                while peerIndex < config.peers.count {
                    let peer = config.peers[peerIndex]
                    let startIP = ipIndex
                    guard let nest = m.nestStart(0) else { break }
                    guard putPeerHeader(peer, first: ipIndex == 0, into: m) else {
                        m.nestCancel(nest)
                        break
                    }
                    let ips = peer.remove ? [] : peer.allowedIPs
                    if ipIndex < ips.count {
                        guard let list = m.nestStart(WG.peerAllowedIPs) else {
                            m.nestCancel(nest)
                            break
                        }
                        while ipIndex < ips.count, putAllowedIP(ips[ipIndex], into: m) { ipIndex += 1 }
                        m.nestEnd(list)
                    }
                    if ipIndex < ips.count, peersInMessage > 0 {
                        // Full: move the whole peer to the next message rather than split it needlessly.
                        m.nestCancel(nest)
                        ipIndex = startIP
                        break
                    }
                    m.nestEnd(nest)
                    peersInMessage += 1
                    if ipIndex < ips.count { break }  // too many allowed IPs for one message: continue next time
                    peerIndex += 1
                    ipIndex = 0
                }
                m.nestEnd(peers)
            }
            messages.append(m)
        } while peerIndex < config.peers.count
        return messages
    }

    private static func putPeerHeader(_ peer: PeerConfig, first: Bool, into m: MessageBuilder) -> Bool {
        guard m.put(WG.peerPublicKey, bytes: peer.publicKey.bytes) else { return false }
        guard first else { return true }
        var flags: UInt32 = 0
        if peer.remove { flags |= WG.peerFlagRemoveMe }
        if peer.replaceAllowedIPs { flags |= WG.peerFlagReplaceAllowedIPs }
        if peer.updateOnly { flags |= WG.peerFlagUpdateOnly }
        if flags != 0, !m.put(WG.peerFlags, u32: flags) { return false }
        if peer.remove { return true }
        if let psk = peer.presharedKey, !m.put(WG.peerPresharedKey, bytes: psk.bytes) { return false }
        if let endpoint = peer.endpoint, !m.put(WG.peerEndpoint, bytes: sockaddr(endpoint)) { return false }
        if let keepalive = peer.persistentKeepalive, !m.put(WG.peerKeepalive, u16: keepalive) { return false }
        return true
    }

    private static func putAllowedIP(_ prefix: IPPrefix, into m: MessageBuilder) -> Bool {
        guard let nest = m.nestStart(0) else { return false }
        guard m.put(WG.allowedIPFamily, u16: AddressFamily.of(prefix.family)),
            m.put(WG.allowedIPAddress, bytes: prefix.address.bytes),
            m.put(WG.allowedIPCidrMask, u8: UInt8(prefix.length))
        else {
            m.nestCancel(nest)
            return false
        }
        m.nestEnd(nest)
        return true
    }

    /// `struct sockaddr_in` / `sockaddr_in6` bytes (family in host order, port in network order).
    static func sockaddr(_ endpoint: Endpoint) -> [UInt8] {
        let family = AddressFamily.of(endpoint.address.family)
        var out = withUnsafeBytes(of: family) { Array($0) }
        out += [UInt8(endpoint.port >> 8), UInt8(endpoint.port & 0xff)]
        if endpoint.address.family == .v4 {
            out += endpoint.address.bytes + [UInt8](repeating: 0, count: 8)
        } else {
            out += [0, 0, 0, 0] + endpoint.address.bytes + [0, 0, 0, 0]  // flowinfo, address, scope id
        }
        return out
    }

    static func endpoint(fromSockaddr b: UnsafeRawBufferPointer) -> Endpoint? {
        guard b.count >= 8 else { return nil }
        let family = b.loadUnaligned(as: UInt16.self)
        let port = UInt16(b[2]) << 8 | UInt16(b[3])
        switch AddressFamily.ipFamily(family) {
        case .v4?: return (try? IPAddress(bytes: b[4..<8])).map { Endpoint(address: $0, port: port) }
        case .v6? where b.count >= 24:
            return (try? IPAddress(bytes: b[8..<24])).map { Endpoint(address: $0, port: port) }
        default: return nil
        }
    }

    /// One peer entry of a SET or GET message, as found on the wire.
    struct PeerEntry {
        var publicKey: WireGuardKey
        var flags: UInt32 = 0
        var presharedKey: WireGuardKey?
        var endpoint: Endpoint?
        var keepalive: UInt16?
        var allowedIPs: [IPPrefix] = []
        var lastHandshake: (Int64, Int64) = (0, 0)
        var rxBytes: UInt64 = 0
        var txBytes: UInt64 = 0
        var protocolVersion: UInt32 = 0
    }

    static func decodePeer(_ attributes: [Attribute]) throws -> PeerEntry {
        guard let keyAttr = attributes.first(where: { $0.type == WG.peerPublicKey }) else {
            throw NetlinkError.invalid("read wireguard peer", "the kernel sent a peer without a public key")
        }
        var peer = PeerEntry(publicKey: try WireGuardKey(bytes: keyAttr.payload))
        for a in attributes {
            switch a.type {
            case WG.peerFlags: peer.flags = a.u32 ?? 0
            case WG.peerPresharedKey: peer.presharedKey = try WireGuardKey(bytes: a.payload)
            case WG.peerEndpoint: peer.endpoint = endpoint(fromSockaddr: a.payload)
            case WG.peerKeepalive: peer.keepalive = a.u16
            case WG.peerLastHandshake where a.payload.count >= 16:
                peer.lastHandshake = (
                    a.payload.loadUnaligned(as: Int64.self), a.payload.loadUnaligned(fromByteOffset: 8, as: Int64.self)
                )
            case WG.peerRxBytes: peer.rxBytes = a.u64 ?? 0
            case WG.peerTxBytes: peer.txBytes = a.u64 ?? 0
            case WG.peerProtocolVersion: peer.protocolVersion = a.u32 ?? 0
            case WG.peerAllowedIPs:
                for entry in a.nested {
                    let fields = entry.nested
                    guard
                        let fam = fields.first(where: { $0.type == WG.allowedIPFamily })?.u16.flatMap(
                            AddressFamily.ipFamily),
                        let addr = fields.first(where: { $0.type == WG.allowedIPAddress }),
                        let mask = fields.first(where: { $0.type == WG.allowedIPCidrMask })?.u8,
                        addr.payload.count >= fam.byteCount
                    else { continue }
                    let address = try IPAddress(bytes: addr.payload.prefix(fam.byteCount))
                    peer.allowedIPs.append(try IPPrefix(address: address, length: Int(mask)))
                }
            default: break
            }
        }
        return peer
    }

    /// The device-level attributes and peers of one message, for coalescing a multi-message answer.
    static func merge(
        messageAttributes attributes: [Attribute], into device: inout DeviceState, peers: inout [PeerEntry]
    ) throws {
        for a in attributes {
            switch a.type {
            case WG.deviceIfindex: device.interfaceIndex = a.u32 ?? device.interfaceIndex
            case WG.deviceIfname: device.name = a.string
            case WG.devicePrivateKey:
                let key = try WireGuardKey(bytes: a.payload)
                device.privateKey = key.isZero ? nil : key
            case WG.devicePublicKey:
                let key = try WireGuardKey(bytes: a.payload)
                device.publicKey = key.isZero ? nil : key
            case WG.deviceListenPort: device.listenPort = a.u16 ?? 0
            case WG.deviceFwmark: device.firewallMark = a.u32 ?? 0
            case WG.devicePeers:
                for entry in a.nested {
                    let peer = try decodePeer(entry.nested)
                    // The kernel repeats a peer (key and allowed IPs only) when its allowed IPs overflow a message.
                    if let last = peers.last, last.publicKey == peer.publicKey {
                        peers[peers.count - 1].allowedIPs += peer.allowedIPs
                    } else {
                        peers.append(peer)
                    }
                }
            default: break
            }
        }
    }
}

extension PeerState {
    init(_ entry: WireGuardMessages.PeerEntry) {
        self.init(
            publicKey: entry.publicKey,
            presharedKey: entry.presharedKey.flatMap { $0.isZero ? nil : $0 },
            endpoint: entry.endpoint,
            persistentKeepalive: entry.keepalive ?? 0,
            allowedIPs: entry.allowedIPs,
            lastHandshakeSeconds: entry.lastHandshake.0,
            lastHandshakeNanoseconds: entry.lastHandshake.1,
            receivedBytes: entry.rxBytes,
            transmittedBytes: entry.txBytes,
            protocolVersion: entry.protocolVersion)
    }
}
