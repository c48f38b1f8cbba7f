/// The mesh plan of one node kept up to date one Node at a time: a change costs in proportion to what it
/// touches (the node itself, and the nodes whose keys or Pod CIDRs it shares or overlaps, whose conflicts
/// it starts or ends), not to the size of the cluster. `MeshPlan.init` computes the same plan from
/// scratch; the agent compares the two at every resync (a difference is a bug: it is logged, counted,
/// and the plan from scratch is applied).
public struct MeshPlanner: Sendable {
    public let localNode: String
    public let settings: ClusterSettings
    public let interfaceIndex: UInt32
    /// Every node that reads, by name, the local one included.
    public private(set) var nodes: [String: MeshNode] = [:]
    /// The nodes whose keys and Pod CIDRs count in conflicts: the local node, and every remote node that
    /// `MeshPlan.precheck` lets through.
    private var participants: Set<String> = []
    private var keyOwners: [WireGuardKey: Set<String>] = [:]
    private var claims = PrefixClaims()
    /// What each remote node brings to the plan.
    private var entries: [String: Entry] = [:]

    /// One remote node's part of the plan: its peers and routes, or why it is left out.
    public struct Entry: Sendable, Hashable {
        public var peers: [DesiredPeer] = []
        public var routes: [Route] = []
        public var exclusion: Exclusion?
    }

    /// What a change did to the plan: the entries of the nodes it touched, before and after (a node
    /// absent on one side had no entry there).
    public struct Delta: Sendable, Hashable {
        public var before: [String: Entry] = [:]
        public var after: [String: Entry] = [:]

        /// The nodes left out after the change that were not before, or for another reason.
        public var newlyExcluded: [Exclusion] {
            after.compactMap { name, entry in
                entry.exclusion.flatMap { before[name]?.exclusion == $0 ? nil : $0 }
            }.sorted { $0.node < $1.node }
        }

        /// Whether a node routed before and after the change is routed to another key (a rotation, or a key
        /// reissued), unlike a node joining or leaving: what `wgmesh rotate-keys --wait` waits to see.
        public var movesKeys: Bool {
            after.contains { name, entry in
                guard let now = entry.routedKey, let was = before[name]?.routedKey else { return false }
                return now != was
            }
        }

        /// The changes to the interface and routes that take a kernel holding the plan before this change
        /// to the plan after it: `MeshDiff` of the touched nodes' parts only. A key or route is in one
        /// node's part at most (two claimants of one are both left out), so the parts of untouched nodes
        /// need no look.
        public func diff(listenPort: UInt16, interfaceIndex: UInt32) -> MeshDiff {
            func plan(_ entries: [String: Entry]) -> MeshPlan {
                MeshPlan(
                    listenPort: listenPort, peers: entries.values.flatMap(\.peers),
                    routes: entries.values.flatMap(\.routes), excluded: [])
            }
            let was = plan(before)
            return MeshDiff(
                plan: plan(after), actual: was.device(named: "", interfaceIndex: interfaceIndex, privateKey: nil),
                actualRoutes: was.routes)
        }

        /// Who owns each key the change adds or removes (for log lines).
        public var owners: [WireGuardKey: String] {
            var owners: [WireGuardKey: String] = [:]
            for entry in Array(before.values) + Array(after.values) {
                for peer in entry.peers { owners[peer.publicKey] = peer.node }
            }
            return owners
        }
    }

    public init(localNode: String, settings: ClusterSettings, interfaceIndex: UInt32, nodes: [MeshNode] = []) {
        self.localNode = localNode
        self.settings = settings
        self.interfaceIndex = interfaceIndex
        // In bulk: the claims sorted once, then every entry, in O(n log n).
        for node in nodes { self.nodes[node.name] = node }
        var cidrs: [PrefixClaim] = []
        for node in self.nodes.values
        where node.name == localNode || MeshPlan.precheck(node, settings: settings) == nil {
            participants.insert(node.name)
            for key in node.claimedKeys { keyOwners[key, default: []].insert(node.name) }
            cidrs += node.routedPrefixes.map { PrefixClaim(cidr: $0.canonical, node: node.name) }
        }
        claims = PrefixClaims(cidrs)
        for name in self.nodes.keys where name != localNode { entries[name] = entry(of: name) }
    }

