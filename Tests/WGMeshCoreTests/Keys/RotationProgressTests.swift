import Foundation
import TestSupport
import WGMeshCore
import XCTest

final class RotationProgressTests: XCTestCase {
    func progress(_ fixture: ClusterFixture, _ node: String = "a", token: String = "t1") -> RotationProgress? {
        RotationProgress.evaluate(requests: [node: token], nodes: fixture.nodes)[node]
    }

    func testEachStepUntilEveryPeerRunsTheNewKey() {
        var f = ClusterFixture(["a", "b", "c"])
        f.annotations["a"]![Annotation.rotateRequest] = "t1"
        XCTAssertEqual(progress(f), .notAnswered)
        f.annotations["a"]![Annotation.rotateAnswered] = "t0"
        XCTAssertEqual(progress(f), .notAnswered, "an earlier request's answer is not this one's")

        // Phase 1: the next key is staged with the answer.
        f.annotations["a"]![Annotation.rotateAnswered] = "t1"
        f.annotations["a"]![Annotation.nextPublicKey] = WireGuardKeyPair.generate().publicKey.base64
        f.annotations["a"]![Annotation.nextSealedPrivateKey] = f.annotations["a"]![Annotation.sealedPrivateKey]
        XCTAssertEqual(progress(f), .staged(generation: 2))
        f.applyPeers()  // peers pre-stage: nothing they route to changes
        XCTAssertEqual(progress(f), .staged(generation: 2))

        // Phase 2: the switch; a's agent, then each peer.
        f.annotations["a"]![Annotation.nextPublicKey] = nil
        f.annotations["a"]![Annotation.nextSealedPrivateKey] = nil
        f.rotate("a", answering: "t1")
        XCTAssertEqual(progress(f), .applying(generation: 2, applied: 1))
        f.annotations["a"]![Annotation.appliedKeyGeneration] = nil
        XCTAssertEqual(progress(f), .applying(generation: 2, applied: nil))
        f.annotations["a"]![Annotation.appliedKeyGeneration] = "2"
        XCTAssertEqual(progress(f), .peersPending(generation: 2, peers: ["b", "c"]))
        f.applyPeers(except: ["c"])
        XCTAssertEqual(progress(f), .peersPending(generation: 2, peers: ["c"]))
        XCTAssertTrue(progress(f)!.description.contains("peer c does not run it yet"), progress(f)!.description)
        f.applyPeers()
        XCTAssertEqual(progress(f), .done(generation: 2, peers: 2))
        XCTAssertEqual(progress(f)?.isDone, true)
        XCTAssertEqual(progress(f)?.description, "key generation 2 runs on the node and on its 2 peers")
    }

    func testPeersThatCannotProveItAndNodesThatAreNotPeers() {
        var f = ClusterFixture(["a", "b", "c", "d"])
        f.rotate("a", answering: "t1")
        f.annotations["a"]![Annotation.appliedKeyGeneration] = "2"
        f.annotations["d"] = [:]  // not in the mesh (no key yet): not a's peer, nothing to wait for
        f.conditions["d"] = nil
        f.applyPeers()
        f.annotations["b"]![Annotation.appliedPeers] = nil  // an agent older than applied-peers
        f.annotations["c"]![Annotation.clusterCIDRs] = nil  // a report without settings is judged against every address
        XCTAssertEqual(progress(f), .peersPending(generation: 2, peers: ["b"]))
        f.annotations["b"]![Annotation.appliedPeers] = "sha256:0000"
        XCTAssertEqual(progress(f), .peersPending(generation: 2, peers: ["b"]))
        f.applyPeers()
        XCTAssertEqual(progress(f), .done(generation: 2, peers: 2))

        // A fresh keypair (a new enrollment key) answers a request as well.
        f.rotate("b", answering: "t2")
        f.annotations["b"]![Annotation.appliedKeyGeneration] = "2"
        f.applyPeers()
        XCTAssertEqual(progress(f, "b", token: "t2"), .done(generation: 2, peers: 2))
        XCTAssertEqual(
            progress(f, "a"), .done(generation: 2, peers: 2), "a stays done after b moved, once its peers caught up")
    }

    func testGoneAndUnreadableNodesAndSeveralAtOnce() {
        var f = ClusterFixture(["a", "b"])
        XCTAssertEqual(progress(f, "zz"), .gone)
        f.annotations["b"]![Annotation.keyGeneration] = "-1"
        guard case .unreadable(let why)? = progress(f, "b") else {
            return XCTFail("\(String(describing: progress(f, "b")))")
        }
        XCTAssertTrue(why.contains("key-generation"), why)
        f = ClusterFixture(["a", "b", "c"])
        for n in ["a", "b"] {
            f.rotate(n, answering: "t")
            f.annotations[n]![Annotation.appliedKeyGeneration] = "2"
        }
        f.applyPeers()
        let all = RotationProgress.evaluate(requests: ["a": "t", "b": "t", "c": "t"], nodes: f.nodes)
        XCTAssertEqual(
            all, ["a": .done(generation: 2, peers: 2), "b": .done(generation: 2, peers: 2), "c": .notAnswered])
        XCTAssertEqual(RotationProgress.evaluate(requests: [:], nodes: []), [:])
    }
}
