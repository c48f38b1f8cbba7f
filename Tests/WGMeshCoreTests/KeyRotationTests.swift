import XCTest
import WGMeshCore

final class KeyRotationTests: XCTestCase {
    let issued = RFC3339.parse("2026-11-27T10:00:00Z")!

    func at(_ seconds: TimeInterval) -> Date { issued.addingTimeInterval(seconds) }

    func testRequestedRotationGoesThroughBothPhasesWithGrace() {
        let policy = KeyRotation.Policy(grace: 10)
        XCTAssertEqual(KeyRotation.next(phase: .idle, issuedAt: issued, rotateRequestedAt: nil, now: at(5), policy: policy), .wait(until: nil))
        XCTAssertEqual(KeyRotation.next(phase: .idle, issuedAt: issued, rotateRequestedAt: at(-1), now: at(5), policy: policy), .wait(until: nil),
                       "a request older than the key was answered already")
        guard case .stage = KeyRotation.next(phase: .idle, issuedAt: issued, rotateRequestedAt: at(60), now: at(61), policy: policy) else {
            return XCTFail("a newer request stages the next key")
        }
        let staged = KeyRotation.Phase.staged(since: at(62))
        XCTAssertEqual(KeyRotation.next(phase: staged, issuedAt: issued, rotateRequestedAt: at(60), now: at(65), policy: policy), .wait(until: at(72)))
        XCTAssertEqual(KeyRotation.next(phase: staged, issuedAt: issued, rotateRequestedAt: at(60), now: at(72), policy: policy), .switchKeys)
        // After the switch the key is newer than the request: back to idle, nothing more to do.
        XCTAssertEqual(KeyRotation.next(phase: .idle, issuedAt: at(72), rotateRequestedAt: at(60), now: at(80), policy: policy), .wait(until: nil))
    }

    func testMaxKeyAgeTriggersRotation() {
        let policy = KeyRotation.Policy(grace: 10, maxKeyAge: 3600)
        XCTAssertEqual(KeyRotation.next(phase: .idle, issuedAt: issued, rotateRequestedAt: nil, now: at(100), policy: policy), .wait(until: at(3600)))
        guard case .stage(let reason) = KeyRotation.next(phase: .idle, issuedAt: issued, rotateRequestedAt: nil, now: at(3600), policy: policy) else {
            return XCTFail("an old key is rotated")
        }
        XCTAssertTrue(reason.contains("older than 3600"))
    }

    func testLostStagingTimeRestartsTheGrace() {
        XCTAssertEqual(KeyRotation.next(phase: .staged(since: nil), issuedAt: issued, rotateRequestedAt: nil, now: at(1), policy: .init()), .restartGrace)
        var n = MeshNode(name: "a")
        XCTAssertEqual(KeyRotation.phase(of: n, stagedAt: nil), .idle)
        n.nextPublicKey = WireGuardKeyPair.generate().publicKey
        XCTAssertEqual(KeyRotation.phase(of: n, stagedAt: at(3)), .staged(since: at(3)))
    }
}
