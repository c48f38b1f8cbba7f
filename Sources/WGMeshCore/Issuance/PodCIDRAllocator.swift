/// Hands out one Pod CIDR per configured IP family to every node, from one or more cluster CIDRs
/// per family. Memory grows with the number of allocations, never with the number of free blocks.
public struct PodCIDRAllocator: Sendable {
    /// One cluster CIDR split into blocks of `blockLength`; `used` holds the taken block indices, sorted.
    struct Pool: Sendable {
        let cidr: IPPrefix
        let blockLength: Int
        let capacity: UInt64
        var used: [UInt64] = []

        /// The lowest index at or above `from` not in `used`. From 0 it is the first position where
        /// used[k] != k (a monotone predicate, found by bisection); above, it walks the run of used indices.
        func lowestFree(from: UInt64 = 0) -> UInt64? {
            var candidate: UInt64
            var at: Int
            if from == 0 {
                var lo = 0
                var hi = used.count
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if used[mid] == UInt64(mid) { lo = mid + 1 } else { hi = mid }
                }
                candidate = UInt64(lo)
                at = lo
            } else {
                candidate = from
                at = position(of: from).at
            }
            while at < used.count, used[at] == candidate {
                candidate += 1
                at += 1
            }
            return candidate < capacity ? candidate : nil
        }

        func position(of index: UInt64) -> (found: Bool, at: Int) {
            var lo = 0
            var hi = used.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if used[mid] < index { lo = mid + 1 } else { hi = mid }
            }
            return (lo < used.count && used[lo] == index, lo)
        }
    }

    private var pools: [Pool]
    /// What the controller allocated (or restored) per node, one CIDR per family: kept until the Node is gone.
    private var byNode: [String: [IPPrefix]] = [:]
    private var byCIDR: [IPPrefix: String] = [:]
    /// What each node publishes (annotation, spec.podCIDRs), replaced by every `claim`.
    private var claims: [String: [IPPrefix]] = [:]
    /// Exact blocks of a pool, and the nodes that hold or claim each one.
    private var blockTakers: [IPPrefix: Set<String>] = [:]
    /// Every other prefix taken (outside the pools, or not one block), and by whom; few in practice.
    private var irregular: [IPPrefix: Set<String>] = [:]

    /// The configured families, in order (IPv4 first).
    public var families: [IPFamily] { Array(Set(pools.map(\.cidr.family))).sorted() }

    /// - Parameters:
    ///   - clusterCIDRs: none (the allocator then only tracks what nodes claim), or one or more per
    ///     family; they must not overlap.
    ///   - nodeMaskIPv4, nodeMaskIPv6: the size of each node's block (defaults /24 and /64).
    public init(clusterCIDRs: [IPPrefix], nodeMaskIPv4: Int = 24, nodeMaskIPv6: Int = 64) throws(IPAMError) {
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
    /// Which node holds `cidr` as its allocation.
    public func owner(of cidr: IPPrefix) -> String? { byCIDR[cidr] }
    /// Number of nodes holding an allocation.
    public var count: Int { byNode.count }
    /// The pool `cidr` belongs to, if it lies inside one.
    public func pool(containing cidr: IPPrefix) -> IPPrefix? { pools.first { $0.cidr.contains(cidr) }?.cidr }

    /// Records one allocation found on a node (on start, fail-over, or a value written by hand), each
    /// family on its own. Refuses, changing nothing, a CIDR that another node holds, that is not a block
    /// of a cluster CIDR, or a second CIDR of a family the node already holds; the caller keeps such a
    /// CIDR taken with `claim`.
    public mutating func restore(node: String, cidr: IPPrefix) throws(IPAMError) {
        let held = byNode[node] ?? []
        if held.contains(cidr) { return }
        if held.contains(where: { $0.family == cidr.family }) { throw .nodeAlreadyHas(node, held) }
        if let other = byCIDR[cidr] { throw .duplicate(cidr, holder: other, claimant: node) }
        guard let p = pools.firstIndex(where: { $0.cidr.contains(cidr) }) else {
            throw .outsideClusterCIDRs(cidr, node: node, pools.map(\.cidr))
        }
        guard cidr.length == pools[p].blockLength, pools[p].cidr.subnetIndex(of: cidr) != nil else {
            throw .notABlock(cidr, node: node, pool: pools[p].cidr, blockLength: pools[p].blockLength)
        }
        let before = footprint(of: node)
        byNode[node] = (held + [cidr]).sorted { $0.family < $1.family }
        byCIDR[cidr] = node
        retake(node, from: before)
    }

    /// Replaces what `node` publishes: every CIDR in its annotation and its spec.podCIDRs, well-formed or
    /// not. None of it is handed to another node while it stays published.
    public mutating func claim(node: String, cidrs: [IPPrefix]) {
        let before = footprint(of: node)
        let unique = Array(Set(cidrs.map(\.canonical))).sorted()
        claims[node] = unique.isEmpty ? nil : unique
        retake(node, from: before)
    }

    /// The node's CIDR for each of `families` (all configured ones by default): the one it holds, or
    /// the lowest block that no node holds or claims. All or nothing: when one family is exhausted,
    /// nothing is allocated.
    public mutating func allocate(node: String, families wanted: [IPFamily]? = nil) throws(IPAMError) -> [IPPrefix] {
        let held = byNode[node] ?? []
        var picked: [IPPrefix] = []
        for family in wanted ?? families {
            if let h = held.first(where: { $0.family == family }) {
                picked.append(h)
                continue
            }
            guard let cidr = lowestFree(family) else {
                throw .exhausted(family, pools.filter { $0.cidr.family == family }.map(\.cidr), allocated: byNode.count)
            }
            picked.append(cidr)
        }
        for cidr in picked where !held.contains(cidr) { try restore(node: node, cidr: cidr) }
        return picked
    }

    /// Frees the node's allocation and claims (call only once its Node object is gone).
    public mutating func release(node: String) {
        let before = footprint(of: node)
        for cidr in byNode.removeValue(forKey: node) ?? [] { byCIDR[cidr] = nil }
        claims[node] = nil
        retake(node, from: before)
    }

    /// Two nodes whose CIDRs share addresses.
    public struct Overlap: Sendable, Hashable {
        /// A CIDR the node holds or claims.
        public var cidr: IPPrefix
        public var otherNode: String
        /// The other node's CIDR that overlaps it.
        public var otherCIDR: IPPrefix
    }

    /// Every CIDR of another node that overlaps one that `node` holds or claims.
    public func overlaps(of node: String) -> [Overlap] {
        var found: Set<Overlap> = []
        for cidr in footprint(of: node) {
            for (other, nodes) in irregular where other.overlaps(cidr) {
                for n in nodes where n != node { found.insert(Overlap(cidr: cidr, otherNode: n, otherCIDR: other)) }
            }
            if let takers = blockTakers[cidr] {
                for n in takers where n != node { found.insert(Overlap(cidr: cidr, otherNode: n, otherCIDR: cidr)) }
            } else {
                for (block, takers) in blockTakers where block.overlaps(cidr) {
                    for n in takers where n != node {
                        found.insert(Overlap(cidr: cidr, otherNode: n, otherCIDR: block))
                    }
                }
            }
        }
        return found.sorted { ($0.cidr, $0.otherNode) < ($1.cidr, $1.otherNode) }
    }

    // MARK: taken space

    private func footprint(of node: String) -> Set<IPPrefix> {
        Set(byNode[node] ?? []).union(claims[node] ?? [])
    }

    /// Moves the node's marks from its footprint `before` to its footprint now.
    private mutating func retake(_ node: String, from before: Set<IPPrefix>) {
        let now = footprint(of: node)
        for cidr in before.subtracting(now) { mark(cidr, node, taken: false) }
        for cidr in now.subtracting(before) { mark(cidr, node, taken: true) }
    }

    private mutating func mark(_ cidr: IPPrefix, _ node: String, taken: Bool) {
        guard let p = pools.firstIndex(where: { $0.cidr.contains(cidr) && $0.blockLength == cidr.length }),
            let index = pools[p].cidr.subnetIndex(of: cidr)
        else {
            if taken { irregular[cidr, default: []].insert(node) } else { drop(node, from: &irregular, cidr) }
            return
        }
        let wasFree = blockTakers[cidr]?.isEmpty ?? true
        if taken { blockTakers[cidr, default: []].insert(node) } else { drop(node, from: &blockTakers, cidr) }
        let isFree = blockTakers[cidr] == nil
        let pos = pools[p].position(of: index)
        if wasFree, !isFree, !pos.found { pools[p].used.insert(index, at: pos.at) }
        if !wasFree, isFree, pos.found { pools[p].used.remove(at: pos.at) }
    }

    private func drop(_ node: String, from map: inout [IPPrefix: Set<String>], _ cidr: IPPrefix) {
        map[cidr]?.remove(node)
        if map[cidr]?.isEmpty == true { map[cidr] = nil }
    }

    /// The lowest block of `family` that nobody holds or claims, in pool order.
    private func lowestFree(_ family: IPFamily) -> IPPrefix? {
        for pool in pools where pool.cidr.family == family {
            var from: UInt64 = 0
            while let index = pool.lowestFree(from: from) {
                let block = try! pool.cidr.subnet(newLength: pool.blockLength, index: index)
                if !irregular.keys.contains(where: { $0.overlaps(block) }) { return block }
                from = index + 1
            }
        }
        return nil
    }
}

