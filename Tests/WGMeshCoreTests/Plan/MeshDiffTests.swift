import TestSupport
import XCTest
import WGMeshCore

final class MeshDiffTests: XCTestCase {
    let settings = ClusterSettings(clusterCIDRs: [try! IPPrefix("10.0.0.0/8")])

    func planState(_ plan: MeshPlan) -> [PeerState] {
        plan.device(named: "wgmesh0", interfaceIndex: 3, privateKey: nil).peers
    }

    func assertConverges(
        _ plan: MeshPlan, from actual: DeviceState, routes: [Route], file: StaticString = #filePath, line: UInt = #line
    ) {
        let diff = MeshDiff(plan: plan, actual: actual, actualRoutes: routes)
        let kernel = ModelKernel(state: actual, routes: routes)
        XCTAssertNoThrow(
            try diff.apply(interface: "wgmesh0", wireGuard: kernel, routes: kernel), file: file, line: line)
        let after = kernel.state
        XCTAssertEqual(after.listenPort, plan.listenPort, file: file, line: line)
        let want = Dictionary(uniqueKeysWithValues: planState(plan).map { ($0.publicKey, $0) })
        let got = Dictionary(uniqueKeysWithValues: after.peers.map { ($0.publicKey, $0) })
        XCTAssertEqual(Set(got.keys), Set(want.keys), file: file, line: line)
        for (k, w) in want {
            XCTAssertEqual(got[k]?.endpoint, w.endpoint, file: file, line: line)
            XCTAssertEqual(got[k]?.persistentKeepalive, w.persistentKeepalive, file: file, line: line)
            XCTAssertEqual(Set(got[k]?.allowedIPs ?? []), Set(w.allowedIPs), file: file, line: line)
            XCTAssertNil(got[k]?.presharedKey, file: file, line: line)
        }
        XCTAssertEqual(kernel.table.sorted(), plan.routes.sorted(), file: file, line: line)
        // Converged: a second diff is empty.
        XCTAssertTrue(MeshDiff(plan: plan, actual: after, actualRoutes: kernel.table).isEmpty, file: file, line: line)
        // What the plan says the interface is after it equals what the model kernel holds, for everything a diff
        // compares.
        let expected = plan.device(named: "wgmesh0", interfaceIndex: 3, privateKey: nil)
        XCTAssertEqual(
            MeshDiff(plan: plan, actual: expected, actualRoutes: plan.routes),
            MeshDiff(plan: plan, actual: after, actualRoutes: kernel.table),
            file: file, line: line)
    }

    func testRandomActualStatesConvergeToRandomPlans() throws {
        var rng = SystemRandomNumberGenerator()
        let keys = (0..<30).map { _ in WireGuardKeyPair.generate().publicKey }
        for _ in 0..<200 {
            // A random cluster: some nodes, some of them rotating.
            let count = Int.random(in: 0..<12, using: &rng)
            var nodes = [node("local", 0)]
            for i in 1...max(1, count) {
                var n = node(
                    "n\(i)", i, key: keys[i],
                    endpoint:
                        "192.0.2.\(Int.random(in: 1..<4, using: &rng)):\(Int.random(in: 51820..<51823, using: &rng))")
                if Bool.random(using: &rng) { n.podCIDRs.append(try IPPrefix("fd00:\(i)::/64")) }
                if Int.random(in: 0..<4, using: &rng) == 0 { n.nextPublicKey = keys[i + 15] }
                nodes.append(n)
            }
            var s = settings
            s.clusterCIDRs.append(try IPPrefix("fd00::/16"))
            s.persistentKeepalive = UInt16.random(in: 0..<2, using: &rng) * 25
            s.strict = Bool.random(using: &rng)
            let plan = MeshPlan(localNode: "local", settings: s, nodes: nodes, interfaceIndex: 3)
            XCTAssertEqual(plan.excluded, [])

            // A random actual state: stale peers, wrong fields, stray allowed IPs, a preshared key, stale routes.
            var actual = DeviceState(name: "wgmesh0", listenPort: UInt16.random(in: 51819..<51821, using: &rng))
            for k in keys.shuffled(using: &rng).prefix(Int.random(in: 0..<20, using: &rng)) {
                actual.peers.append(
                    PeerState(
                        publicKey: k, presharedKey: Bool.random(using: &rng) ? keys[0] : nil,
                        endpoint: Bool.random(using: &rng) ? try Endpoint("192.0.2.9:1") : nil,
                        persistentKeepalive: UInt16.random(in: 0..<2, using: &rng) * 25,
                        allowedIPs: (0..<Int.random(in: 0..<3, using: &rng)).map { _ in
                            try! IPPrefix(
                                "10.\(Int.random(in: 0..<3, using: &rng)).\(Int.random(in: 0..<200, using: &rng)).0/24")
                        }))
            }
            var routes: [Route] = []
            for r in plan.routes.shuffled(using: &rng).prefix(Int.random(in: 0..<(plan.routes.count + 1), using: &rng))
            {
                routes.append(
                    Bool.random(using: &rng)
                        ? r : Route(destination: r.destination, interfaceIndex: 99, table: r.table, metric: r.metric))
            }
            if Bool.random(using: &rng) {
                routes.append(Route(destination: try IPPrefix("10.200.0.0/24"), interfaceIndex: 3))
            }
            assertConverges(plan, from: actual, routes: routes)
        }
    }

