import Foundation
import WGMeshCore
import XCTest

final class NodeIssuanceTests: XCTestCase {
    let now = RFC3339.parse("2026-11-27T10:00:00Z")!
    let enrollment = WireGuardKeyPair.generate()

    func allocator(_ cidrs: [String] = ["10.244.0.0/16", "fd00:10:244::/48"]) throws -> PodCIDRAllocator {
        try PodCIDRAllocator(clusterCIDRs: cidrs.map { try IPPrefix($0) })
    }

    func decide(
        _ facts: NodeFacts, _ allocator: inout PodCIDRAllocator, specFamilies: Set<IPFamily> = [],
        policy: ControllerPolicy = .init(),
        stagedAt: Date? = nil, mayStartRotation: Bool = true, at time: Date? = nil
    ) -> NodeIssuance {
        NodeIssuance.decide(
            facts, allocator: &allocator, specFamilies: specFamilies, policy: policy, stagedAt: stagedAt,
            mayStartRotation: mayStartRotation, now: time ?? now)
    }

    /// The notices apart from the missing endpoint these address-less facts always give.
    func reasons(_ d: NodeIssuance) -> [String] { d.notices.map(\.reason.rawValue).filter { $0 != "EndpointUnknown" } }

    /// A node the controller has fully set up, as the annotations show it.
    func issued(_ name: String = "n", generation: UInt64 = 1, issuedAt: String = "2026-11-27T09:00:00Z") throws
        -> [String: String]
    {
        let pair = WireGuardKeyPair.generate()
        return [
            Annotation.enrollmentKey: enrollment.publicKey.base64, Annotation.sealedTo: enrollment.publicKey.base64,
            Annotation.publicKey: pair.publicKey.base64,
            Annotation.sealedPrivateKey: try SealedKey.seal(
                pair.privateKey, to: enrollment.publicKey, nodeName: name, generation: generation
            ).base64,
            Annotation.keyGeneration: String(generation), Annotation.keyIssuedAt: issuedAt,
            Annotation.podCIDRs: "10.244.0.0/24,fd00:10:244::/64", Annotation.endpoint: "10.0.0.1:51820",
        ]
    }

    func testANewNodeGetsCIDRsAnEndpointAndAKeyInOneDecision() throws {
        var a = try allocator()
        let d = decide(
            NodeFacts(
                name: "n", annotations: [Annotation.enrollmentKey: enrollment.publicKey.base64],
                addresses: [.init(type: "Hostname", address: "n"), .init(type: "InternalIP", address: "10.0.0.1")]), &a)
        XCTAssertEqual(d.annotations[Annotation.podCIDRs], "10.244.0.0/24,fd00:10:244::/64")
        XCTAssertEqual(d.annotations[Annotation.endpoint], "10.0.0.1:51820")
        XCTAssertEqual(d.key, .issue(generation: 1, enrollmentKey: enrollment.publicKey))
        XCTAssertEqual(d.notices.map(\.reason.rawValue), ["PodCIDRAllocated", "KeyIssued"])
        XCTAssertEqual(a.allocation(of: "n")?.map(\.description), ["10.244.0.0/24", "fd00:10:244::/64"])
        // The write failed: deciding again hands out the same CIDRs, not new ones.
        let again = decide(NodeFacts(name: "n", annotations: [:]), &a)
        XCTAssertEqual(again.annotations[Annotation.podCIDRs], "10.244.0.0/24,fd00:10:244::/64")
        XCTAssertEqual(a.count, 1)
    }

