/// Where a peer is dialled: an IP address and a UDP port.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public let address: IPAddress
    public let port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `host:port`, IPv6 in brackets (`[fd00::1]:51820`).
    public init(_ text: some StringProtocol) throws(EndpointError) {
        self = try Endpoint.parse(utf8: text.utf8)
    }

    /// `init(_:)` on ASCII bytes; a String is made only for an error message.
    public static func parse<C: Collection<UInt8>>(utf8 u: C) throws(EndpointError) -> Endpoint {
        let bracketed = u.first == UInt8(ascii: "[")
        let host: C.SubSequence
        let portText: C.SubSequence
        if bracketed {
            guard let close = u.firstIndex(of: UInt8(ascii: "]")),
                u[u.index(after: close)...].first == UInt8(ascii: ":")
            else {
                throw .malformed(String(decoding: u, as: UTF8.self))
            }
            host = u[u.index(after: u.startIndex)..<close]
            portText = u[u.index(close, offsetBy: 2)...]
        } else {
            guard let colon = u.firstIndex(of: UInt8(ascii: ":")),
                !u[u.index(after: colon)...].contains(UInt8(ascii: ":"))
            else {
                throw .malformed(String(decoding: u, as: UTF8.self))
            }
            host = u[..<colon]
            portText = u[u.index(after: colon)...]
        }
        guard let address = IPAddress.parse(utf8: host), bracketed == (address.family == .v6) else {
            throw .malformed(String(decoding: u, as: UTF8.self))
        }
        var port = 0
        for c in portText {
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9"), port <= 65535 else {
                throw .badPort(String(decoding: u, as: UTF8.self))
            }
            port = port * 10 + Int(c - UInt8(ascii: "0"))
        }
        guard (1...65535).contains(port) else { throw .badPort(String(decoding: u, as: UTF8.self)) }
        return Endpoint(address: address, port: UInt16(port))
    }

    public var description: String {
        address.family == .v6 ? "[\(address)]:\(port)" : "\(address):\(port)"
    }
}

/// Why an endpoint was rejected.
public enum EndpointError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case badPort(String)

    public var description: String {
        switch self {
        case .malformed(let s):
            return "\"\(s)\" is not an endpoint: write host:port with an IP address, IPv6 in brackets ([fd00::1]:51820)"
        case .badPort(let s): return "\"\(s)\" has no valid port: use a UDP port from 1 to 65535"
        }
    }
}

/// A change to one peer of a WireGuard device (what WG_CMD_SET_DEVICE carries per peer).
public struct PeerConfig: Sendable, Hashable {
    public var publicKey: WireGuardKey
    /// nil leaves it unchanged; `.zero` removes it.
    public var presharedKey: WireGuardKey?
    /// nil leaves it unchanged.
    public var endpoint: Endpoint?
    /// Seconds; nil leaves it unchanged, 0 disables.
    public var persistentKeepalive: UInt16?
    /// Added to the peer's allowed IPs, or replacing them when `replaceAllowedIPs`.
    public var allowedIPs: [IPPrefix]
    public var replaceAllowedIPs: Bool
    /// The peer must not exist afterwards.
    public var remove: Bool
    /// Change the peer only if it exists already.
    public var updateOnly: Bool

    public init(
        publicKey: WireGuardKey, presharedKey: WireGuardKey? = nil, endpoint: Endpoint? = nil,
        persistentKeepalive: UInt16? = nil, allowedIPs: [IPPrefix] = [], replaceAllowedIPs: Bool = false,
        remove: Bool = false, updateOnly: Bool = false
    ) {
        self.publicKey = publicKey
        self.presharedKey = presharedKey
        self.endpoint = endpoint
        self.persistentKeepalive = persistentKeepalive
        self.allowedIPs = allowedIPs
        self.replaceAllowedIPs = replaceAllowedIPs
        self.remove = remove
        self.updateOnly = updateOnly
    }

    /// A change that deletes the peer.
    public static func removal(of key: WireGuardKey) -> PeerConfig { PeerConfig(publicKey: key, remove: true) }
}

/// A change to a WireGuard device: nil fields are left as they are.
public struct DeviceConfig: Sendable, Hashable {
    /// `.zero` removes the private key.
    public var privateKey: WireGuardKey?
    /// 0 lets the kernel choose.
    public var listenPort: UInt16?
    /// 0 disables.
    public var firewallMark: UInt32?
    /// Remove every peer not in `peers`.
    public var replacePeers: Bool
    public var peers: [PeerConfig]

