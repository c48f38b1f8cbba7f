import TestSupport
import WGMeshCore
import XCTest

/// The incremental plan against the plan from scratch, after every event of random sequences: joins,
/// leaves, keys moved to another node's (or back), next keys staged, CIDR conflicts appearing and
/// clearing, endpoints lost, annotations that stop reading (the node is then unknown to the plan), the
/// local node's own claims changing. Each sequence is reproducible from its seed, printed on failure.
final class MeshPlannerTests: XCTestCase {
    let settings = ClusterSettings(
        clusterCIDRs: [try! IPPrefix("10.244.0.0/16"), try! IPPrefix("fd00:10:244::/48")], persistentKeepalive: 25)
    /// Few keys and CIDRs, many of them overlapping, so that conflicts come and go often.
    let keys = (0..<10).map { i in try! WireGuardKey(bytes: [UInt8](repeating: UInt8(i + 1), count: 32)) }
    let cidrs = [
        "10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24", "10.244.4.0/24", "10.244.5.0/24",
        "10.244.0.0/22", "10.244.4.0/23", "10.244.2.128/25", "10.244.0.0/16", "10.9.0.0/24",
        "fd00:10:244:1::/64", "fd00:10:244:2::/64", "fd00:10:244::/60", "fd00:10:244:2:8000::/65",
    ].map { try! IPPrefix($0) }
    let names = (0..<12).map { "n\($0)" }

    func testIncrementalPlanEqualsThePlanFromScratchAfterEveryEvent() throws {
        for seed in UInt64(1)...300 {
            try run(seed: seed, events: 60, batch: 1)
        }
    }

    /// Several Nodes changed in one pass (a burst the agent coalesces).
    func testBatchesOfChangesToo() throws {
        for seed in UInt64(1001)...1150 {
            try run(seed: seed, events: 40, batch: 4)
        }
    }

    func run(seed: UInt64, events: Int, batch: Int) throws {
        var rng = SplitMix64(seed: seed)
        var cluster: [String: MeshNode] = [:]
        var planner = MeshPlanner(localNode: "n0", settings: settings, interfaceIndex: 9)
        let kernel = ModelKernel(
            state: planner.plan.device(named: "wg", interfaceIndex: 9, privateKey: nil), routes: [])
        var history: [String] = []
        for step in 0..<events {
            var changes: [String: MeshNode?] = [:]
            for _ in 0..<Int.random(in: 1...batch, using: &rng) {
                let name = names.randomElement(using: &rng)!
                let (node, what) = event(on: cluster[name], named: name, using: &rng)
                cluster[name] = node
                changes[name] = .some(node)
                history.append("\(name): \(what)")
            }
            let before = planner.plan
            let delta = planner.apply(changes)
            let scratch = MeshPlan(
                localNode: "n0", settings: settings, nodes: Array(cluster.values), interfaceIndex: 9)
            let context = "seed \(seed), step \(step): \(history.suffix(6).joined(separator: "; "))"
            XCTAssertEqual(planner.plan, scratch, context)
            // A planner built in bulk (the first pass, a rebuild) plans the same.
            let bulk = MeshPlanner(localNode: "n0", settings: settings, interfaceIndex: 9, nodes: Array(cluster.values))
            XCTAssertEqual(bulk.plan, scratch, "bulk: \(context)")
            XCTAssertEqual(delta.movesKeys, scratch.movesKeys(from: before), context)
            XCTAssertEqual(
                Set(planner.routedKeys), Set(scratch.routedNodeKeys))
            // The delta's diff takes a kernel holding the plan before to the plan after.
            try delta.diff(listenPort: settings.listenPort, interfaceIndex: 9)
                .apply(interface: "wg", wireGuard: kernel, routes: kernel)
            XCTAssertEqual(
                Set(
                    kernel.state.peers.map {
                        PeerState(
                            publicKey: $0.publicKey, endpoint: $0.endpoint,
                            persistentKeepalive: $0.persistentKeepalive, allowedIPs: $0.allowedIPs.sorted())
                    }),
                Set(scratch.device(named: "wg", interfaceIndex: 9, privateKey: nil).peers), context)
            XCTAssertEqual(
                Set(kernel.table), Set(scratch.routes.filter { $0.metric != settings.strictRouteMetric }), context)
            if planner.plan != scratch { return }
        }
    }