    func testASetUpNodeNeedsNothing() throws {
        var a = try allocator()
        try a.restore(node: "n", cidr: try IPPrefix("10.244.0.0/24"))
        try a.restore(node: "n", cidr: try IPPrefix("fd00:10:244::/64"))
        let d = decide(
            NodeFacts(
                name: "n", annotations: try issued(), addresses: [.init(type: "InternalIP", address: "10.0.0.1")]), &a)
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
        XCTAssertTrue(garbage.notices[0].note.contains("stays out of the mesh"), garbage.notices[0].note)
        a = try allocator()  // each case below is a node of its own, holding the same CIDR
        var keyed = try issued()
        keyed[Annotation.enrollmentKey] = "junk"
        let stays = decide(NodeFacts(name: "n", annotations: keyed), &a)
        XCTAssertEqual(reasons(stays), ["EnrollmentKeyInvalid"])
        XCTAssertTrue(
            stays.notices[0].note.contains("keeps its current keys, Pod CIDR and place in the mesh"),
            "says what really happens: \(stays.notices[0].note)")
        XCTAssertFalse(stays.notices[0].note.contains("left out"), stays.notices[0].note)
        XCTAssertNotNil(garbage.annotations[Annotation.podCIDRs], "the CIDR does not wait for a key")

        var changed = try issued()
        let replacement = WireGuardKeyPair.generate()
        changed[Annotation.enrollmentKey] = replacement.publicKey.base64
        changed[Annotation.nextPublicKey] = WireGuardKeyPair.generate().publicKey.base64
        changed[Annotation.nextSealedPrivateKey] = changed[Annotation.sealedPrivateKey]
        a = try allocator()
        let d = decide(NodeFacts(name: "n", annotations: changed), &a)
        XCTAssertEqual(
            d.key, .issue(generation: 2, enrollmentKey: replacement.publicKey), "a new enrollment key, a new keypair")
        XCTAssertEqual(d.annotations[Annotation.nextPublicKey], .some(nil), "a running rotation is dropped")

        var broken = try issued()
        broken[Annotation.podCIDRs] = "10.244.0.1/24"
        a = try allocator()
        let skipped = decide(NodeFacts(name: "n", annotations: broken), &a)
        XCTAssertTrue(skipped.skipped)
        XCTAssertTrue(skipped.writesNothing, "a malformed annotation is reported, never overwritten")
        XCTAssertEqual(skipped.notices.first?.reason.rawValue, "InvalidAnnotation")
    }

    func testAChangedEnrollmentKeyIsASecurityEventHeldOrReissuedByPolicy() throws {
        var changed = try issued()
        let replacement = WireGuardKeyPair.generate()
        changed[Annotation.enrollmentKey] = replacement.publicKey.base64
        let fingerprints = [enrollment.publicKey.fingerprint, replacement.publicKey.fingerprint]
        XCTAssertTrue(fingerprints.allSatisfy { $0.hasPrefix("SHA256:") && $0.count == 50 }, "\(fingerprints)")

        var a = try allocator()
        let held = decide(NodeFacts(name: "n", annotations: changed), &a, policy: .init(enrollmentChange: .hold))
        XCTAssertNil(held.key, "hold: no keypair sealed to the new key")
        XCTAssertTrue(held.writesNothing, "hold: the node keeps its keys")
        XCTAssertEqual(reasons(held), ["EnrollmentKeyChanged"])
        XCTAssertTrue(held.notices[0].warning)
        let note = held.notices[0].note
        for part in [
            "node n", fingerprints[0], fingerprints[1], "held", "wgmesh.dev/accept-enrollment=\(fingerprints[1])",
        ] {
            XCTAssertTrue(note.contains(part), "\(part) in: \(note)")
        }
        var requested = changed
        requested[Annotation.rotateRequest] = "r1"
        a = try allocator()
        XCTAssertNil(
            decide(NodeFacts(name: "n", annotations: requested), &a, policy: .init(enrollmentChange: .hold)).key,
            "hold: a rotation, which would seal to the new key, waits too")

        var wrong = changed
        wrong[Annotation.acceptEnrollment] = fingerprints[0]
        a = try allocator()
        XCTAssertNil(
            decide(NodeFacts(name: "n", annotations: wrong), &a, policy: .init(enrollmentChange: .hold)).key,
            "accepting another key accepts nothing")

        var accepted = changed
        accepted[Annotation.acceptEnrollment] = fingerprints[1]
        a = try allocator()
        let issued = decide(NodeFacts(name: "n", annotations: accepted), &a, policy: .init(enrollmentChange: .hold))
        XCTAssertEqual(issued.key, .issue(generation: 2, enrollmentKey: replacement.publicKey))
        XCTAssertEqual(issued.annotations[Annotation.acceptEnrollment], .some(nil), "the acceptance is used up")
        XCTAssertEqual(reasons(issued), ["EnrollmentKeyChanged", "KeyIssued"])
        XCTAssertTrue(
            issued.notices[0].note.contains("accepted by wgmesh.dev/accept-enrollment"), issued.notices[0].note)

        a = try allocator()
        let reissued = decide(NodeFacts(name: "n", annotations: changed), &a)
        XCTAssertEqual(
            reissued.key, .issue(generation: 2, enrollmentKey: replacement.publicKey), "reissue, the default")
        XCTAssertEqual(reasons(reissued), ["EnrollmentKeyChanged", "KeyIssued"])
        XCTAssertTrue(reissued.notices[0].warning)
        XCTAssertTrue(
            reissued.notices[0].note.contains(fingerprints[0]) && reissued.notices[0].note.contains(fingerprints[1]),
            reissued.notices[0].note)

        a = try allocator()
        XCTAssertEqual(
            reasons(
                decide(
                    NodeFacts(name: "n", annotations: [Annotation.enrollmentKey: enrollment.publicKey.base64]), &a,
                    policy: .init(enrollmentChange: .hold))), ["PodCIDRAllocated", "KeyIssued"],
            "a new node's first enrollment key is no change")
    }

