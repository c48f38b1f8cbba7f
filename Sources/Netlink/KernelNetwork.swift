import CMnl
import WGMeshCore
#if canImport(Glibc)
    import Glibc
#endif

/// Links, addresses and routes through rtnetlink. Routes carry `routeProtocol`, and only routes
/// carrying it are listed or deleted, so wgmesh never touches a route another program made.
public final class KernelNetwork: LinkTable, RouteTable {
    /// wgmesh's route protocol number (`ip route show proto 0x57`); 5-255 are free for routing daemons.
    public static let defaultRouteProtocol: UInt8 = 0x57
    public let routeProtocol: UInt8
    private let socket: NetlinkSocket

    /// Connects to rtnetlink, inside the network namespace at `namespacePath` when given.
    public init(namespacePath: String? = nil, routeProtocol: UInt8 = KernelNetwork.defaultRouteProtocol) throws {
        precondition(routeProtocol > 4, "route protocols 0-4 belong to the kernel")
        socket = try NetlinkSocket(protocol: NETLINK_ROUTE, namespacePath: namespacePath)
        self.routeProtocol = routeProtocol
    }

    // MARK: links

    public func link(named name: String) throws -> LinkState? {
        let operation = "get link \"\(name)\""
        try InterfaceName.validate(name, operation: operation)
        let m = MessageBuilder(capacity: 512, type: UInt16(RTM_GETLINK), flags: 0)
        m.putHeader(ifinfomsg())
        m.put(UInt16(IFLA_IFNAME), string: name)
        var found: LinkState?
        do {
            try socket.request(m, operation: operation) { found = Self.decodeLink($0) }
        } catch let error as NetlinkError where error.errno == ENODEV {
            return nil
        }
        return found
    }

    public func createWireGuardLink(named name: String, mtu: UInt32?) throws -> LinkState {
        let operation = "create wireguard link \"\(name)\""
        try InterfaceName.validate(name, operation: operation)
        if let mtu, !(1280...65535).contains(mtu) {
            throw NetlinkError.invalid(
                operation, "MTU \(mtu) is outside 1280...65535 (WireGuard needs IPv6's minimum of 1280)")
        }
        let m = MessageBuilder(capacity: 512, type: UInt16(RTM_NEWLINK), flags: NLM_F_CREATE | NLM_F_EXCL)
        m.putHeader(ifinfomsg())
        m.put(UInt16(IFLA_IFNAME), string: name)
        if let mtu { m.put(UInt16(IFLA_MTU), u32: mtu) }
        let info = m.nestStart(UInt16(IFLA_LINKINFO))!
        m.put(UInt16(IFLA_INFO_KIND), string: "wireguard")
        m.nestEnd(info)
        try socket.request(m, operation: operation)
        guard let link = try link(named: name) else {
            throw NetlinkError(
                operation: operation, errno: ENODEV, detail: "the link vanished right after it was created")
        }
        return link
    }

    public func setLink(index: UInt32, mtu: UInt32?, up: Bool?) throws {
        let m = MessageBuilder(capacity: 256, type: UInt16(RTM_NEWLINK), flags: 0)
        var h = ifinfomsg()
        h.ifi_index = Int32(bitPattern: index)
        if let up {
            h.ifi_flags = up ? UInt32(IFF_UP) : 0
            h.ifi_change = UInt32(IFF_UP)
        }
        m.putHeader(h)
        if let mtu { m.put(UInt16(IFLA_MTU), u32: mtu) }
        try socket.request(
            m, operation: "set link #\(index)\(mtu.map { " mtu \($0)" } ?? "")\(up.map { $0 ? " up" : " down" } ?? "")")
    }

    public func interface(carrying address: IPAddress) throws -> LinkState? {
        let m = MessageBuilder(capacity: 256, type: UInt16(RTM_GETADDR), flags: 0)
        m.putHeader(ifaddrmsg())
        var index: UInt32?
        try socket.dump(m, operation: "find the link carrying \(address)") { reply in
            guard index == nil, reply.type == UInt16(RTM_NEWADDR), let h = reply.header(as: ifaddrmsg.self),
                AddressFamily.ipFamily(UInt16(h.ifa_family)) == address.family
            else { return }
            let attrs = reply.attributes(after: MemoryLayout<ifaddrmsg>.size)
            if attrs.contains(where: {
                ($0.type == UInt16(IFA_LOCAL) || $0.type == UInt16(IFA_ADDRESS))
                    && $0.payload.elementsEqual(address.bytes)
            }) {
                index = h.ifa_index
            }
        }
        guard let index else { return nil }
        let get = MessageBuilder(capacity: 256, type: UInt16(RTM_GETLINK), flags: 0)
        var h = ifinfomsg()
        h.ifi_index = Int32(bitPattern: index)
        get.putHeader(h)
        var found: LinkState?
        try socket.request(get, operation: "get link #\(index)") { found = Self.decodeLink($0) }
        return found
    }

