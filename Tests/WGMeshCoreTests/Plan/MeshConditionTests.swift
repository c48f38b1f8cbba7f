import Foundation
import XCTest
import WGMeshCore

final class MeshConditionTests: XCTestCase {
    let settings = ClusterSettings(clusterCIDRs: [try! IPPrefix("10.244.0.0/16")], persistentKeepalive: 25)
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let own = WireGuardKeyPair.generate()

    func plan(_ nodes: [MeshNode]) -> MeshPlan {
        MeshPlan(localNode: "local", settings: settings, nodes: [node("local", 1)] + nodes, interfaceIndex: 5)
    }

    /// A device whose peers had their last handshake `ago` seconds before `now` (nil: never).
    func device(_ handshakes: [(WireGuardKey, TimeInterval?)]) -> DeviceState {
        DeviceState(
            name: "wgmesh0", privateKey: own.privateKey, publicKey: own.publicKey,
            peers: handshakes.map { key, ago in
                var peer = PeerState(publicKey: key)
                if let ago {
                    let at = now.timeIntervalSince1970 - ago
                    peer.lastHandshake = (Int64(at.rounded(.down)), Int64((at - at.rounded(.down)) * 1_000_000_000))
                }
                return peer
            })
    }

    /// Issue 20, defect 10: a node that had just joined read "no handshake in the last 180 s". A peer that never
    /// had a handshake and was configured less than 180 s ago is connecting, not stale.
    func testAPeerConfiguredMomentsAgoIsConnectingNotStale() {
        let b = node("b", 2)
        let c = node("c", 3)
        let fresh = now.addingTimeInterval(-2)
        let old = now.addingTimeInterval(-200)
        let joining = MeshCondition.evaluate(
            plan: plan([b, c]), device: device([(b.publicKey!, nil), (c.publicKey!, nil)]), now: now,
            configuredAt: [b.publicKey!: fresh, c.publicKey!: fresh])
        XCTAssertEqual(
            joining,
            MeshCondition(
                ready: false, reason: "PeersConnecting", message: "waiting for the first handshake with 2 peers: b, c"))
        XCTAssertEqual(MeshCondition.peerCounts(reason: joining.reason, message: joining.message)?.total, 2)
        let oneNew = MeshCondition.evaluate(
            plan: plan([b, c]), device: device([(b.publicKey!, 10), (c.publicKey!, nil)]), now: now,
            configuredAt: [b.publicKey!: old, c.publicKey!: fresh])
        XCTAssertEqual(oneNew.reason, "AllPeersConnected")
        XCTAssertTrue(oneNew.message.contains("1 added less than 180 s ago and still connecting: c"), oneNew.message)
        let never = MeshCondition.evaluate(
            plan: plan([b, c]), device: device([(b.publicKey!, 10), (c.publicKey!, nil)]), now: now,
            configuredAt: [b.publicKey!: old, c.publicKey!: old])
        XCTAssertEqual(never.reason, "PeersStale", "configured 200 s ago and still no handshake")
        // A node still joining (no key yet) is counted apart from one left out for a problem.
        let pending = MeshNode(name: "d")
        XCTAssertTrue(
            MeshCondition.evaluate(plan: plan([b, pending]), device: device([(b.publicKey!, 10)]), now: now).message
                .hasSuffix("; 1 node still joining (no key, Pod CIDR or endpoint yet)"))
    }

    func testAllPeersWithARecentHandshakeAreReady() {
        let b = node("b", 2)
        let c = node("c", 3)
        let condition = MeshCondition.evaluate(
            plan: plan([b, c]), device: device([(b.publicKey!, 10), (c.publicKey!, 179.5)]), now: now)
        XCTAssertEqual(
            condition,
            MeshCondition(
                ready: true, reason: "AllPeersConnected", message: "all 2 peers had a handshake in the last 180 s"))
        XCTAssertEqual(MeshCondition.type, "WireGuardMeshReady")
        XCTAssertTrue(
            MeshCondition.evaluate(plan: plan([b]), device: device([(b.publicKey!, 180)]), now: now).ready,
            "exactly the limit still counts")
        XCTAssertTrue(
            MeshCondition.evaluate(plan: plan([b]), device: device([(b.publicKey!, -30)]), now: now).ready,
            "a clock a little behind the kernel's")
        XCTAssertEqual(
            MeshCondition.evaluate(plan: plan([b]), device: device([(b.publicKey!, 1)]), now: now).message,
            "all 1 peer had a handshake in the last 180 s")
    }