    /// A random change to one node, and a word for the failure message.
    func event(on node: MeshNode?, named name: String, using rng: inout SplitMix64) -> (MeshNode?, String) {
        guard var n = node else {
            var joined = MeshNode(name: name)
            joined.publicKey = keys.randomElement(using: &rng)
            joined.podCIDRs = [cidrs.randomElement(using: &rng)!]
            joined.endpoint = try! Endpoint("192.0.2.\(Int.random(in: 1...9, using: &rng)):51820")
            return (joined, "joins with \(joined.podCIDRs) \(joined.publicKey!)")
        }
        switch Int.random(in: 0..<9, using: &rng) {
        case 0: return (nil, "leaves, or its annotations stop reading")
        case 1: n.publicKey = keys.randomElement(using: &rng)
        case 2: n.nextPublicKey = Bool.random(using: &rng) ? keys.randomElement(using: &rng) : nil
        case 3:
            // A rotation's switch: the next key becomes the key.
            if let next = n.nextPublicKey { (n.publicKey, n.nextPublicKey) = (next, nil) }
        case 4: n.podCIDRs = [cidrs.randomElement(using: &rng)!]
        case 5: n.podCIDRs = Array(Set([cidrs.randomElement(using: &rng)!, cidrs.randomElement(using: &rng)!]))
        case 6:
            n.endpoint =
                Bool.random(using: &rng) ? nil : try! Endpoint("192.0.2.\(Int.random(in: 1...9, using: &rng)):51820")
        case 7: n.endpointOverride = Bool.random(using: &rng) ? nil : try! Endpoint("[2001:db8::1]:51820")
        default: n.publicKey = Bool.random(using: &rng) ? nil : keys.randomElement(using: &rng)
        }
        // As the annotations read (`MeshNode.init`): a next key is never the current one.
        if n.nextPublicKey == n.publicKey { n.nextPublicKey = nil }
        func text(_ value: (some CustomStringConvertible)?) -> String { value.map(\.description) ?? "-" }
        return (
            n,
            "now \(n.podCIDRs) key \(text(n.publicKey)) next \(text(n.nextPublicKey)) "
                + "endpoint \(text(n.effectiveEndpoint))"
        )
    }

    /// A node's change touches the nodes whose claims it shares, not the cluster: a join into 2,000 nodes
    /// recomputes one entry.
    func testAChangeTouchesOnlyTheNodesItConcerns() throws {
        let nodes = (1...2000).map { i in node("n\(i)", i % 250, cidrs: ["10.\(i / 250).\(i % 250).0/24"]) }
        var planner = MeshPlanner(
            localNode: "n1",
            settings: ClusterSettings(clusterCIDRs: [try IPPrefix("10.0.0.0/8")]), interfaceIndex: 1, nodes: nodes)
        var moved = nodes[41]
        moved.endpoint = try Endpoint("198.51.100.7:51820")
        let delta = planner.apply(["n42": moved])
        XCTAssertEqual(Array(delta.after.keys), ["n42"])
        XCTAssertEqual(delta.diff(listenPort: 51820, interfaceIndex: 1).device.peers.count, 1)

        // A squatter on n42's CIDR takes both out; its leaving brings n42 back.
        let squatter = node("squatter", 7, cidrs: ["10.0.42.0/25"])
        let conflict = planner.apply(["squatter": squatter])
        XCTAssertEqual(Set(conflict.after.keys), ["n42", "squatter"])
        XCTAssertEqual(conflict.newlyExcluded.map(\.node), ["n42", "squatter"])
        let cleared = planner.apply(["squatter": nil])
        XCTAssertEqual(cleared.after["n42"]?.exclusion, nil)
        XCTAssertEqual(cleared.after["n42"]?.peers.count, 1)
    }
}

extension MeshPlan {
    /// The reference for `MeshPlanner.Delta.movesKeys`, from two whole plans: whether a node routed by both is
    /// routed to another key in this one (a rotation, or a key reissued), unlike a node joining or leaving.
    func movesKeys(from previous: MeshPlan) -> Bool {
        let before = Dictionary(
            previous.peers.filter { !$0.allowedIPs.isEmpty }.map { ($0.node, $0.publicKey) },
            uniquingKeysWith: { a, _ in a })
        return peers.contains { peer in
            guard !peer.allowedIPs.isEmpty, let key = before[peer.node] else { return false }
            return key != peer.publicKey
        }
    }
}

/// A small seeded generator (SplitMix64), so that a failing sequence can be replayed from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
