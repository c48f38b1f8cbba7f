import XCTest
import WGMeshCore

final class NodeKeysTests: XCTestCase {
    let enrollment = WireGuardKeyPair.generate()
    let current = WireGuardKeyPair.generate()
    let next = WireGuardKeyPair.generate()

    /// Node `node-a` as the controller leaves it: generation 3 sealed to `enrollment`, optionally with generation 4
    /// staged.
    func issued(staged: Bool = false, sealedFor name: String = "node-a", generation: UInt64 = 3) throws -> MeshNode {
        var n = MeshNode(name: "node-a")
        n.publicKey = current.publicKey
        n.sealedPrivateKey = try SealedKey.seal(
            current.privateKey, to: enrollment.publicKey, nodeName: name, generation: generation)
        n.keyGeneration = 3
        n.sealedTo = enrollment.publicKey
        n.enrollmentKey = enrollment.publicKey
        if staged {
            n.nextPublicKey = next.publicKey
            n.nextSealedPrivateKey = try SealedKey.seal(
                next.privateKey, to: enrollment.publicKey, nodeName: "node-a", generation: 4)
        }
        return n
    }

    func error(_ node: MeshNode, _ key: WireGuardKey? = nil) -> NodeKeyError? {
        do {
            _ = try NodeKeys.open(node, enrollmentPrivateKey: key ?? enrollment.privateKey)
            XCTFail("opened keys that should not open")
            return nil
        } catch {
            return error
        }
    }

    func testGoodKeysOpen() throws {
        XCTAssertEqual(
            try NodeKeys.open(issued(), enrollmentPrivateKey: enrollment.privateKey),
            NodeKeys(privateKey: current.privateKey, generation: 3))
        // Through the annotations, as the agent reads them.
        let read = try MeshNode(name: "node-a", annotations: issued(staged: true).annotations)
        XCTAssertEqual(
            try NodeKeys.open(read, enrollmentPrivateKey: enrollment.privateKey),
            NodeKeys(privateKey: current.privateKey, generation: 3, nextPrivateKey: next.privateKey))
    }

    func testNotIssuedForThisEnrollmentKeyIsNil() throws {
        XCTAssertNil(
            try NodeKeys.open(MeshNode(name: "node-a"), enrollmentPrivateKey: enrollment.privateKey), "no keys yet")
        var moved = try issued()
        moved.sealedTo = WireGuardKeyPair.generate().publicKey
        XCTAssertNil(
            try NodeKeys.open(moved, enrollmentPrivateKey: enrollment.privateKey), "sealed to another enrollment key")
        var unknown = try issued()
        unknown.sealedTo = nil
        XCTAssertNil(
            try NodeKeys.open(unknown, enrollmentPrivateKey: enrollment.privateKey),
            "the controller re-issues a key sealed to nothing known")
        // The agent lost its enrollment key and made a new one: the old keys are not for it.
        XCTAssertNil(try NodeKeys.open(issued(), enrollmentPrivateKey: WireGuardKeyPair.generate().privateKey))
    }

    func testABoxSealedToAnotherKeyNodeOrGenerationIsAnError() throws {
        var foreign = try issued()
        foreign.sealedPrivateKey = try SealedKey.seal(
            current.privateKey, to: WireGuardKeyPair.generate().publicKey, nodeName: "node-a", generation: 3)
        XCTAssertEqual(
            error(foreign),
            NodeKeyError(node: "node-a", annotation: Annotation.sealedPrivateKey, generation: 3, problem: .cannotOpen))
        XCTAssertEqual(
            error(try issued(sealedFor: "node-b")),
            NodeKeyError(node: "node-a", annotation: Annotation.sealedPrivateKey, generation: 3, problem: .cannotOpen))
        XCTAssertEqual(
            error(try issued(generation: 2)),
            NodeKeyError(node: "node-a", annotation: Annotation.sealedPrivateKey, generation: 3, problem: .cannotOpen))
    }

    func testASwappedPublicKeyIsAnError() throws {
        var swapped = try issued()
        swapped.publicKey = WireGuardKeyPair.generate().publicKey
        XCTAssertEqual(
            error(swapped),
            NodeKeyError(
                node: "node-a", annotation: Annotation.sealedPrivateKey, generation: 3,
                problem: .publicKeyMismatch(Annotation.publicKey)))
        var swappedNext = try issued(staged: true)
        swappedNext.nextPublicKey = WireGuardKeyPair.generate().publicKey
        XCTAssertEqual(
            error(swappedNext),
            NodeKeyError(
                node: "node-a", annotation: Annotation.nextSealedPrivateKey, generation: 4,
                problem: .publicKeyMismatch(Annotation.nextPublicKey)))
    }

    func testTheNextKeyMustBeSealedForTheNextGeneration() throws {
        var sameGeneration = try issued(staged: true)
        sameGeneration.nextSealedPrivateKey = try SealedKey.seal(
            next.privateKey, to: enrollment.publicKey, nodeName: "node-a", generation: 3)
        XCTAssertEqual(
            error(sameGeneration),
            NodeKeyError(
                node: "node-a", annotation: Annotation.nextSealedPrivateKey, generation: 4, problem: .cannotOpen))
        var last = try issued(staged: true)
        last.keyGeneration = .max
        last.sealedPrivateKey = try SealedKey.seal(
            current.privateKey, to: enrollment.publicKey, nodeName: "node-a", generation: .max)
        XCTAssertEqual(error(last)?.annotation, Annotation.nextSealedPrivateKey, "no generation follows the last one")
    }

    func testErrorsSayWhatHappensAndNeverCarryKeys() throws {
        var foreign = try issued(staged: true)
        foreign.nextSealedPrivateKey = try SealedKey.seal(
            next.privateKey, to: WireGuardKeyPair.generate().publicKey, nodeName: "node-a", generation: 4)
        var swapped = try issued(staged: true)
        swapped.publicKey = next.publicKey
        var swappedNext = try issued(staged: true)
        swappedNext.nextPublicKey = current.publicKey
        let errors = [
            error(foreign), error(swapped), error(swappedNext), error(try issued(sealedFor: "node-b")),
            error(try issued(generation: 9)),
        ].compactMap { $0 }
        XCTAssertEqual(errors.count, 5)
        let secrets = [enrollment.privateKey, current.privateKey, next.privateKey]
        let publics = [enrollment.publicKey, current.publicKey, next.publicKey]
        for e in errors {
            let text = e.description
            XCTAssertTrue(text.hasPrefix("node node-a: cannot use wgmesh.dev/"), text)
            XCTAssertTrue(text.contains("of key generation \(e.generation)"), text)
            XCTAssertTrue(text.contains("the interface is left untouched"), text)
            for key in secrets + publics {
                XCTAssertFalse(text.contains(key.base64), text)
                XCTAssertFalse(text.contains(key.base64.prefix(8)), text)
            }
        }
        XCTAssertEqual(
            errors[0].description,
            """
            node node-a: cannot use wgmesh.dev/next-sealed-private-key of key generation 4: it does not open with \
            this node's enrollment key: it was sealed for another node, generation or enrollment key, or altered; \
            the interface is left untouched. To get a new keypair, remove the enrollment key file under \
            /var/lib/wgmesh on the node and restart the agent: it publishes a new enrollment key, and the \
            controller issues a keypair sealed to it
            """
        )
        XCTAssertTrue(
            errors[2].description.contains("the key it holds is not the private half of wgmesh.dev/next-public-key"),
            errors[2].description)
    }
}