    func testStaleMissingAndNeverHandshakenPeersAreNamedSorted() {
        let b = node("b", 2)
        let c = node("c", 3)
        let d = node("d", 4)
        let e = node("e", 5)
        // d is planned but not on the device yet.
        let condition = MeshCondition.evaluate(
            plan: plan([e, c, b, d]), device: device([(b.publicKey!, 5), (c.publicKey!, 181), (e.publicKey!, nil)]),
            now: now)
        XCTAssertFalse(condition.ready)
        XCTAssertEqual(condition.reason, "PeersStale")
        XCTAssertEqual(
            condition.message,
            """
            no handshake in the last 180 s with 3 of 4 peers: c, d, e; check that their endpoints' UDP port is \
            reachable
            """
        )
    }

    func testMaxHandshakeAgeIsTheCallers() {
        let b = node("b", 2)
        let state = device([(b.publicKey!, 100)])
        XCTAssertTrue(MeshCondition.evaluate(plan: plan([b]), device: state, now: now).ready)
        let strict = MeshCondition.evaluate(plan: plan([b]), device: state, now: now, maxHandshakeAge: 60)
        XCTAssertEqual(
            strict.message,
            "no handshake in the last 60 s with 1 of 1 peer: b; check that their endpoints' UDP port is reachable")
    }

    func testAPreStagedNextKeyDoesNotCount() {
        var b = node("b", 2)
        b.nextPublicKey = WireGuardKeyPair.generate().publicKey
        let p = plan([b])
        XCTAssertEqual(p.peers.count, 2)
        // The next key has no handshake and no peer on the device: still ready.
        XCTAssertEqual(
            MeshCondition.evaluate(plan: p, device: device([(b.publicKey!, 3)]), now: now).reason, "AllPeersConnected")
        // A fresh handshake on the next key does not stand in for a stale current key.
        let stale = MeshCondition.evaluate(
            plan: p, device: device([(b.publicKey!, 600), (b.nextPublicKey!, 1)]), now: now)
        XCTAssertEqual(stale.reason, "PeersStale")
        XCTAssertTrue(stale.message.contains("1 of 1 peer: b;"), stale.message)
    }

    func testAtMostTwentyStaleNodesAreNamed() {
        let nodes = (2..<27).map { node(String(format: "n%02d", $0), $0) }
        let condition = MeshCondition.evaluate(plan: plan(nodes), device: device([]), now: now)
        let named = (2..<22).map { String(format: "n%02d", $0) }.joined(separator: ", ")
        XCTAssertEqual(
            condition.message,
            """
            no handshake in the last 180 s with 25 of 25 peers: \(named) and 5 more; check that their endpoints' \
            UDP port is reachable
            """
        )
        let twenty = MeshCondition.evaluate(plan: plan(Array(nodes.prefix(20))), device: device([]), now: now)
        XCTAssertFalse(twenty.message.contains("more"), twenty.message)
    }

    func testNoPeersIsReadyAndSaysWhy() {
        let condition = MeshCondition.evaluate(plan: plan([]), device: device([]), now: now)
        XCTAssertEqual(
            condition,
            MeshCondition(
                ready: true, reason: "NoPeers",
                message: "no other node is in the mesh yet, so there is no peer to connect to"))
    }