    /// The whole plan, as `MeshPlan.init` would compute it from `nodes`.
    public var plan: MeshPlan {
        var peers: [DesiredPeer] = []
        var routes = MeshPlan.strictRoutes(settings: settings, interfaceIndex: interfaceIndex)
        var excluded: [Exclusion] = []
        for entry in entries.values {
            peers += entry.peers
            routes += entry.routes
            if let exclusion = entry.exclusion { excluded.append(exclusion) }
        }
        peers.sort { $0.publicKey < $1.publicKey }
        routes.sort()
        excluded.sort { $0.node < $1.node }
        return MeshPlan(listenPort: settings.listenPort, peers: peers, routes: routes, excluded: excluded)
    }

    /// The keys the plan routes Pod CIDRs to (not the pre-staged next keys).
    /// Outside peers are not counted: `applied-peers` is about the Nodes, which `rotate-keys --wait` plans.
    public var routedKeys: [WireGuardKey] {
        entries.compactMap { $0.key.hasPrefix(OutsidePeer.meshPrefix) ? nil : $0.value.routedKey }
    }

    /// Applies changed Nodes: a MeshNode is the node's new state, nil a node deleted (or whose annotations
    /// no longer read). Returns what changed in the plan.
    public mutating func apply(_ changes: [String: MeshNode?]) -> Delta {
        var before: [String: Entry?] = [:]
        for (name, node) in changes { set(name, node, before: &before) }
        var delta = Delta()
        for (name, was) in before where was != entries[name] {
            delta.before[name] = was
            delta.after[name] = entries[name]
        }
        return delta
    }

    /// One node's new state: recomputes the entries of the nodes it touches, noting in `before` what each
    /// was when first touched.
    private mutating func set(_ name: String, _ node: MeshNode?, before: inout [String: Entry?]) {
        var touched: Set<String> = [name]
        if let old = nodes[name], participants.remove(name) != nil { touched.formUnion(unclaim(old)) }
        nodes[name] = node
        if let node, name == localNode || MeshPlan.precheck(node, settings: settings) == nil {
            participants.insert(name)
            touched.formUnion(claim(node))
        }
        for other in touched where other != localNode {
            if before[other] == nil { before[other] = .some(entries[other]) }
            entries[other] = entry(of: other)
        }
    }

    /// Records `node`'s claims; returns the other nodes that claim one of its keys or an overlapping CIDR.
    private mutating func claim(_ node: MeshNode) -> Set<String> {
        var others: Set<String> = []
        for key in node.claimedKeys {
            others.formUnion(keyOwners[key, default: []])
            keyOwners[key, default: []].insert(node.name)
        }
        for cidr in node.routedPrefixes.map(\.canonical) {
            others.formUnion(claims.overlapping(cidr).map(\.node))
            claims.insert(PrefixClaim(cidr: cidr, node: node.name))
        }
        others.remove(node.name)
        return others
    }

    /// Removes `node`'s claims; returns the other nodes that shared or overlapped them.
    private mutating func unclaim(_ node: MeshNode) -> Set<String> {
        var others: Set<String> = []
        for key in node.claimedKeys {
            keyOwners[key]?.remove(node.name)
            if keyOwners[key]?.isEmpty == true { keyOwners[key] = nil }
            others.formUnion(keyOwners[key] ?? [])
        }
        for cidr in node.routedPrefixes.map(\.canonical) {
            claims.remove(PrefixClaim(cidr: cidr, node: node.name))
            others.formUnion(claims.overlapping(cidr).map(\.node))
        }
        others.remove(node.name)
        return others
    }