    func testACorruptedPodCIDRsAnnotationKeepsItsCIDRTaken() throws {
        var a = try allocator(["10.244.0.0/16"])
        for (i, garbled) in ["10.244.0.0/24,nonsense", "10.244.1.0/2x4", "10.244.2.0/24;", " 10.244.3.0 / 24"]
            .enumerated()
        {
            let d = decide(NodeFacts(name: "c\(i)", annotations: [Annotation.podCIDRs: garbled]), &a)
            XCTAssertEqual(reasons(d), ["InvalidAnnotation"], garbled)
            XCTAssertTrue(d.notices[0].note.contains("stays reserved"), d.notices[0].note)
            XCTAssertTrue(d.writesNothing, "reported, never overwritten")
        }
        let next = decide(NodeFacts(name: "new", annotations: [:]), &a)
        XCTAssertEqual(
            next.annotations[Annotation.podCIDRs], "10.244.4.0/24",
            "no CIDR a garbled annotation still names is handed out")
    }

    func testAPublishedCIDROutsideThePoolsIsKeptAndReported() throws {
        // Restarted with the IPv6 range dropped from --cluster-cidr.
        var a = try allocator(["10.244.0.0/16"])
        let d = decide(
            NodeFacts(name: "old", annotations: [Annotation.podCIDRs: "10.244.0.0/24,fd00:10:244::/64"]), &a,
            policy: .init(cidrSource: .wgmesh))
        XCTAssertTrue(d.writesNothing, "a published CIDR never changes")
        XCTAssertEqual(reasons(d), ["PodCIDRUnmanaged"])
        XCTAssertTrue(
            d.notices[0].note.contains("fd00:10:244::/64") && d.notices[0].note.contains("stays reserved"),
            d.notices[0].note)
        XCTAssertEqual(a.allocation(of: "old"), [try IPPrefix("10.244.0.0/24")], "the IPv4 CIDR is restored on its own")
        XCTAssertEqual(
            decide(NodeFacts(name: "new", annotations: [:]), &a).annotations[Annotation.podCIDRs], "10.244.1.0/24")
    }

    func testAnOverlapIsReportedNamingTheOtherNodeAndTheOwner() throws {
        var a = try allocator(["10.244.0.0/16"])
        _ = decide(NodeFacts(name: "owner", annotations: [Annotation.podCIDRs: "10.244.0.0/24"]), &a)
        let d = decide(NodeFacts(name: "copy", annotations: [Annotation.podCIDRs: "10.244.0.0/24"]), &a)
        XCTAssertEqual(reasons(d), ["PodCIDRConflict"])
        XCTAssertEqual(d.notices[0].otherNode, "owner")
        XCTAssertTrue(d.notices[0].note.contains("wgmesh allocated it to node owner"), d.notices[0].note)
        XCTAssertEqual(a.owner(of: try IPPrefix("10.244.0.0/24")), "owner")
        let spec = decide(NodeFacts(name: "spec", annotations: [:], specPodCIDRs: ["10.244.1.0/24"]), &a)
        let other = decide(NodeFacts(name: "spec2", annotations: [:], specPodCIDRs: ["10.244.1.0/24"]), &a)
        XCTAssertEqual(spec.annotations[Annotation.podCIDRs], "10.244.1.0/24")
        XCTAssertEqual(reasons(other), ["PodCIDRConflict"])
        XCTAssertNil(
            other.annotations[Annotation.podCIDRs] ?? nil, "a CIDR another node publishes is not published again")
        XCTAssertTrue(other.notices[0].note.contains("wgmesh allocated it to neither"), other.notices[0].note)
    }

