import Crypto
// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A WireGuard private key sealed to one node's enrollment key with HPKE (RFC 9180, base mode).
///
/// Byte format, version 1 (all integers big-endian):
///
///     offset  size  field
///     0       1     format version (1)
///     1       2     HPKE KEM id   (0x0020 DHKEM(X25519, HKDF-SHA256))
///     3       2     HPKE KDF id   (0x0001 HKDF-SHA256)
///     5       2     HPKE AEAD id  (0x0003 ChaCha20-Poly1305)
///     7       2     length E of the encapsulated key
///     9       E     encapsulated key (32 bytes for X25519)
///     9+E     rest  ciphertext: the 32-byte key and the 16-byte tag
///
/// The first 9 bytes are also the AEAD's associated data, so the header cannot be altered, and the
/// HPKE `info` binds the node name and the key generation, so a sealed key opens only for the node and
/// generation it was made for. The suite ids leave room for a post-quantum KEM (X-Wing) later.
public struct SealedKey: Sendable, Hashable, CustomStringConvertible {
    public static let formatVersion: UInt8 = 1
    /// The one ciphersuite of format version 1.
    static let suite = (kem: UInt16(0x0020), kdf: UInt16(0x0001), aead: UInt16(0x0003))
    static let headerSize = 9

    public let bytes: [UInt8]

    /// Parses and checks the framing of a sealed key; the contents are checked only by `open`.
    public init(bytes: [UInt8]) throws(SealError) {
        guard bytes.count >= Self.headerSize else { throw .truncated(bytes.count) }
        guard bytes[0] == Self.formatVersion else { throw .unsupportedVersion(bytes[0]) }
        let kem = UInt16(bytes[1]) << 8 | UInt16(bytes[2])
        let kdf = UInt16(bytes[3]) << 8 | UInt16(bytes[4])
        let aead = UInt16(bytes[5]) << 8 | UInt16(bytes[6])
        guard (kem, kdf, aead) == Self.suite else { throw .unsupportedSuite(kem: kem, kdf: kdf, aead: aead) }
        let encLength = Int(bytes[7]) << 8 | Int(bytes[8])
        guard encLength == 32, bytes.count == Self.headerSize + encLength + WireGuardKey.byteCount + 16 else {
            throw .truncated(bytes.count)
        }
        self.bytes = bytes
    }

    public init(base64 text: String) throws(SealError) {
        guard let data = Data(base64Encoded: text) else { throw .malformedBase64 }
        try self.init(bytes: Array(data))
    }

    public var base64: String { Data(bytes).base64EncodedString() }
    public var description: String { "SealedKey(v\(bytes[0]), \(bytes.count) bytes)" }

    /// The HPKE `info`: a label, the node name and the generation, so a box cannot move between them.
    static func info(nodeName: String, generation: UInt64) -> Data {
        Data("wgmesh.dev sealed-private-key v1".utf8) + [0] + Data(nodeName.utf8) + [0] + Data(String(generation).utf8)
    }

    /// Seals `privateKey` so that only the holder of `enrollmentKey`'s private half, as node `nodeName`
    /// and for key generation `generation`, can open it.
    public static func seal(
        _ privateKey: WireGuardKey, to enrollmentKey: WireGuardKey, nodeName: String, generation: UInt64
    ) throws(SealError) -> SealedKey {
        do {
            let recipient = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: enrollmentKey.bytes)
            // RFC 9180 7.1.4: a low-order point gives an all-zero shared secret, which anyone can
            // compute; swift-crypto's HPKE does not refuse it, so refuse it here.
            let probe = try Curve25519.KeyAgreement.PrivateKey().sharedSecretFromKeyAgreement(with: recipient)
            guard probe.withUnsafeBytes({ $0.contains { $0 != 0 } }) else { throw SealError.badEnrollmentKey }
            var sender = try HPKE.Sender(
                recipientKey: recipient, ciphersuite: .Curve25519_SHA256_ChachaPoly,
                info: info(nodeName: nodeName, generation: generation))
            let enc = Array(sender.encapsulatedKey)
            var out: [UInt8] = [formatVersion]
            for id in [suite.kem, suite.kdf, suite.aead, UInt16(enc.count)] {
                out += [UInt8(id >> 8), UInt8(id & 0xff)]
            }
            let header = out
            out += enc
            out += try sender.seal(privateKey.bytes, authenticating: header)
            return try SealedKey(bytes: out)
        } catch let e as SealError {
            throw e
        } catch {
            throw .badEnrollmentKey
        }
    }

    /// Opens the box with the node's enrollment private key; fails unless node name and generation match.
    public func open(with enrollmentPrivateKey: WireGuardKey, nodeName: String, generation: UInt64) throws(SealError)
        -> WireGuardKey
    {
        let enc = bytes[Self.headerSize..<(Self.headerSize + 32)]
        let ciphertext = bytes[(Self.headerSize + 32)...]
        do {
            let key = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: enrollmentPrivateKey.bytes)
            var recipient = try HPKE.Recipient(
                privateKey: key, ciphersuite: .Curve25519_SHA256_ChachaPoly,
                info: Self.info(nodeName: nodeName, generation: generation), encapsulatedKey: Data(enc))
            let plain = try recipient.open(ciphertext, authenticating: bytes[..<Self.headerSize])
            return try WireGuardKey(bytes: plain)
        } catch {
            throw .cannotOpen(nodeName: nodeName, generation: generation)
        }
    }
}

/// Why sealing or opening a private key failed.
public enum SealError: Error, Equatable, CustomStringConvertible {
    case truncated(Int)
    case malformedBase64
    case unsupportedVersion(UInt8)
    case unsupportedSuite(kem: UInt16, kdf: UInt16, aead: UInt16)
    case badEnrollmentKey
    case cannotOpen(nodeName: String, generation: UInt64)

    public var description: String {
        switch self {
        case .truncated(let n):
            return
                """
                a sealed key of \(n) bytes has the wrong length for format version 1 (89 bytes): it was truncated \
                or altered
                """
        case .malformedBase64: return "the sealed key is not base64"
        case .unsupportedVersion(let v):
            return "sealed key format version \(v) is not supported by this wgmesh (it reads version 1): upgrade wgmesh"
        case .unsupportedSuite(let k, let d, let a):
            return
                """
                sealed key ciphersuite KEM 0x\(String(k, radix: 16)) KDF 0x\(String(d, radix: 16)) AEAD \
                0x\(String(a, radix: 16)) is not supported: only X25519/HKDF-SHA256/ChaCha20-Poly1305
                """
        case .badEnrollmentKey:
            return "the enrollment key is not a valid X25519 public key: the node must publish a new one"
        case .cannotOpen(let node, let gen):
            return
                """
                cannot open the sealed private key for node \(node), generation \(gen): it was sealed to another \
                enrollment key, node or generation, or altered; the controller will issue a new one when the node \
                publishes its enrollment key again
                """
        }
    }
}
