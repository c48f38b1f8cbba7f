/// Hands out one Pod CIDR per configured IP family to every node, from one or more cluster CIDRs
/// per family. Memory grows with the number of allocations, never with the number of free blocks.
public struct PodCIDRAllocator: Sendable {
    /// One cluster CIDR split into blocks of `blockLength`; `used` holds the taken block indices, sorted.
    struct Pool: Sendable {
        let cidr: IPPrefix
        let blockLength: Int
        let capacity: UInt64
        var used: [UInt64] = []

        /// The lowest index not in `used`: the first position where used[k] != k (a monotone predicate).
        var lowestFree: UInt64? {
            var lo = 0, hi = used.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if used[mid] == UInt64(mid) { lo = mid + 1 } else { hi = mid }
            }
            return UInt64(lo) < capacity ? UInt64(lo) : nil
        }

        func position(of index: UInt64) -> (found: Bool, at: Int) {
            var lo = 0, hi = used.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if used[mid] < index { lo = mid + 1 } else { hi = mid }
            }
            return (lo < used.count && used[lo] == index, lo)
        }
    }

    private var pools: [Pool]
    private var byNode: [String: [IPPrefix]] = [:]
    private var byCIDR: [IPPrefix: String] = [:]

    /// The configured families, in order (IPv4 first).
    public var families: [IPFamily] { Array(Set(pools.map(\.cidr.family))).sorted() }

    /// - Parameters:
    ///   - clusterCIDRs: one or more per family; they must not overlap.
    ///   - nodeMaskIPv4, nodeMaskIPv6: the size of each node's block (defaults /24 and /64).
    public init(clusterCIDRs: [IPPrefix], nodeMaskIPv4: Int = 24, nodeMaskIPv6: Int = 64) throws(IPAMError) {
        guard !clusterCIDRs.isEmpty else { throw .noClusterCIDR }
        for (i, a) in clusterCIDRs.enumerated() {
            guard a.isCanonical else { throw .notCanonical(a) }
            for b in clusterCIDRs[..<i] where a.overlaps(b) { throw .clusterCIDRsOverlap(b, a) }
        }
        pools = try clusterCIDRs.map { (cidr) throws(IPAMError) -> Pool in
            let mask = cidr.family == .v4 ? nodeMaskIPv4 : nodeMaskIPv6
            guard mask >= cidr.length, mask <= cidr.family.bitWidth else { throw .badNodeMask(cidr, mask) }
            // More than 2^63 blocks would not fit the index type; no real cluster needs them.
            guard mask - cidr.length < 63 else { throw .badNodeMask(cidr, mask) }
            return Pool(cidr: cidr, blockLength: mask, capacity: cidr.subnetCount(newLength: mask)!)
        }
    }

    /// The CIDRs allocated to `node`, if any.
    public func allocation(of node: String) -> [IPPrefix]? { byNode[node] }
    /// Which node holds `cidr`.
    public func owner(of cidr: IPPrefix) -> String? { byCIDR[cidr] }
    /// Number of nodes holding an allocation.
    public var count: Int { byNode.count }

    /// Records an allocation found on a node (on start or fail-over). Refuses a CIDR that is held by
    /// another node, that is not a block of a cluster CIDR, or two CIDRs of one family; changes nothing then.
    public mutating func restore(node: String, cidrs: [IPPrefix]) throws(IPAMError) {
        if let held = byNode[node] {
            if Set(held) == Set(cidrs) { return }
            throw .nodeAlreadyHas(node, held)
        }
        var placed: [(pool: Int, index: UInt64)] = []
        for (i, cidr) in cidrs.enumerated() {
            if cidrs[..<i].contains(where: { $0.family == cidr.family }) { throw .twoOfOneFamily(node, cidrs) }
            if let other = byCIDR[cidr] { throw .duplicate(cidr, holder: other, claimant: node) }
            guard let p = pools.firstIndex(where: { $0.cidr.contains(cidr) }) else { throw .outsideClusterCIDRs(cidr, node: node, pools.map(\.cidr)) }
            guard cidr.length == pools[p].blockLength, let index = pools[p].cidr.subnetIndex(of: cidr) else {
                throw .notABlock(cidr, node: node, pool: pools[p].cidr, blockLength: pools[p].blockLength)
            }
            placed.append((p, index))
        }
        for (p, index) in placed {
            let pos = pools[p].position(of: index)
            pools[p].used.insert(index, at: pos.at)
        }
        byNode[node] = cidrs
        for cidr in cidrs { byCIDR[cidr] = node }
    }

    /// The node's CIDRs: the ones it holds, or the lowest free block of each family. All or nothing:
    /// when one family is exhausted, nothing is allocated.
    public mutating func allocate(node: String) throws(IPAMError) -> [IPPrefix] {
        if let held = byNode[node] { return held }
        var picked: [IPPrefix] = []
        for family in families {
            var found: IPPrefix?
            for pool in pools where pool.cidr.family == family {
                if let index = pool.lowestFree {
                    found = try! pool.cidr.subnet(newLength: pool.blockLength, index: index)
                    break
                }
            }
            guard let cidr = found else {
                throw .exhausted(family, pools.filter { $0.cidr.family == family }.map(\.cidr), allocated: byNode.count)
            }
            picked.append(cidr)
        }
        try restore(node: node, cidrs: picked)
        return picked
    }

    /// Frees the node's CIDRs (call only once its Node object is gone).
    public mutating func release(node: String) {
        guard let held = byNode.removeValue(forKey: node) else { return }
        for cidr in held {
            byCIDR[cidr] = nil
            if let p = pools.firstIndex(where: { $0.cidr.contains(cidr) }), let index = pools[p].cidr.subnetIndex(of: cidr) {
                let pos = pools[p].position(of: index)
                if pos.found { pools[p].used.remove(at: pos.at) }
            }
        }
    }
}

