import Foundation
import WGMeshCore
import XCTest

final class NodeIssuanceTests: XCTestCase {
    let now = RFC3339.parse("2026-11-27T10:00:00Z")!
    let enrollment = WireGuardKeyPair.generate()

    func allocator() throws -> PodCIDRAllocator? {
        try PodCIDRAllocator(clusterCIDRs: [try IPPrefix("10.244.0.0/16"), try IPPrefix("fd00:10:244::/48")])
    }

    func decide(_ facts: NodeFacts, _ allocator: inout PodCIDRAllocator?, policy: ControllerPolicy = .init(),
                stagedAt: Date? = nil, mayStartRotation: Bool = true, at time: Date? = nil) -> NodeIssuance {
        NodeIssuance.decide(facts, allocator: &allocator, policy: policy, stagedAt: stagedAt, mayStartRotation: mayStartRotation, now: time ?? now)
    }

    /// A node the controller has fully set up, as the annotations show it.
    func issued(_ name: String = "n", generation: UInt64 = 1, issuedAt: String = "2026-11-27T09:00:00Z") throws -> [String: String] {
        let pair = WireGuardKeyPair.generate()
        return [
            Annotation.enrollmentKey: enrollment.publicKey.base64, Annotation.sealedTo: enrollment.publicKey.base64,
            Annotation.publicKey: pair.publicKey.base64,
            Annotation.sealedPrivateKey: try SealedKey.seal(pair.privateKey, to: enrollment.publicKey, nodeName: name, generation: generation).base64,
            Annotation.keyGeneration: String(generation), Annotation.keyIssuedAt: issuedAt,
            Annotation.podCIDRs: "10.244.0.0/24,fd00:10:244::/64", Annotation.endpoint: "10.0.0.1:51820",
        ]
    }

    func testANewNodeGetsCIDRsAnEndpointAndAKeyInOneDecision() throws {
        var a = try allocator()
        let d = decide(NodeFacts(name: "n", annotations: [Annotation.enrollmentKey: enrollment.publicKey.base64],
                                 addresses: [.init(type: "Hostname", address: "n"), .init(type: "InternalIP", address: "10.0.0.1")]), &a)
        XCTAssertEqual(d.annotations[Annotation.podCIDRs], "10.244.0.0/24,fd00:10:244::/64")
        XCTAssertEqual(d.annotations[Annotation.endpoint], "10.0.0.1:51820")
        XCTAssertEqual(d.key, .issue(generation: 1, enrollmentKey: enrollment.publicKey))
        XCTAssertEqual(d.notices.map(\.reason.rawValue), ["PodCIDRAllocated", "KeyIssued"])
        XCTAssertEqual(a?.allocation(of: "n")?.map(\.description), ["10.244.0.0/24", "fd00:10:244::/64"])
        // The write failed: deciding again hands out the same CIDRs, not new ones.
        let again = decide(NodeFacts(name: "n", annotations: [:]), &a)
        XCTAssertEqual(again.annotations[Annotation.podCIDRs], "10.244.0.0/24,fd00:10:244::/64")
        XCTAssertEqual(a?.count, 1)
    }

    func testASetUpNodeNeedsNothing() throws {
        var a = try allocator()
        try a?.restore(node: "n", cidrs: [try IPPrefix("10.244.0.0/24"), try IPPrefix("fd00:10:244::/64")])
        let d = decide(NodeFacts(name: "n", annotations: try issued(), addresses: [.init(type: "InternalIP", address: "10.0.0.1")]), &a)
        XCTAssertTrue(d.writesNothing)
        XCTAssertEqual(d.notices, [])
        XCTAssertNil(d.revisitAt, "no rotation policy, nothing to wait for")
    }

    func testEnrollmentKeyProblems() throws {
        var a = try allocator()
        let garbage = decide(NodeFacts(name: "g", annotations: [Annotation.enrollmentKey: "junk"]), &a)
        XCTAssertNil(garbage.key)
        XCTAssertEqual(garbage.notices.first?.reason.rawValue, "EnrollmentKeyInvalid")
        XCTAssertTrue(garbage.notices[0].warning)
        XCTAssertNotNil(garbage.annotations[Annotation.podCIDRs], "the CIDR does not wait for a key")

        var changed = try issued()
        let replacement = WireGuardKeyPair.generate()
        changed[Annotation.enrollmentKey] = replacement.publicKey.base64
        changed[Annotation.nextPublicKey] = WireGuardKeyPair.generate().publicKey.base64
        changed[Annotation.nextSealedPrivateKey] = changed[Annotation.sealedPrivateKey]
        let d = decide(NodeFacts(name: "n", annotations: changed), &a)
        XCTAssertEqual(d.key, .issue(generation: 2, enrollmentKey: replacement.publicKey), "a new enrollment key, a new keypair")
        XCTAssertEqual(d.annotations[Annotation.nextPublicKey], .some(nil), "a running rotation is dropped")

        var broken = try issued()
        broken[Annotation.podCIDRs] = "10.244.0.1/24"
        let skipped = decide(NodeFacts(name: "n", annotations: broken), &a)
        XCTAssertTrue(skipped.skipped)
        XCTAssertTrue(skipped.writesNothing, "a malformed annotation is reported, never overwritten")
        XCTAssertEqual(skipped.notices.first?.reason.rawValue, "InvalidAnnotation")
    }