/// Why the Pod CIDR allocator refused.
public enum IPAMError: Error, Equatable, CustomStringConvertible {
    case noClusterCIDR
    case notCanonical(IPPrefix)
    case clusterCIDRsOverlap(IPPrefix, IPPrefix)
    case badNodeMask(IPPrefix, Int)
    case nodeAlreadyHas(String, [IPPrefix])
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
            return
                """
                node mask /\(m) does not fit cluster CIDR \(p): it must be between /\(p.length) and \
                /\(min(p.family.bitWidth, p.length + 62))
                """
        case .nodeAlreadyHas(let n, let held):
            return
                """
                node \(n) was allocated \(list(held)); a node's Pod CIDR never changes while the Node exists: put \
                that value back
                """
        case .duplicate(let c, let holder, let claimant):
            return "Pod CIDR \(c) of node \(claimant) is already held by node \(holder): remove the wrong annotation"
        case .outsideClusterCIDRs(let c, let n, let pools):
            return
                """
                Pod CIDR \(c) of node \(n) is outside the cluster CIDRs (\(list(pools))); it stays reserved for \
                the node: add its range back with --cluster-cidr, or drain the node and re-create its Node object
                """
        case .notABlock(let c, let n, let pool, let len):
            return
                """
                Pod CIDR \(c) of node \(n) is not a /\(len) block of \(pool): the node mask size changed; keep \
                the old one or re-create the node
                """
        case .exhausted(let f, let pools, let n):
            return
                """
                no free \(f) Pod CIDR left in \(list(pools)) (\(n) nodes hold one): add a cluster CIDR with \
                --cluster-cidr or use a longer node mask
                """
        }
    }
}