    /// Nodes left out for a problem (a CIDR outside the cluster's) and nodes still joining (no endpoint yet) apart.
    func testNodesLeftOutAndJoiningAreMentionedApart() {
        var noEndpoint = node("x", 9)
        noEndpoint.endpoint = nil
        XCTAssertEqual(
            MeshCondition.evaluate(plan: plan([noEndpoint]), device: device([]), now: now).message,
            """
            no other node is in the mesh yet, so there is no peer to connect to; 1 node still joining (no key, \
            Pod CIDR or endpoint yet)
            """
        )
        let b = node("b", 2)
        let outside = node("y", 10, cidrs: ["10.99.0.0/24"])
        let alsoOutside = node("z", 11, cidrs: ["10.98.0.0/24"])
        XCTAssertEqual(
            MeshCondition.evaluate(
                plan: plan([b, noEndpoint, outside, alsoOutside]), device: device([(b.publicKey!, 1)]), now: now
            ).message,
            """
            all 1 peer had a handshake in the last 180 s; 2 nodes left out of the mesh (see the Events of those \
            Nodes); 1 node still joining (no key, Pod CIDR or endpoint yet)
            """
        )
    }

    func testADeviceWithoutAKeyIsNotReady() {
        let b = node("b", 2)
        var keyless = device([(b.publicKey!, 1)])
        keyless.privateKey = nil
        keyless.publicKey = nil
        for state in [keyless, DeviceState(name: "wgmesh0", privateKey: .zero, publicKey: .zero)] {
            for p in [plan([b]), plan([])] {
                let condition = MeshCondition.evaluate(plan: p, device: state, now: now)
                XCTAssertFalse(condition.ready)
                XCTAssertEqual(condition.reason, "NoKey")
                XCTAssertTrue(
                    condition.message.hasPrefix("interface wgmesh0 has no private key yet"), condition.message)
            }
        }
        // A backend that reports only the public half still counts as keyed.
        var publicOnly = device([(b.publicKey!, 1)])
        publicOnly.privateKey = nil
        XCTAssertTrue(MeshCondition.evaluate(plan: plan([b]), device: publicOnly, now: now).ready)
    }
}

final class MeshConditionPeerCountTests: XCTestCase {
    /// What `status` reads back from every message `evaluate` writes, and nothing from other words.
    func testPeerCountsReadBackEveryMessageEvaluateWrites() {
        let settings = ClusterSettings(clusterCIDRs: [try! IPPrefix("10.244.0.0/16")])
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let own = WireGuardKeyPair.generate()
        for (total, stale, excluded) in [
            (0, 0, 0), (0, 0, 2), (1, 0, 0), (1, 1, 0), (3, 0, 1), (3, 2, 0), (30, 25, 3), (30, 30, 0),
        ] {
            var nodes = [node("local", 0)] + (1...max(1, total)).prefix(total).map { node("p\($0)", $0) }
            for i in 0..<excluded { nodes.append(node("x\(i)", 200 + i, cidrs: ["10.99.\(i).0/24"])) }
            let plan = MeshPlan(localNode: "local", settings: settings, nodes: nodes, interfaceIndex: 1)
            let device = DeviceState(
                name: "wgmesh0", privateKey: own.privateKey, publicKey: own.publicKey,
                peers: plan.peers.enumerated().map { i, p in
                    var peer = PeerState(publicKey: p.publicKey)
                    peer.lastHandshake = (Int64(now.timeIntervalSince1970) - (i < stale ? 600 : 5), 0)
                    return peer
                })
            let c = MeshCondition.evaluate(plan: plan, device: device, now: now)
            let counts = MeshCondition.peerCounts(reason: c.reason, message: c.message)
            XCTAssertEqual(counts?.ready, total - stale, c.message)
            XCTAssertEqual(counts?.total, total, c.message)
        }
        XCTAssertNil(MeshCondition.peerCounts(reason: "NoKey", message: "interface wgmesh0 has no private key yet"))
        XCTAssertNil(MeshCondition.peerCounts(reason: "AllPeersConnected", message: "fine"))
        XCTAssertNil(
            MeshCondition.peerCounts(
                reason: "PeersStale", message: "no handshake in the last 180 s with 5 of 3 peers: a"),
            "more stale than peers")
        XCTAssertNil(MeshCondition.peerCounts(reason: "PeersStale", message: ""))
        XCTAssertNil(MeshCondition.peerCounts(reason: "", message: "all 3 peers had a handshake"))
    }
}