    func testCIDRSources() throws {
        var a = try allocator()
        let spec = NodeFacts(name: "s", annotations: [:], specPodCIDRs: ["10.99.1.0/24"])
        XCTAssertEqual(decide(spec, &a).annotations[Annotation.podCIDRs], "10.99.1.0/24", "auto: spec.podCIDRs win")
        XCTAssertNil(a?.allocation(of: "s"), "outside wgmesh's pools: not tracked")
        let inside = NodeFacts(name: "i", annotations: [:], specPodCIDRs: ["10.244.0.0/24"])
        XCTAssertEqual(decide(inside, &a).annotations[Annotation.podCIDRs], "10.244.0.0/24")
        XCTAssertEqual(decide(NodeFacts(name: "w", annotations: [:]), &a).annotations[Annotation.podCIDRs], "10.244.1.0/24,fd00:10:244::/64",
                       "a range the cluster assigned inside the pool is not handed out again")
        var none: PodCIDRAllocator? = nil
        let pending = decide(NodeFacts(name: "p", annotations: [:]), &none, policy: .init(cidrSource: .nodeSpec))
        XCTAssertEqual(pending.notices.first?.reason.rawValue, "PodCIDRPending")
        XCTAssertNil(pending.annotations[Annotation.podCIDRs] ?? nil)

        var tiny: PodCIDRAllocator? = try PodCIDRAllocator(clusterCIDRs: [try IPPrefix("10.1.0.0/24")])
        _ = decide(NodeFacts(name: "a", annotations: [:]), &tiny)
        let full = decide(NodeFacts(name: "b", annotations: [:]), &tiny)
        XCTAssertEqual(full.notices.first?.reason.rawValue, "PodCIDRExhausted")
        XCTAssertTrue(full.notices[0].note.contains("--cluster-cidr"), "says what to do")
    }

    func testEndpointPreferenceAndIPv6() throws {
        var a = try allocator()
        let policy = ControllerPolicy(endpointAddressTypes: ["ExternalIP", "InternalIP"], listenPort: 4500)
        let d = decide(NodeFacts(name: "n", annotations: [:], addresses: [.init(type: "InternalIP", address: "10.0.0.1"),
                                                                         .init(type: "ExternalIP", address: "2001:db8::1")]), &a, policy: policy)
        XCTAssertEqual(d.annotations[Annotation.endpoint], "[2001:db8::1]:4500")
        let unknown = decide(NodeFacts(name: "m", annotations: [:], addresses: [.init(type: "Hostname", address: "m")]), &a)
        XCTAssertEqual(unknown.notices.last?.reason.rawValue, "EndpointUnknown")
    }

    func testRotationPhases() throws {
        var a = try allocator()
        var requested = try issued()
        requested[Annotation.rotateRequestedAt] = "2026-11-27T09:30:00Z"
        let policy = ControllerPolicy(rotation: .init(grace: 10))
        let stage = decide(NodeFacts(name: "n", annotations: requested), &a, policy: policy)
        XCTAssertEqual(stage.key, .stage(generation: 2, enrollmentKey: enrollment.publicKey))
        XCTAssertEqual(stage.revisitAt, now.addingTimeInterval(10))
        XCTAssertEqual(decide(NodeFacts(name: "n", annotations: requested), &a, policy: policy, mayStartRotation: false).notices.first?.reason.rawValue,
                       "RotationQueued", "over the concurrency limit: wait")

        var staged = requested
        let next = WireGuardKeyPair.generate()
        staged[Annotation.nextPublicKey] = next.publicKey.base64
        staged[Annotation.nextSealedPrivateKey] = try SealedKey.seal(next.privateKey, to: enrollment.publicKey, nodeName: "n", generation: 2).base64
        let restarted = decide(NodeFacts(name: "n", annotations: staged), &a, policy: policy, stagedAt: nil)
        XCTAssertTrue(restarted.restartGrace, "after a restart the grace starts again")
        XCTAssertTrue(restarted.writesNothing)
        let early = decide(NodeFacts(name: "n", annotations: staged), &a, policy: policy, stagedAt: now.addingTimeInterval(-9))
        XCTAssertTrue(early.writesNothing, "no switch before the grace period ends")
        let switched = decide(NodeFacts(name: "n", annotations: staged), &a, policy: policy, stagedAt: now.addingTimeInterval(-10))
        XCTAssertEqual(switched.annotations[Annotation.publicKey], next.publicKey.base64)
        XCTAssertEqual(switched.annotations[Annotation.keyGeneration], "2")
        XCTAssertEqual(switched.annotations[Annotation.keyIssuedAt], RFC3339.format(now))
        XCTAssertEqual(switched.annotations[Annotation.nextPublicKey], .some(nil))
        XCTAssertEqual(switched.annotations[Annotation.nextSealedPrivateKey], .some(nil))

        let aged = decide(NodeFacts(name: "n", annotations: try issued()), &a, policy: .init(rotation: .init(grace: 10, maxKeyAge: 1800)))
        XCTAssertEqual(aged.key, .stage(generation: 2, enrollmentKey: enrollment.publicKey), "issued an hour ago, max age 30 min")
        let young = decide(NodeFacts(name: "n", annotations: try issued()), &a, policy: .init(rotation: .init(grace: 10, maxKeyAge: 7200)))
        XCTAssertEqual(young.revisitAt, RFC3339.parse("2026-11-27T11:00:00Z"), "looked at again when it comes of age")
    }
}