    public func deleteLink(index: UInt32) throws {
        let m = MessageBuilder(capacity: 256, type: UInt16(RTM_DELLINK), flags: 0)
        var h = ifinfomsg()
        h.ifi_index = Int32(bitPattern: index)
        m.putHeader(h)
        try socket.request(m, operation: "delete link #\(index)")
    }

    static func decodeLink(_ reply: ReceivedMessage) -> LinkState? {
        guard reply.type == UInt16(RTM_NEWLINK), let h = reply.header(as: ifinfomsg.self) else { return nil }
        var link = LinkState(
            name: "", index: UInt32(bitPattern: h.ifi_index), mtu: 0,
            isUp: h.ifi_flags & UInt32(IFF_UP) != 0, kind: nil)
        for a in reply.attributes(after: MemoryLayout<ifinfomsg>.size) {
            switch Int(a.type) {
            case Int(IFLA_IFNAME): link.name = a.string
            case Int(IFLA_MTU): link.mtu = a.u32 ?? 0
            case Int(IFLA_LINKINFO): link.kind = a.nested.first { $0.type == UInt16(IFLA_INFO_KIND) }?.string
            default: break
            }
        }
        return link
    }

    // MARK: addresses

    public func addresses(ofLinkIndex index: UInt32) throws -> [IPPrefix] {
        var out: [IPPrefix] = []
        let m = MessageBuilder(capacity: 256, type: UInt16(RTM_GETADDR), flags: 0)
        m.putHeader(ifaddrmsg())
        try socket.dump(m, operation: "list addresses of link #\(index)") { reply in
            guard reply.type == UInt16(RTM_NEWADDR), let h = reply.header(as: ifaddrmsg.self), h.ifa_index == index,
                let family = AddressFamily.ipFamily(UInt16(h.ifa_family))
            else { return }
            let attrs = reply.attributes(after: MemoryLayout<ifaddrmsg>.size)
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point IPv4 links.
            guard
                let a = attrs.first(where: { $0.type == UInt16(IFA_LOCAL) })
                    ?? attrs.first(where: { $0.type == UInt16(IFA_ADDRESS) }),
                a.payload.count == family.byteCount,
                let address = try? IPAddress(bytes: a.payload)
            else { return }
            if let prefix = try? IPPrefix(address: address, length: Int(h.ifa_prefixlen)) { out.append(prefix) }
        }
        return out
    }

    public func addAddress(_ address: IPPrefix, toLinkIndex index: UInt32, scope: AddressScope) throws {
        try sendAddress(
            RTM_NEWADDR, address, index, scope: scope, flags: NLM_F_CREATE | NLM_F_EXCL,
            operation: "add address \(address) to link #\(index)")
    }

    public func removeAddress(_ address: IPPrefix, fromLinkIndex index: UInt32) throws {
        try sendAddress(
            RTM_DELADDR, address, index, scope: .global, flags: 0,
            operation: "remove address \(address) from link #\(index)")
    }

    private func sendAddress(
        _ type: Int, _ address: IPPrefix, _ index: UInt32, scope: AddressScope, flags: Int32, operation: String
    ) throws {
        let m = MessageBuilder(capacity: 256, type: UInt16(type), flags: flags)
        var h = ifaddrmsg()
        h.ifa_family = UInt8(AddressFamily.of(address.family))
        h.ifa_prefixlen = UInt8(address.length)
        h.ifa_index = index
        if address.family == .v6 { h.ifa_flags = UInt8(IFA_F_NODAD) }  // no duplicate detection on a tunnel
        if address.family == .v4, scope == .link { h.ifa_scope = UInt8(RT_SCOPE_LINK.rawValue) }
        m.putHeader(h)
        m.put(UInt16(IFA_LOCAL), bytes: address.address.bytes)
        m.put(UInt16(IFA_ADDRESS), bytes: address.address.bytes)
        try socket.request(m, operation: operation)
    }

    // MARK: routes

    public func routes(family: IPFamily?) throws -> [Route] {
        var out: [Route] = []
        for f in family.map({ [$0] }) ?? IPFamily.allCases {
            let m = MessageBuilder(capacity: 256, type: UInt16(RTM_GETROUTE), flags: 0)
            var h = rtmsg()
            h.rtm_family = UInt8(AddressFamily.of(f))
            m.putHeader(h)
            try socket.dump(m, operation: "list \(f) routes") { reply in
                if let route = decodeRoute(reply, family: f) { out.append(route) }
            }
        }
        return out.sorted()
    }

    func decodeRoute(_ reply: ReceivedMessage, family: IPFamily) -> Route? {
        guard let h = reply.header(as: rtmsg.self), h.rtm_protocol == routeProtocol else { return nil }
        return decodeAnyRoute(reply, family: family)
    }

