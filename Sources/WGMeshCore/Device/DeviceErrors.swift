/// An interface of that name exists but is not the backend's kind.
public enum InterfaceError: Error, CustomStringConvertible {
    case notWireGuard(String, kind: String?)

    public var description: String {
        switch self {
        case .notWireGuard(let name, let kind):
            return
                """
                interface \(name) exists but is \(kind.map { "a \($0) link" } ?? "not a WireGuard link"): remove \
                it or choose another --interface
                """
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
            \(taken.count) route\(taken.count == 1 ? "" : "s") into the tunnel could not be added: \(listed); wgmesh \
            never changes routes \
            it did not make, so traffic to those Pod CIDRs does not go through the tunnel: remove the other route (or \
            the \
            address that makes it, e.g. a stale bridge address) and the agent adds its own at the next try
            """
    }
}
