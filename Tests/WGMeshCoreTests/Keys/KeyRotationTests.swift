import XCTest
import WGMeshCore

final class KeyRotationTests: XCTestCase {
    let issued = RFC3339.parse("2026-11-27T10:00:00Z")!

    func at(_ seconds: TimeInterval) -> Date { issued.addingTimeInterval(seconds) }

    func testRequestedRotationGoesThroughBothPhasesWithGrace() {
        let policy = KeyRotation.Policy(grace: 10)
        XCTAssertEqual(
            KeyRotation.next(phase: .idle, issuedAt: issued, request: nil, now: at(5), policy: policy),
            .wait(until: nil))
        guard case .stage = KeyRotation.next(phase: .idle, issuedAt: issued, request: "r1", now: at(61), policy: policy)
        else {
            return XCTFail("a pending request stages the next key")
        }
        let staged = KeyRotation.Phase.staged(since: at(62))
        XCTAssertEqual(
            KeyRotation.next(phase: staged, issuedAt: issued, request: nil, now: at(65), policy: policy),
            .wait(until: at(72)))
        XCTAssertEqual(
            KeyRotation.next(phase: staged, issuedAt: issued, request: nil, now: at(72), policy: policy), .switchKeys)
        XCTAssertEqual(
            KeyRotation.next(phase: staged, issuedAt: issued, request: "r2", now: at(65), policy: policy),
            .wait(until: at(72)),
            "a request during a rotation waits for it to end")
        XCTAssertEqual(
            KeyRotation.next(phase: .idle, issuedAt: at(72), request: nil, now: at(80), policy: policy),
            .wait(until: nil))
    }

    func testMaxKeyAgeTriggersRotation() {
        let policy = KeyRotation.Policy(grace: 10, maxKeyAge: 3600)
        XCTAssertEqual(
            KeyRotation.next(phase: .idle, issuedAt: issued, request: nil, now: at(100), policy: policy),
            .wait(until: at(3600)))
        guard
            case .stage(let reason) = KeyRotation.next(
                phase: .idle, issuedAt: issued, request: nil, now: at(3600), policy: policy)
        else {
            return XCTFail("an old key is rotated")
        }
        XCTAssertTrue(reason.contains("older than 3600"))
    }

    func testLostStagingTimeRestartsTheGrace() {
        XCTAssertEqual(
            KeyRotation.next(phase: .staged(since: nil), issuedAt: issued, request: nil, now: at(1), policy: .init()),
            .restartGrace)
        var n = MeshNode(name: "a")
        XCTAssertEqual(KeyRotation.phase(of: n, stagedAt: nil), .idle)
        n.nextPublicKey = WireGuardKeyPair.generate().publicKey
        XCTAssertEqual(KeyRotation.phase(of: n, stagedAt: at(3)), .staged(since: at(3)))
    }
}