    func testTenThousandPeerStatesDifferingInOnePeerGiveOneOperation() throws {
        let nodes =
            [node("local", 0, cidrs: ["10.255.255.0/24"])]
            + (0..<10_000).map { i in
                node(
                    "n\(i)", i, cidrs: ["10.\(i / 256).\(i % 256).0/24"],
                    endpoint: "192.0.2.\(i % 250 + 1):\(20000 + i % 1000)")
            }
        let plan = MeshPlan(localNode: "local", settings: settings, nodes: nodes, interfaceIndex: 3)
        XCTAssertEqual(plan.peers.count, 10_000)
        var actual = DeviceState(name: "wgmesh0", listenPort: plan.listenPort, peers: planState(plan))
        let routes = plan.routes
        XCTAssertTrue(MeshDiff(plan: plan, actual: actual, actualRoutes: routes).isEmpty)

        actual.peers[4321].endpoint = try Endpoint("198.51.100.1:1")
        let diff = MeshDiff(plan: plan, actual: actual, actualRoutes: routes)
        XCTAssertEqual(diff.device.peers.count, 1)
        XCTAssertEqual(
            diff.device.peers[0],
            PeerConfig(publicKey: actual.peers[4321].publicKey, endpoint: plan.peers[4321].endpoint, updateOnly: true),
            "only the changed field, update-only")
        XCTAssertTrue(diff.routesToAdd.isEmpty && diff.routesToReplace.isEmpty && diff.routesToDelete.isEmpty)
    }

    func testTheNextPlanDiffedAgainstThePreviousPlanIsTheChangeAlone() throws {
        var nodes =
            [node("local", 0, cidrs: ["10.255.255.0/24"])]
            + (0..<5_000).map { i in
                node("n\(i)", i, cidrs: ["10.\(i / 256).\(i % 256).0/24"], endpoint: "192.0.2.\(i % 250 + 1):51820")
            }
        let key = WireGuardKeyPair.generate().privateKey
        let before = MeshPlan(localNode: "local", settings: settings, nodes: nodes, interfaceIndex: 3)
        let applied = before.device(named: "wgmesh0", interfaceIndex: 3, privateKey: key)
        XCTAssertTrue(
            MeshDiff(plan: before, actual: applied, actualRoutes: before.routes, privateKey: key).isEmpty,
            "a plan diffed against itself is empty")

        nodes[1234].endpoint = try Endpoint("198.51.100.7:51821")
        nodes[4000].podCIDRs = [try IPPrefix("10.99.0.0/24")]
        let after = MeshPlan(localNode: "local", settings: settings, nodes: nodes, interfaceIndex: 3)
        let diff = MeshDiff(plan: after, actual: applied, actualRoutes: before.routes, privateKey: key)
        XCTAssertEqual(
            Set(diff.device.peers),
            [
                PeerConfig(
                    publicKey: nodes[1234].publicKey!, endpoint: try Endpoint("198.51.100.7:51821"), updateOnly: true),
                PeerConfig(
                    publicKey: nodes[4000].publicKey!, allowedIPs: [try IPPrefix("10.99.0.0/24")],
                    replaceAllowedIPs: true, updateOnly: true),
            ])
        XCTAssertNil(diff.device.privateKey)
        XCTAssertEqual(diff.routesToAdd.map(\.destination), [try IPPrefix("10.99.0.0/24")])
        XCTAssertEqual(diff.routesToDelete.map(\.destination), [try IPPrefix("10.15.159.0/24")])
    }

