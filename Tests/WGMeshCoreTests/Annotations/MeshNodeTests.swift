import XCTest
import WGMeshCore

final class MeshNodeTests: XCTestCase {
    static func fullNode() throws -> MeshNode {
        let enrollment = WireGuardKeyPair.generate()
        let keys = WireGuardKeyPair.generate()
        let next = WireGuardKeyPair.generate()
        var n = MeshNode(name: "node-a")
        n.podCIDRs = [try IPPrefix("10.244.3.0/24"), try IPPrefix("fd00:10:244:3::/64")]
        n.publicKey = keys.publicKey
        n.sealedPrivateKey = try SealedKey.seal(
            keys.privateKey, to: enrollment.publicKey, nodeName: "node-a", generation: 2)
        n.keyGeneration = 2
        n.keyIssuedAt = RFC3339.parse("2026-11-27T10:00:00Z")
        n.nextPublicKey = next.publicKey
        n.nextSealedPrivateKey = try SealedKey.seal(
            next.privateKey, to: enrollment.publicKey, nodeName: "node-a", generation: 3)
        n.endpoint = try Endpoint("192.0.2.3:51820")
        n.endpointOverride = try Endpoint("[2001:db8::3]:51820")
        n.rotateRequest = "2026-11-27T11:00:00Z-7f3a"
        n.rotateAnswered = "2026-11-27T10:00:00Z-0c21"
        n.enrollmentKey = enrollment.publicKey
        n.appliedKeyGeneration = 2
        n.sealedTo = enrollment.publicKey
        n.acceptEnrollment = enrollment.publicKey.fingerprint
        return n
    }

    func testRoundTripOfEveryField() throws {
        let n = try Self.fullNode()
        var annotations = n.annotations
        XCTAssertEqual(Set(annotations.keys), Set(Annotation.all))
        annotations["kubernetes.io/hostname"] = "node-a"  // others are ignored
        XCTAssertEqual(try MeshNode(name: "node-a", annotations: annotations), n)
        XCTAssertEqual(n.effectiveEndpoint, try Endpoint("[2001:db8::3]:51820"), "the override wins")
        XCTAssertEqual(try MeshNode(name: "fresh", annotations: [:]), MeshNode(name: "fresh"))
    }

    func testEveryMalformedAnnotationIsATypedErrorNamingNodeKeyAndValue() throws {
        let good = try Self.fullNode().annotations
        let bad: [(String, String)] = [
            (Annotation.podCIDRs, "10.244.3.0/33"),
            (Annotation.podCIDRs, "10.244.3.1/24"),
            (Annotation.podCIDRs, "10.244.3.0/24,10.244.4.0/24"),
            (Annotation.podCIDRs, "10.244.3.0/24,"),
            (Annotation.publicKey, "AAAA"),
            (Annotation.sealedPrivateKey, "c2hvcnQ="),
            (Annotation.keyGeneration, "-1"),
            (Annotation.keyGeneration, "two"),
            (Annotation.keyIssuedAt, "yesterday"),
            (Annotation.nextPublicKey, "!!notbase64!!notbase64!!notbase64!!notbase64"),
            (Annotation.nextSealedPrivateKey, "%%%"),
            (Annotation.endpoint, "192.0.2.3"),
            (Annotation.endpointOverride, "fd00::1:51820"),
            (Annotation.sealedTo, "short"),
        ]
        for (key, value) in bad {
            var a = good
            a[key] = value
            XCTAssertThrowsError(try MeshNode(name: "node-a", annotations: a), "\(key)=\(value)") { error in
                guard let e = error as? AnnotationError else { return XCTFail("\(error)") }
                XCTAssertEqual(e.node, "node-a")
                XCTAssertEqual(e.key, key)
                XCTAssertEqual(e.value, value)
                XCTAssertTrue("\(e)".contains("node node-a") && "\(e)".contains(key), "\(e)")
            }
        }
    }

    /// Issue 20, defect 8: an agent's malformed report took its node out of every peer. The agent's values
    /// are read leniently: absent, with the problem named, and the node reads.
    func testAMalformedAgentValueIsAProblemNotAnUnreadableNode() throws {
        let good = try Self.fullNode().annotations
        for (key, value) in [
            (Annotation.enrollmentKey, String(repeating: "A", count: 43) + "B="),
            (Annotation.appliedKeyGeneration, "1.5"),
        ] {
            var a = good
            a[key] = value
            let node = try MeshNode(name: "node-a", annotations: a)
            XCTAssertEqual(node.problems.map(\.key), [key])
            XCTAssertEqual(node.problems.first?.value, value)
            XCTAssertTrue("\(node.problems[0])".contains("stays in the mesh"), "\(node.problems[0])")
            XCTAssertEqual(node.publicKey, try MeshNode(name: "node-a", annotations: good).publicKey, "the rest reads")
            XCTAssertTrue(
                key == Annotation.enrollmentKey ? node.enrollmentKey == nil : node.appliedKeyGeneration == nil)
        }
    }

    func testFieldsThatBelongTogether() throws {
        var a = try Self.fullNode().annotations
        a[Annotation.sealedPrivateKey] = nil
        XCTAssertThrowsError(try MeshNode(name: "node-a", annotations: a)) {
            XCTAssertEqual(($0 as? AnnotationError)?.key, Annotation.publicKey)
        }
        a = try Self.fullNode().annotations
        a[Annotation.nextSealedPrivateKey] = nil
        XCTAssertThrowsError(try MeshNode(name: "node-a", annotations: a)) {
            XCTAssertEqual(($0 as? AnnotationError)?.key, Annotation.nextPublicKey)
        }
        a = try Self.fullNode().annotations
        a[Annotation.nextPublicKey] = a[Annotation.publicKey]
        XCTAssertThrowsError(try MeshNode(name: "node-a", annotations: a))
    }

    func testRFC3339AsKubernetesWritesIt() throws {
        let base = try XCTUnwrap(RFC3339.parse("2026-11-27T10:00:00Z"))
        XCTAssertEqual(RFC3339.parse("2026-11-27T12:00:00+02:00"), base)
        XCTAssertEqual(
            try XCTUnwrap(RFC3339.parse("2026-11-27T10:00:00.250000Z")).timeIntervalSince(base), 0.25, accuracy: 1e-6)
        XCTAssertEqual(RFC3339.format(base), "2026-11-27T10:00:00Z")
        for bad in ["2026-11-27", "2026-13-01T00:00:00Z", "yesterday", "2026-11-27 10:00:00Z"] {
            XCTAssertNil(RFC3339.parse(bad), bad)
        }
    }

    func testLongValuesAreShortenedInMessages() {
        let e = AnnotationError(
            node: "n", key: Annotation.sealedPrivateKey, value: String(repeating: "x", count: 200), reason: "r")
        XCTAssertFalse("\(e)".contains(String(repeating: "x", count: 100)))
    }
}