    public init(
        privateKey: WireGuardKey? = nil, listenPort: UInt16? = nil, firewallMark: UInt32? = nil,
        replacePeers: Bool = false, peers: [PeerConfig] = []
    ) {
        self.privateKey = privateKey
        self.listenPort = listenPort
        self.firewallMark = firewallMark
        self.replacePeers = replacePeers
        self.peers = peers
    }

    /// True when applying it would change nothing.
    public var isEmpty: Bool {
        privateKey == nil && listenPort == nil && firewallMark == nil && !replacePeers && peers.isEmpty
    }
}

/// A peer as the kernel reports it.
public struct PeerState: Sendable, Hashable {
    public var publicKey: WireGuardKey
    public var presharedKey: WireGuardKey?
    public var endpoint: Endpoint?
    public var persistentKeepalive: UInt16
    public var allowedIPs: [IPPrefix]
    /// Seconds and nanoseconds since the epoch; nil when no handshake happened yet.
    public var lastHandshake: (seconds: Int64, nanoseconds: Int64)? {
        get {
            lastHandshakeSeconds == 0 && lastHandshakeNanoseconds == 0
                ? nil : (lastHandshakeSeconds, lastHandshakeNanoseconds)
        }
        set { (lastHandshakeSeconds, lastHandshakeNanoseconds) = newValue ?? (0, 0) }
    }
    public var lastHandshakeSeconds: Int64
    public var lastHandshakeNanoseconds: Int64
    public var receivedBytes: UInt64
    public var transmittedBytes: UInt64
    public var protocolVersion: UInt32

    public init(
        publicKey: WireGuardKey, presharedKey: WireGuardKey? = nil, endpoint: Endpoint? = nil,
        persistentKeepalive: UInt16 = 0, allowedIPs: [IPPrefix] = [], lastHandshakeSeconds: Int64 = 0,
        lastHandshakeNanoseconds: Int64 = 0, receivedBytes: UInt64 = 0, transmittedBytes: UInt64 = 0,
        protocolVersion: UInt32 = 0
    ) {
        self.publicKey = publicKey
        self.presharedKey = presharedKey
        self.endpoint = endpoint
        self.persistentKeepalive = persistentKeepalive
        self.allowedIPs = allowedIPs
        self.lastHandshakeSeconds = lastHandshakeSeconds
        self.lastHandshakeNanoseconds = lastHandshakeNanoseconds
        self.receivedBytes = receivedBytes
        self.transmittedBytes = transmittedBytes
        self.protocolVersion = protocolVersion
    }
}

/// A WireGuard device as the kernel reports it.
public struct DeviceState: Sendable, Hashable {
    public var name: String
    public var interfaceIndex: UInt32
    public var privateKey: WireGuardKey?
    public var publicKey: WireGuardKey?
    public var listenPort: UInt16
    public var firewallMark: UInt32
    public var peers: [PeerState]

    public init(
        name: String, interfaceIndex: UInt32 = 0, privateKey: WireGuardKey? = nil, publicKey: WireGuardKey? = nil,
        listenPort: UInt16 = 0, firewallMark: UInt32 = 0, peers: [PeerState] = []
    ) {
        self.name = name
        self.interfaceIndex = interfaceIndex
        self.privateKey = privateKey
        self.publicKey = publicKey
        self.listenPort = listenPort
        self.firewallMark = firewallMark
        self.peers = peers
    }
}

/// A route wgmesh owns: a destination sent out of one interface.
public struct Route: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var destination: IPPrefix
    public var interfaceIndex: UInt32
    /// Routing table id; 254 is `main`.
    public var table: UInt32
    /// Route priority (metric). IPv6 has no metric 0: the kernel stores it as 1024, and so does this type.
    public var metric: UInt32

    public static let mainTable: UInt32 = 254

    public init(destination: IPPrefix, interfaceIndex: UInt32, table: UInt32 = Route.mainTable, metric: UInt32 = 0) {
        self.destination = destination
        self.interfaceIndex = interfaceIndex
        self.table = table
        self.metric = destination.family == .v6 && metric == 0 ? 1024 : metric
    }

    /// What the kernel keys a route on: two routes with the same key cannot both exist.
    public var key: RouteKey { RouteKey(destination: destination.canonical, table: table, metric: metric) }

    public var description: String { "\(destination) dev#\(interfaceIndex) table \(table) metric \(metric)" }
    public static func < (a: Route, b: Route) -> Bool {
        (a.destination, a.table, a.metric, a.interfaceIndex) < (b.destination, b.table, b.metric, b.interfaceIndex)
    }
}

/// The identity of a route in the kernel's table (destination, table, metric).
public struct RouteKey: Sendable, Hashable {
    public var destination: IPPrefix
    public var table: UInt32
    public var metric: UInt32
}
