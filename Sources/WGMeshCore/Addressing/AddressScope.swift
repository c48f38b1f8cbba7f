/// An IPv4 address's scope (`ip addr add … scope link`). The kernel picks a link-scoped address as the source
/// only of packets routed out of its own interface, never of those leaving by another one (say, while the
/// underlay interface has no address). IPv6 derives an address's scope from the address itself.
public enum AddressScope: Sendable, Hashable {
    case global, link
}