    /// Issue 20, defect 10: a conflict between two nodes named a third one as the owner wgmesh allocated it to.
    func testAConflictBetweenTwoNodesNamesNoThirdOwner() throws {
        var a = try allocator(["10.244.0.0/16"])
        _ = decide(NodeFacts(name: "owner", annotations: [Annotation.podCIDRs: "10.244.0.0/24"]), &a)
        _ = decide(NodeFacts(name: "hand-a", annotations: [Annotation.podCIDRs: "10.244.0.0/24"]), &a)
        let d = decide(NodeFacts(name: "hand-b", annotations: [Annotation.podCIDRs: "10.244.0.0/24"]), &a)
        let between = try XCTUnwrap(d.notices.first { $0.otherNode == "hand-a" }, "\(d.notices.map(\.note))")
        XCTAssertFalse(between.note.contains("allocated it to node owner"), between.note)
        XCTAssertTrue(between.note.contains("wgmesh allocated it to neither"), between.note)
        let withOwner = try XCTUnwrap(d.notices.first { $0.otherNode == "owner" }, "\(d.notices.map(\.note))")
        XCTAssertTrue(withOwner.note.contains("wgmesh allocated it to node owner"), withOwner.note)
    }

    func testANewNodeWaitingBrieflyForItsSpecIsWrittenOnceWhenItsCIDRIsKnown() throws {
        var a = try allocator()
        let created = now.addingTimeInterval(-5)
        let young = NodeFacts(
            name: "young", annotations: [Annotation.enrollmentKey: enrollment.publicKey.base64],
            addresses: [.init(type: "InternalIP", address: "10.0.0.1")], created: created)
        let waiting = decide(young, &a, policy: .init(specWait: 15))
        XCTAssertTrue(waiting.writesNothing, "no keys or endpoint before the node has a Pod CIDR: \(waiting)")
        XCTAssertEqual(waiting.notices.map(\.reason.rawValue), [])
        XCTAssertEqual(waiting.revisitAt, created.addingTimeInterval(15))
        let late = decide(young, &a, policy: .init(specWait: 15), at: created.addingTimeInterval(15))
        XCTAssertEqual(late.annotations[Annotation.podCIDRs], "10.244.0.0/24,fd00:10:244::/64")
        XCTAssertEqual(late.annotations[Annotation.endpoint], "10.0.0.1:51820")
        XCTAssertEqual(late.key, .issue(generation: 1, enrollmentKey: enrollment.publicKey))
        let filled = NodeFacts(
            name: "spec", annotations: [Annotation.enrollmentKey: enrollment.publicKey.base64],
            addresses: [.init(type: "InternalIP", address: "10.0.0.2")], specPodCIDRs: ["10.244.9.0/24"],
            created: created)
        let partly = decide(filled, &a, specFamilies: [.v4], policy: .init(specWait: 15))
        XCTAssertEqual(
            partly.annotations[Annotation.podCIDRs], "10.244.9.0/24",
            "a CIDR to publish: written at once, IPv6 after the wait")
        XCTAssertNotNil(partly.key)
    }

    func testAutoWaitsForTheClusterAllocatorInsteadOfRacingIt() throws {
        var a = try allocator()
        let created = now.addingTimeInterval(-5)
        let young = NodeFacts(name: "young", annotations: [:], created: created)
        let waiting = decide(young, &a, specFamilies: [.v4], policy: .init(specWait: 15))
        XCTAssertNil(
            waiting.annotations[Annotation.podCIDRs] ?? nil,
            "neither family yet: IPv4 comes from the cluster, IPv6 after the wait")
        XCTAssertEqual(waiting.revisitAt, created.addingTimeInterval(15))
        XCTAssertEqual(reasons(waiting), [])
        let late = decide(
            young, &a, specFamilies: [.v4], policy: .init(specWait: 15), at: created.addingTimeInterval(16))
        XCTAssertEqual(
            late.annotations[Annotation.podCIDRs], "fd00:10:244::/64",
            "the family the cluster does not assign comes from wgmesh")
        XCTAssertEqual(reasons(late), ["PodCIDRPending", "PodCIDRAllocated"])
        XCTAssertTrue(
            late.notices[0].note.contains("IPv4") && late.notices[0].note.contains("kube-controller-manager"),
            late.notices[0].note)
        XCTAssertNil(a.allocation(of: "young")?.first { $0.family == .v4 }, "no IPv4 CIDR from wgmesh's pool")
        let filled = NodeFacts(
            name: "young", annotations: [Annotation.podCIDRs: "fd00:10:244::/64"], specPodCIDRs: ["10.244.7.0/24"],
            created: created)
        XCTAssertEqual(
            decide(filled, &a, specFamilies: [.v4], policy: .init(specWait: 15)).annotations[Annotation.podCIDRs],
            "10.244.7.0/24,fd00:10:244::/64")
    }

