import Crypto
// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A 32-byte WireGuard (Curve25519) key, public or private; base64 in and out.
public struct WireGuardKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Length of every WireGuard key in bytes.
    public static let byteCount = 32
    public let bytes: [UInt8]

    /// A key from exactly 32 raw bytes.
    public init(bytes: some Collection<UInt8>) throws(KeyError) {
        guard bytes.count == Self.byteCount else { throw .wrongLength(bytes.count) }
        self.bytes = Array(bytes)
    }

    /// A key from standard base64 (44 characters with one `=`), as `wg` prints it; only the canonical
    /// encoding is accepted (the last character's two spare bits must be zero).
    public init(base64 text: some StringProtocol) throws(KeyError) {
        try self.init(base64UTF8: Substring(text).utf8)
    }

    /// `init(base64:)` on ASCII bytes; a String is made only for an error message.
    public init(base64UTF8 text: some BidirectionalCollection<UInt8>) throws(KeyError) {
        guard let bytes = WireGuardKey.decodeBase64(text) else {
            throw .malformedBase64(WireGuardKey.redact(String(decoding: text, as: UTF8.self)))
        }
        try self.init(bytes: bytes)
    }

    static func decodeBase64<C: BidirectionalCollection<UInt8>>(_ text: C) -> [UInt8]? {
        guard text.count == 44, text.last == UInt8(ascii: "=") else { return nil }
        var acc: UInt32 = 0
        var bits = 0
        var valid = true
        let out = [UInt8](unsafeUninitializedCapacity: byteCount) { out, count in
            for c in text.dropLast() {
                let v = base64Values[Int(c)]
                valid = valid && v < 64
                acc = (acc << 6 | UInt32(v & 63)) & 0x3fff
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    out[count] = UInt8(truncatingIfNeeded: acc >> bits)
                    count += 1
                }
            }
        }
        // The last character's spare bits must be zero: only the canonical encoding of a key is accepted.
        guard valid, acc & ((1 << bits) - 1) == 0 else { return nil }
        return out
    }

    /// Each byte's value in standard base64, or 0xff for a byte that is not in its alphabet.
    private static let base64Values: [UInt8] = {
        var table = [UInt8](repeating: 0xff, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() {
            table[Int(c)] = UInt8(i)
        }
        return table
    }()

    /// The all-zero key, which the kernel reads as "no key".
    public static let zero = try! WireGuardKey(bytes: [UInt8](repeating: 0, count: byteCount))

    /// `SHA256:` and the unpadded base64 of the key's SHA-256, as OpenSSH shows keys: what people compare
    /// and type (`wgmesh.dev/accept-enrollment`); it tells nothing about a private key.
    public var fingerprint: String {
        "SHA256:" + (try! WireGuardKey(bytes: Array(SHA256.hash(data: bytes)))).base64.dropLast()
    }

    public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }

    public var base64: String { Data(bytes).base64EncodedString() }
    public var description: String { base64 }

    public static func < (a: WireGuardKey, b: WireGuardKey) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

    /// For error messages: never echo what may be a private key in full.
    static func redact(_ s: String) -> String { s.count <= 8 ? s : String(s.prefix(4)) + "…(\(s.count) chars)" }
}

/// A WireGuard private key and its public key.
public struct WireGuardKeyPair: Sendable {
    public let privateKey: WireGuardKey
    public let publicKey: WireGuardKey

    /// A fresh random keypair.
    public static func generate() -> WireGuardKeyPair {
        let priv = Curve25519.KeyAgreement.PrivateKey()
        return try! WireGuardKeyPair(privateKey: WireGuardKey(bytes: priv.rawRepresentation))
    }

    /// The keypair for a given private key (its public key derived).
    public init(privateKey: WireGuardKey) throws(KeyError) {
        self.privateKey = privateKey
        self.publicKey = try WireGuardKeyPair.publicKey(for: privateKey)
    }

    /// The public key of a private key, as `wg pubkey` computes it (clamping included).
    public static func publicKey(for privateKey: WireGuardKey) throws(KeyError) -> WireGuardKey {
        do {
            let priv = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: privateKey.bytes)
            return try WireGuardKey(bytes: priv.publicKey.rawRepresentation)
        } catch {
            throw .notACurve25519Key
        }
    }
}

/// Why a key was rejected.
public enum KeyError: Error, Equatable, CustomStringConvertible {
    case wrongLength(Int)
    case malformedBase64(String)
    case notACurve25519Key

    public var description: String {
        switch self {
        case .wrongLength(let n):
            return
                """
                a WireGuard key is 32 bytes, this one is \(n): generate one with `wg genkey` (or `wg pubkey` for \
                the public half)
                """
        case .malformedBase64(let s):
            return
                """
                \"\(s)\" is not a base64 WireGuard key: expected 44 characters of standard base64 ending in \
                \"=\", as `wg genkey` prints
                """
        case .notACurve25519Key:
            return "the key is not a valid Curve25519 private key"
        }
    }
}