    /// Issue 20, defect 4: a route that another program's route keeps out does not stop the others.
    func testARouteHeldByAnotherProgramKeepsOnlyItselfOut() throws {
        final class Table: RouteTable {
            var routes: [Route] = []
            let held: RouteKey
            init(held: RouteKey) { self.held = held }
            func routes(family: IPFamily?) throws -> [Route] { routes }
            func add(_ route: Route) throws {
                if route.key == held {
                    throw RouteTaken(route: route, holder: "\(route.destination) dev cni0 proto kernel")
                }
                routes.append(route)
            }
            func replace(_ route: Route) throws {
                routes.removeAll { $0.key == route.key }
                routes.append(route)
            }
            func delete(_ route: Route) throws { routes.removeAll { $0.key == route.key } }
        }
        let plan = MeshPlan(
            localNode: "a", settings: settings, nodes: [node("a", 1), node("b", 2), node("c", 3)], interfaceIndex: 3)
        let held = try XCTUnwrap(plan.routes.first)
        let table = Table(held: held.key)
        let wireGuard = ModelKernel(state: DeviceState(name: "wgmesh0"), routes: [])
        let diff = MeshDiff(plan: plan, actual: wireGuard.state, actualRoutes: [])
        XCTAssertThrowsError(try diff.apply(interface: "wgmesh0", wireGuard: wireGuard, routes: table)) { error in
            XCTAssertEqual((error as? RoutesTaken)?.taken.map(\.route), [held])
            XCTAssertTrue("\(error)".contains("dev cni0 proto kernel"), "\(error)")
        }
        XCTAssertEqual(table.routes.sorted(), plan.routes.filter { $0 != held }.sorted(), "every other route is in")
        XCTAssertEqual(wireGuard.state.peers.count, 2, "and every peer")
    }

    func testPrivateKeyChangeIsPartOfTheDiff() throws {
        let plan = MeshPlan(localNode: "local", settings: settings, nodes: [node("local", 0)], interfaceIndex: 3)
        let key = WireGuardKeyPair.generate().privateKey
        let diff = MeshDiff(
            plan: plan, actual: DeviceState(name: "wgmesh0", listenPort: 51820), actualRoutes: plan.routes,
            privateKey: key)
        XCTAssertEqual(diff.device.privateKey, key)
        XCTAssertNil(diff.device.listenPort)
    }

    func testANewPrivateKeyForcesEveryPeerToHandshakeInTheSameMessage() throws {
        var on = settings
        on.persistentKeepalive = 25
        for keepalive in [UInt16(0), 25] {
            let plan = MeshPlan(
                localNode: "local", settings: keepalive == 0 ? settings : on,
                nodes: [node("local", 0), node("a", 1), node("b", 2)],
                interfaceIndex: 3)
            // Peer a is already there (keepalive as planned); peer b is new.
            let a = plan.peers.first { $0.node == "a" }!
            let actual = DeviceState(
                name: "wgmesh0", listenPort: 51820,
                peers: [
                    PeerState(
                        publicKey: a.publicKey, endpoint: a.endpoint, persistentKeepalive: keepalive,
                        allowedIPs: a.allowedIPs)
                ])
            var diff = MeshDiff(
                plan: plan, actual: actual, actualRoutes: plan.routes,
                privateKey: WireGuardKeyPair.generate().privateKey)
            diff.forceHandshakes(plan: plan, current: actual)
            let model = ModelKernel(state: actual, routes: plan.routes)
            var sends = 0
            // The kernel sends a keepalive when a peer's interval goes from 0 to more, within the message.
            var interval = Dictionary(
                actual.peers.map { ($0.publicKey, $0.persistentKeepalive) }, uniquingKeysWith: { a, _ in a })
            for p in diff.device.peers {
                if let k = p.persistentKeepalive {
                    if (interval[p.publicKey] ?? 0) == 0 && k > 0 { sends += 1 }
                    interval[p.publicKey] = k
                }
            }
            XCTAssertEqual(sends, 2, "keepalive \(keepalive): both peers handshake at once")
            try model.configure("wgmesh0", diff.device)
            let after = MeshDiff(plan: plan, actual: model.state, actualRoutes: plan.routes)
            XCTAssertEqual(
                after.device.peers.count, keepalive == 0 ? 2 : 0, "the next diff puts the planned keepalive back")
        }
    }
}