    /// A remote node's entry as things stand, with the same reason `MeshPlan.conflicts` gives.
    private func entry(of name: String) -> Entry? {
        guard let node = nodes[name] else { return nil }
        if let exclusion = MeshPlan.precheck(node, settings: settings) { return Entry(exclusion: exclusion) }
        for key in node.claimedKeys {
            let others = keyOwners[key, default: []].subtracting([name])
            if !others.isEmpty {
                return Entry(exclusion: Exclusion(node: name, reason: MeshPlan.keyConflict(key, others: others)))
            }
        }
        for cidr in node.routedPrefixes.map(\.canonical).sorted() {
            if let other = claims.overlapping(cidr).filter({ $0.node != name }).min() {
                return Entry(exclusion: Exclusion(node: name, reason: MeshPlan.cidrConflict(cidr, other)))
            }
        }
        let (peers, routes) = MeshPlan.contribution(of: node, settings: settings, interfaceIndex: interfaceIndex)
        return Entry(peers: peers, routes: routes)
    }
}

extension MeshPlanner.Entry {
    /// The key this entry routes Pod CIDRs to.
    public var routedKey: WireGuardKey? { peers.first { !$0.allowedIPs.isEmpty }?.publicKey }
}

/// Pod CIDR claims, found by overlap in time proportional to the number of distinct prefix lengths and
/// of the claims found: containing prefixes by a lookup per shorter length, contained ones by a scan of
/// a sorted array from the prefix on.
struct PrefixClaims: Sendable {
    private var owners: [IPPrefix: Set<String>] = [:]
    /// The claimed prefixes, each once, ascending.
    private var sorted: [IPPrefix] = []
    /// How many claimed prefixes of each family have each length.
    private var lengths: [IPFamily: [Int: Int]] = [:]

    init(_ claims: [PrefixClaim] = []) {
        for claim in claims { owners[claim.cidr, default: []].insert(claim.node) }
        sorted = owners.keys.sorted()
        for cidr in sorted { lengths[cidr.family, default: [:]][cidr.length, default: 0] += 1 }
    }

    mutating func insert(_ claim: PrefixClaim) {
        if owners[claim.cidr] == nil {
            sorted.insert(claim.cidr, at: index(of: claim.cidr))
            lengths[claim.cidr.family, default: [:]][claim.cidr.length, default: 0] += 1
        }
        owners[claim.cidr, default: []].insert(claim.node)
    }

    mutating func remove(_ claim: PrefixClaim) {
        guard owners[claim.cidr]?.remove(claim.node) != nil, owners[claim.cidr]?.isEmpty == true else { return }
        owners[claim.cidr] = nil
        sorted.remove(at: index(of: claim.cidr))
        lengths[claim.cidr.family]![claim.cidr.length]! -= 1
        if lengths[claim.cidr.family]![claim.cidr.length] == 0 { lengths[claim.cidr.family]![claim.cidr.length] = nil }
    }

    /// Every claim of a prefix that contains `cidr`, equals it or lies inside it (`cidr` canonical).
    func overlapping(_ cidr: IPPrefix) -> [PrefixClaim] {
        var found: [PrefixClaim] = []
        func add(_ prefix: IPPrefix) {
            for node in owners[prefix] ?? [] { found.append(PrefixClaim(cidr: prefix, node: node)) }
        }
        for length in (lengths[cidr.family] ?? [:]).keys where length < cidr.length {
            add(try! IPPrefix(address: cidr.address, length: length).canonical)
        }
        // In (address, length) order the prefix itself and those inside it follow each other from it on.
        var i = index(of: cidr)
        while i < sorted.count, cidr.contains(sorted[i]) {
            add(sorted[i])
            i += 1
        }
        return found
    }

    /// Where `cidr` is, or would be inserted, in `sorted`.
    private func index(of cidr: IPPrefix) -> Int {
        var (low, high) = (0, sorted.count)
        while low < high {
            let mid = (low + high) / 2
            if sorted[mid] < cidr { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
