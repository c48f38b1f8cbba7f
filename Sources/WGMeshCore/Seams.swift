/// The kernel's WireGuard configuration interface (generic netlink in production).
public protocol WireGuardDevice {
    /// The device's whole configuration and peer statistics.
    func device(named name: String) throws -> DeviceState
    /// Applies a change; bad input is rejected before anything is sent.
    func configure(_ name: String, _ config: DeviceConfig) throws
}

/// A network interface as the kernel reports it.
public struct LinkState: Sendable, Hashable {
    public var name: String
    public var index: UInt32
    public var mtu: UInt32
    public var isUp: Bool
    /// The `IFLA_INFO_KIND` (for example `wireguard`, `veth`), nil for plain devices.
    public var kind: String?

    public init(name: String, index: UInt32, mtu: UInt32, isUp: Bool, kind: String?) {
        self.name = name
        self.index = index
        self.mtu = mtu
        self.isUp = isUp
        self.kind = kind
    }
}

/// Network interfaces and their addresses (rtnetlink in production).
public protocol LinkTable {
    /// The link called `name`, or nil when none exists.
    func link(named name: String) throws -> LinkState?
    /// Creates a WireGuard interface.
    func createWireGuardLink(named name: String, mtu: UInt32?) throws -> LinkState
    /// Sets MTU and administrative state; nil leaves a field as it is.
    func setLink(index: UInt32, mtu: UInt32?, up: Bool?) throws
    func deleteLink(index: UInt32) throws
    /// The link that has `address` (the node's own underlay address), or nil when none has.
    func interface(carrying address: IPAddress) throws -> LinkState?
    func addresses(ofLinkIndex index: UInt32) throws -> [IPPrefix]
    func addAddress(_ address: IPPrefix, toLinkIndex index: UInt32, scope: AddressScope) throws
    func removeAddress(_ address: IPPrefix, fromLinkIndex index: UInt32) throws
}

/// The routes wgmesh owns (rtnetlink in production). Implementations see and change only
/// routes tagged with wgmesh's route protocol number.
public protocol RouteTable {
    /// wgmesh's routes of `family` (both families when nil).
    func routes(family: IPFamily?) throws -> [Route]
    /// Adds a route; fails if one with the same key exists, with `RouteTaken` when another program's route
    /// holds that key (wgmesh never changes such a route).
    func add(_ route: Route) throws
    /// Adds a route or replaces the one with the same key.
    func replace(_ route: Route) throws
    /// Deletes a route of wgmesh's; never one another program installed.
    func delete(_ route: Route) throws
}

/// How the WireGuard interface comes to exist: a kernel link over rtnetlink, or `wireguard-go` with a
/// tun device. Links, addresses and routes stay on rtnetlink either way.
public protocol WireGuardInterfaces {
    /// `kernel` or `userspace`, for logs.
    var backend: String { get }
    /// Makes sure the interface exists and can be configured; true when it was made now (empty).
    func ensure(named name: String, mtu: UInt32) throws -> Bool
    /// Removes the interface; false when there was none.
    func remove(named name: String) throws -> Bool
    /// Why the interface cannot be had yet, when another process provides it (wireguard-go of the
    /// wgmesh-device DaemonSet) and it does not answer; nil when `ensure` can go ahead.
    func unavailable(named name: String) -> String?
}

extension WireGuardInterfaces {
    public func unavailable(named name: String) -> String? { nil }
}

/// An interface of that name exists but is not the backend's kind.
public enum InterfaceError: Error, CustomStringConvertible {
    case notWireGuard(String, kind: String?)

    public var description: String {
        switch self {
        case .notWireGuard(let name, let kind):
            return
                "interface \(name) exists but is \(kind.map { "a \($0) link" } ?? "not a WireGuard link"): remove it or choose another --interface"
        }
    }
}

/// A route of another program (another protocol than wgmesh's) holds the key a wgmesh route needs: the
/// kernel refuses the add (EEXIST), and wgmesh, which never touches routes it did not make, leaves it.
public struct RouteTaken: Error, Sendable, Hashable, CustomStringConvertible {
    public var route: Route
    /// The route that holds the key, as `ip route` shows it (`10.244.2.0/24 dev cni0 proto kernel`).
    public var holder: String

    public init(route: Route, holder: String) {
        self.route = route
        self.holder = holder
    }

    public var description: String { "route \(route.destination) is held by another program's route (\(holder))" }
}

/// Routes a diff could not add because other programs' routes hold their keys; everything else of the
/// diff was applied.
public struct RoutesTaken: Error, Sendable, Hashable, CustomStringConvertible {
    public var taken: [RouteTaken]

    public init(_ taken: [RouteTaken]) { self.taken = taken }

    public var description: String {
        let listed =
            taken.prefix(5).map(\.description).joined(separator: "; ")
            + (taken.count > 5 ? "; and \(taken.count - 5) more" : "")
        return """
            \(taken.count) route\(taken.count == 1 ? "" : "s") into the tunnel could not be added: \(listed); wgmesh never changes routes \
            it did not make, so traffic to those Pod CIDRs does not go through the tunnel: remove the other route (or the \
            address that makes it, e.g. a stale bridge address) and the agent adds its own at the next try
            """
    }
}

/// An IPv4 address's scope (`ip addr add … scope link`). The kernel picks a link-scoped address as the source
/// only of packets routed out of its own interface, never of those leaving by another one (say, while the
/// underlay interface has no address). IPv6 derives an address's scope from the address itself.
public enum AddressScope: Sendable, Hashable {
    case global, link
}