    func testAPublishedCIDRDoesNotChangeWhenSpecDisagrees() throws {
        var a = try allocator()
        let facts = NodeFacts(
            name: "n", annotations: [Annotation.podCIDRs: "10.244.3.0/24,fd00:10:244:3::/64"],
            specPodCIDRs: ["10.244.9.0/24"])
        let d = decide(facts, &a, specFamilies: [.v4])
        XCTAssertTrue(d.writesNothing, "the node's Pods use the published CIDR")
        XCTAssertEqual(reasons(d), ["PodCIDRMismatch"])
        XCTAssertTrue(d.notices[0].warning)
        XCTAssertTrue(
            d.notices[0].note.contains("10.244.9.0/24") && d.notices[0].note.contains("wgmesh keeps 10.244.3.0/24"),
            d.notices[0].note)
    }

    func testCIDRSources() throws {
        var a = try allocator()
        let spec = NodeFacts(name: "s", annotations: [:], specPodCIDRs: ["10.99.1.0/24", "fd00:99:1::/64"])
        XCTAssertEqual(
            decide(spec, &a).annotations[Annotation.podCIDRs], "10.99.1.0/24,fd00:99:1::/64", "auto: spec.podCIDRs win")
        XCTAssertNil(a.allocation(of: "s"), "outside wgmesh's pools: not tracked")
        let inside = NodeFacts(name: "i", annotations: [:], specPodCIDRs: ["10.244.0.0/24", "fd00:10:244::/64"])
        XCTAssertEqual(
            decide(inside, &a, specFamilies: [.v4, .v6]).annotations[Annotation.podCIDRs],
            "10.244.0.0/24,fd00:10:244::/64")
        XCTAssertEqual(
            decide(NodeFacts(name: "w", annotations: [:]), &a, policy: .init(cidrSource: .wgmesh)).annotations[
                Annotation.podCIDRs],
            "10.244.1.0/24,fd00:10:244:1::/64", "a range the cluster assigned inside the pool is not handed out again")
        var none = try PodCIDRAllocator(clusterCIDRs: [])
        let pending = decide(NodeFacts(name: "p", annotations: [:]), &none, policy: .init(cidrSource: .nodeSpec))
        XCTAssertEqual(pending.notices.first?.reason.rawValue, "PodCIDRPending")
        XCTAssertNil(pending.annotations[Annotation.podCIDRs] ?? nil)

        var tiny = try PodCIDRAllocator(clusterCIDRs: [try IPPrefix("10.1.0.0/24")])
        _ = decide(NodeFacts(name: "a", annotations: [:]), &tiny)
        let full = decide(NodeFacts(name: "b", annotations: [:]), &tiny)
        XCTAssertEqual(full.notices.first?.reason.rawValue, "PodCIDRExhausted")
        XCTAssertTrue(full.notices[0].note.contains("--cluster-cidr"), "says what to do")
    }

    func testEndpointPreferenceAndIPv6() throws {
        var a = try allocator()
        let policy = ControllerPolicy(endpointAddressTypes: ["ExternalIP", "InternalIP"], listenPort: 4500)
        let d = decide(
            NodeFacts(
                name: "n", annotations: [:],
                addresses: [
                    .init(type: "InternalIP", address: "10.0.0.1"),
                    .init(type: "ExternalIP", address: "2001:db8::1"),
                ]), &a, policy: policy)
        XCTAssertEqual(d.annotations[Annotation.endpoint], "[2001:db8::1]:4500")
        let unknown = decide(
            NodeFacts(name: "m", annotations: [:], addresses: [.init(type: "Hostname", address: "m")]), &a)
        XCTAssertEqual(unknown.notices.last?.reason.rawValue, "EndpointUnknown")
    }