/// Why the Pod CIDR allocator refused.
public enum IPAMError: Error, Equatable, CustomStringConvertible {
    case noClusterCIDR
    case notCanonical(IPPrefix)
    case clusterCIDRsOverlap(IPPrefix, IPPrefix)
    case badNodeMask(IPPrefix, Int)
    case nodeAlreadyHas(String, [IPPrefix])
    case twoOfOneFamily(String, [IPPrefix])
    case duplicate(IPPrefix, holder: String, claimant: String)
    case outsideClusterCIDRs(IPPrefix, node: String, [IPPrefix])
    case notABlock(IPPrefix, node: String, pool: IPPrefix, blockLength: Int)
    case exhausted(IPFamily, [IPPrefix], allocated: Int)

    public var description: String {
        func list(_ l: [IPPrefix]) -> String { l.map(\.description).joined(separator: ", ") }
        switch self {
        case .noClusterCIDR: return "no cluster CIDR given: pass --cluster-cidr (for example 10.244.0.0/16)"
        case .notCanonical(let p): return "cluster CIDR \(p) has host bits set: write \(p.canonical)"
        case .clusterCIDRsOverlap(let a, let b): return "cluster CIDRs \(a) and \(b) overlap: give disjoint ranges"
        case .badNodeMask(let p, let m):
            return "node mask /\(m) does not fit cluster CIDR \(p): it must be between /\(p.length) and /\(min(p.family.bitWidth, p.length + 62))"
        case .nodeAlreadyHas(let n, let held): return "node \(n) already holds \(list(held)); a node's Pod CIDR never changes while the Node exists"
        case .twoOfOneFamily(let n, let l): return "node \(n) claims \(list(l)): at most one Pod CIDR per IP family"
        case .duplicate(let c, let holder, let claimant): return "Pod CIDR \(c) of node \(claimant) is already held by node \(holder): remove the wrong annotation"
        case .outsideClusterCIDRs(let c, let n, let pools): return "Pod CIDR \(c) of node \(n) is outside the cluster CIDRs (\(list(pools))): add its range with --cluster-cidr or remove the annotation"
        case .notABlock(let c, let n, let pool, let len): return "Pod CIDR \(c) of node \(n) is not a /\(len) block of \(pool): the node mask size changed; keep the old one or re-create the node"
        case .exhausted(let f, let pools, let n):
            return "no free \(f) Pod CIDR left in \(list(pools)) (\(n) nodes hold one): add a cluster CIDR with --cluster-cidr or use a longer node mask"
        }
    }
}