    /// A unicast route of `family`, whoever made it.
    func decodeAnyRoute(_ reply: ReceivedMessage, family: IPFamily) -> Route? {
        guard reply.type == UInt16(RTM_NEWROUTE), let h = reply.header(as: rtmsg.self),
            h.rtm_type == UInt8(RTN_UNICAST),
            UInt16(h.rtm_family) == AddressFamily.of(family)
        else { return nil }
        var destination = IPAddress(family: family, value: 0)
        var table = UInt32(h.rtm_table)
        var oif: UInt32 = 0
        var metric: UInt32 = 0
        for a in reply.attributes(after: MemoryLayout<rtmsg>.size) {
            switch a.type {
            case UInt16(RTA_DST.rawValue): if let d = try? IPAddress(bytes: a.payload) { destination = d }
            case UInt16(RTA_TABLE.rawValue): table = a.u32 ?? table
            case UInt16(RTA_OIF.rawValue): oif = a.u32 ?? 0
            case UInt16(RTA_PRIORITY.rawValue): metric = a.u32 ?? 0
            default: break
            }
        }
        guard let prefix = try? IPPrefix(address: destination, length: Int(h.rtm_dst_len)) else { return nil }
        return Route(destination: prefix, interfaceIndex: oif, table: table, metric: metric)
    }

    public func add(_ route: Route) throws {
        do {
            try sendRoute(RTM_NEWROUTE, route, flags: NLM_F_CREATE | NLM_F_EXCL, verb: "add")
        } catch let error as NetlinkError where error.errno == EEXIST {
            guard let holder = try foreignRoute(withKeyOf: route) else { throw error }
            throw RouteTaken(route: route, holder: holder)
        }
    }

    /// Another program's route with `route`'s key (destination, table, metric), as `ip route` shows it;
    /// nil when there is none (the route that exists is wgmesh's own).
    func foreignRoute(withKeyOf route: Route) throws -> String? {
        let family = route.destination.family
        let m = MessageBuilder(capacity: 256, type: UInt16(RTM_GETROUTE), flags: 0)
        var h = rtmsg()
        h.rtm_family = UInt8(AddressFamily.of(family))
        m.putHeader(h)
        var found: (route: Route, protocol: UInt8)?
        try socket.dump(m, operation: "list \(family) routes") { reply in
            guard found == nil, let h = reply.header(as: rtmsg.self), h.rtm_protocol != routeProtocol,
                let other = decodeAnyRoute(reply, family: family), other.key == route.key
            else { return }
            found = (other, h.rtm_protocol)
        }
        guard let found else { return nil }
        let device = try linkName(index: found.route.interfaceIndex).map { " dev \($0)" } ?? ""
        return "\(found.route.destination)\(device) proto \(Self.protocolName(found.protocol))"
    }

    /// The name of link `index`; nil when none has it.
    func linkName(index: UInt32) throws -> String? {
        guard index != 0 else { return nil }
        let m = MessageBuilder(capacity: 256, type: UInt16(RTM_GETLINK), flags: 0)
        var h = ifinfomsg()
        h.ifi_index = Int32(bitPattern: index)
        m.putHeader(h)
        var name: String?
        do {
            try socket.request(m, operation: "get link #\(index)") { name = Self.decodeLink($0)?.name }
        } catch let error as NetlinkError where error.errno == ENODEV {
            return nil
        }
        return name
    }

    /// A route protocol as iproute2's /etc/iproute2/rt_protos names it.
    static func protocolName(_ p: UInt8) -> String {
        switch p {
        case 1: return "redirect"
        case 2: return "kernel"
        case 3: return "boot"
        case 4: return "static"
        case 16: return "dhcp"
        default: return String(p)
        }
    }

    public func replace(_ route: Route) throws {
        try sendRoute(RTM_NEWROUTE, route, flags: NLM_F_CREATE | NLM_F_REPLACE, verb: "replace")
    }

    public func delete(_ route: Route) throws {
        try sendRoute(RTM_DELROUTE, route, flags: 0, verb: "delete")
    }

    private func sendRoute(_ type: Int, _ route: Route, flags: Int32, verb: String) throws {
        let m = MessageBuilder(capacity: 256, type: UInt16(type), flags: flags)
        var h = rtmsg()
        h.rtm_family = UInt8(AddressFamily.of(route.destination.family))
        h.rtm_dst_len = UInt8(route.destination.length)
        h.rtm_table = route.table < 256 ? UInt8(route.table) : UInt8(RT_TABLE_UNSPEC.rawValue)
        // The kernel matches the protocol on delete too, so a route of someone else's is never removed.
        h.rtm_protocol = routeProtocol
        h.rtm_scope = UInt8(RT_SCOPE_LINK.rawValue)
        h.rtm_type = UInt8(RTN_UNICAST)
        m.putHeader(h)
        m.put(UInt16(RTA_DST.rawValue), bytes: route.destination.network.bytes)
        m.put(UInt16(RTA_TABLE.rawValue), u32: route.table)
        m.put(UInt16(RTA_PRIORITY.rawValue), u32: route.metric)
        if route.interfaceIndex != 0 { m.put(UInt16(RTA_OIF.rawValue), u32: route.interfaceIndex) }
        try socket.request(
            m,
            operation: "\(verb) route \(route.destination) via link #\(route.interfaceIndex) (proto \(routeProtocol))")
    }
}