    func testRotationPhases() throws {
        var a = try allocator()
        var requested = try issued()
        // A request timed in the future by a writer whose clock is ahead: answered once, at once.
        requested[Annotation.rotateRequest] = "2026-11-27T10:00:45Z-1a2b"
        let policy = ControllerPolicy(rotation: .init(grace: 10))
        let stage = decide(NodeFacts(name: "n", annotations: requested), &a, policy: policy)
        XCTAssertEqual(stage.key, .stage(generation: 2, enrollmentKey: enrollment.publicKey))
        XCTAssertEqual(
            stage.annotations[Annotation.rotateAnswered], "2026-11-27T10:00:45Z-1a2b", "answered in the staging write")
        XCTAssertEqual(stage.revisitAt, now.addingTimeInterval(10))
        var answered = try issued()
        answered[Annotation.rotateRequest] = "2026-11-27T10:00:45Z-1a2b"
        answered[Annotation.rotateAnswered] = "2026-11-27T10:00:45Z-1a2b"
        XCTAssertNil(
            decide(NodeFacts(name: "n", annotations: answered), &a, policy: policy).key,
            "an answered request is not answered again")
        var behind = try issued(issuedAt: "2026-11-27T09:59:00Z")
        behind[Annotation.rotateRequest] = "2020-01-01T00:00:00Z"
        XCTAssertEqual(
            decide(NodeFacts(name: "n", annotations: behind), &a, policy: policy).key,
            .stage(generation: 2, enrollmentKey: enrollment.publicKey),
            "a request from a writer whose clock is behind is not dropped")
        let unenrolled = decide(NodeFacts(name: "u", annotations: [Annotation.rotateRequest: "x"]), &a, policy: policy)
        XCTAssertEqual(unenrolled.notices.last?.reason.rawValue, "RotationDeferred", "a request not acted on says why")
        XCTAssertEqual(
            decide(NodeFacts(name: "n", annotations: requested), &a, policy: policy, mayStartRotation: false).notices
                .first?.reason.rawValue,
            "RotationQueued", "over the concurrency limit: wait")

        var staged = requested
        let next = WireGuardKeyPair.generate()
        staged[Annotation.nextPublicKey] = next.publicKey.base64
        staged[Annotation.nextSealedPrivateKey] = try SealedKey.seal(
            next.privateKey, to: enrollment.publicKey, nodeName: "n", generation: 2
        ).base64
        let restarted = decide(NodeFacts(name: "n", annotations: staged), &a, policy: policy, stagedAt: nil)
        XCTAssertTrue(restarted.restartGrace, "after a restart the grace starts again")
        XCTAssertTrue(restarted.writesNothing)
        let early = decide(
            NodeFacts(name: "n", annotations: staged), &a, policy: policy, stagedAt: now.addingTimeInterval(-9))
        XCTAssertTrue(early.writesNothing, "no switch before the grace period ends")
        let switched = decide(
            NodeFacts(name: "n", annotations: staged), &a, policy: policy, stagedAt: now.addingTimeInterval(-10))
        XCTAssertEqual(switched.annotations[Annotation.publicKey], next.publicKey.base64)
        XCTAssertEqual(switched.annotations[Annotation.keyGeneration], "2")
        XCTAssertEqual(switched.annotations[Annotation.keyIssuedAt], RFC3339.format(now))
        XCTAssertEqual(switched.annotations[Annotation.nextPublicKey], .some(nil))
        XCTAssertEqual(switched.annotations[Annotation.nextSealedPrivateKey], .some(nil))

        let aged = decide(
            NodeFacts(name: "n", annotations: try issued()), &a,
            policy: .init(rotation: .init(grace: 10, maxKeyAge: 1800)))
        XCTAssertEqual(
            aged.key, .stage(generation: 2, enrollmentKey: enrollment.publicKey), "issued an hour ago, max age 30 min")
        let young = decide(
            NodeFacts(name: "n", annotations: try issued()), &a,
            policy: .init(rotation: .init(grace: 10, maxKeyAge: 7200)))
        XCTAssertEqual(young.revisitAt, RFC3339.parse("2026-11-27T11:00:00Z"), "looked at again when it comes of age")
    }
}
