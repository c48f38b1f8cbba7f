import XCTest
import WGMeshCore

final class SealedKeyTests: XCTestCase {
    let enrollment = WireGuardKeyPair.generate()
    let issued = WireGuardKeyPair.generate()

    func sealed(node: String = "node-a", generation: UInt64 = 3) throws -> SealedKey {
        try SealedKey.seal(issued.privateKey, to: enrollment.publicKey, nodeName: node, generation: generation)
    }

    func testRoundTripAndFormat() throws {
        let box = try sealed()
        XCTAssertEqual(box.bytes.count, 9 + 32 + 48)
        XCTAssertEqual(Array(box.bytes[0..<9]), [1, 0x00, 0x20, 0x00, 0x01, 0x00, 0x03, 0x00, 32])
        XCTAssertEqual(try SealedKey(base64: box.base64), box)
        XCTAssertEqual(try box.open(with: enrollment.privateKey, nodeName: "node-a", generation: 3), issued.privateKey)
        XCTAssertNotEqual(try sealed().bytes, box.bytes, "each seal uses a fresh ephemeral key")
        XCTAssertFalse(box.base64.contains(issued.privateKey.base64))
    }

    func testWrongKeyNodeOrGenerationFails() throws {
        let box = try sealed()
        let other = WireGuardKeyPair.generate()
        XCTAssertThrowsError(try box.open(with: other.privateKey, nodeName: "node-a", generation: 3)) {
            XCTAssertEqual($0 as? SealError, .cannotOpen(nodeName: "node-a", generation: 3))
        }
        XCTAssertThrowsError(try box.open(with: enrollment.privateKey, nodeName: "node-b", generation: 3))
        XCTAssertThrowsError(try box.open(with: enrollment.privateKey, nodeName: "node-a", generation: 4))
    }

    func testEveryFlippedBitIsDetected() throws {
        let box = try sealed()
        for i in 0..<box.bytes.count {
            for bit in [0, 7] {
                var b = box.bytes
                b[i] ^= UInt8(1 << bit)
                // Either the framing rejects it, or opening does.
                if let altered = try? SealedKey(bytes: b) {
                    XCTAssertThrowsError(
                        try altered.open(with: enrollment.privateKey, nodeName: "node-a", generation: 3),
                        "byte \(i) bit \(bit)")
                }
            }
        }
    }

    func testTruncatedAndForeignFormatsAreRejected() throws {
        let box = try sealed()
        XCTAssertThrowsError(try SealedKey(bytes: Array(box.bytes.dropLast()))) {
            XCTAssertEqual($0 as? SealError, .truncated(88))
        }
        XCTAssertThrowsError(try SealedKey(bytes: [1, 0])) { XCTAssertEqual($0 as? SealError, .truncated(2)) }
        var v2 = box.bytes
        v2[0] = 2
        XCTAssertThrowsError(try SealedKey(bytes: v2)) { XCTAssertEqual($0 as? SealError, .unsupportedVersion(2)) }
        var xwing = box.bytes
        xwing[1] = 0x64
        xwing[2] = 0x7a
        XCTAssertThrowsError(try SealedKey(bytes: xwing)) { error in
            XCTAssertTrue("\(error)".contains("KEM 0x647a"), "\(error)")
        }
        XCTAssertThrowsError(try SealedKey(base64: "not base64!")) {
            XCTAssertEqual($0 as? SealError, .malformedBase64)
        }
    }

    func testLowOrderEnrollmentKeysAreRefused() throws {
        // X25519 points of small order: every shared secret with them is all zeros, so a key sealed to
        // one would be readable by anyone.
        let lowOrder = [
            String(repeating: "00", count: 32),
            "01" + String(repeating: "00", count: 31),
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        ]
        let secret = WireGuardKeyPair.generate().privateKey
        for point in lowOrder {
            XCTAssertThrowsError(
                try SealedKey.seal(secret, to: try WireGuardKey(bytes: hex(point)), nodeName: "n", generation: 1), point
            ) {
                XCTAssertEqual($0 as? SealError, .badEnrollmentKey)
            }
        }
    }
}
