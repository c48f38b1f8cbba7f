// FoundationEssentials, not Foundation: no 40 MB ICU to load at every start.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The `wgmesh.dev/` Node annotations: the whole contract between controller and agents.
public enum Annotation {
    public static let prefix = "wgmesh.dev/"
    public static let podCIDRs = prefix + "pod-cidrs"
    public static let publicKey = prefix + "public-key"
    public static let sealedPrivateKey = prefix + "sealed-private-key"
    public static let keyGeneration = prefix + "key-generation"
    public static let keyIssuedAt = prefix + "key-issued-at"
    public static let nextPublicKey = prefix + "next-public-key"
    public static let nextSealedPrivateKey = prefix + "next-sealed-private-key"
    public static let endpoint = prefix + "endpoint"
    public static let endpointOverride = prefix + "endpoint-override"
    /// A rotation request: any token (`wgmesh rotate-keys` writes a time and a random suffix); each new
    /// value is one request, answered once whatever the clocks of its writer and the controller say.
    public static let rotateRequest = prefix + "rotate-request"
    /// The request the controller answered last, written in the same patch that stages the next key.
    public static let rotateAnswered = prefix + "rotate-answered"
    public static let enrollmentKey = prefix + "enrollment-key"
    public static let appliedKeyGeneration = prefix + "applied-key-generation"
    /// The enrollment key the sealed keys are sealed to: when the node publishes a different one, the
    /// controller issues a new keypair.
    public static let sealedTo = prefix + "sealed-to"
    /// Set by an operator to the fingerprint of a node's new enrollment key: under
    /// `--enrollment-change-policy hold`, the controller issues a keypair sealed to that key only then.
    public static let acceptEnrollment = prefix + "accept-enrollment"

    /// Every key of the contract.
    public static let all = [
        podCIDRs, publicKey, sealedPrivateKey, keyGeneration, keyIssuedAt, nextPublicKey,
        nextSealedPrivateKey, endpoint, endpointOverride, rotateRequest, rotateAnswered, enrollmentKey,
        appliedKeyGeneration,
        sealedTo, acceptEnrollment,
    ]
}

/// A Node as wgmesh sees it: its name and its `wgmesh.dev/` annotations, typed and validated.
public struct MeshNode: Sendable, Hashable {
    public var name: String
    /// At most one per IP family.
    public var podCIDRs: [IPPrefix] = []
    public var publicKey: WireGuardKey?
    public var sealedPrivateKey: SealedKey?
    public var keyGeneration: UInt64?
    public var keyIssuedAt: Date?
    public var nextPublicKey: WireGuardKey?
    public var nextSealedPrivateKey: SealedKey?
    public var endpoint: Endpoint?
    public var endpointOverride: Endpoint?
    public var rotateRequest: String?
    public var rotateAnswered: String?
    public var enrollmentKey: WireGuardKey?
    public var appliedKeyGeneration: UInt64?
    public var sealedTo: WireGuardKey?
    public var acceptEnrollment: String?
    /// The node's agent-written values (`enrollment-key`, `applied-key-generation`) that do not read: each is
    /// taken as absent, so that a bad report of one agent never takes its node out of the others' peers.
    public var problems: [AnnotationError] = []
    /// Not annotations, added by the agent from the Peers: the prefixes (tunnel addresses, allowedIPs) of the
    /// outside peers this node is the gateway of, which every other node routes to it.
    public var gatewayPrefixes: [IPPrefix] = []
    /// For an outside peer held by this node (`init(outsidePeer:)`): its keepalive. Nil for a Node.
    public var outsidePeerKeepalive: UInt16?

    public init(name: String) { self.name = name }

    /// An outside peer that the local node holds, as an entry of its plan: the peer's key, its endpoint when
    /// it has one, and its prefixes. Its name (`peer/NAME`) is never a Node's.
    public init(outsidePeer peer: OutsidePeer) {
        name = peer.meshName
        publicKey = peer.publicKey
        endpoint = peer.endpoint
        gatewayPrefixes = peer.prefixes
        // The peer keeps its NAT mapping open with its own keepalives (its configuration has them). A gateway
        // without an endpoint to send to would only try handshakes to nowhere (wireguard-go logs each).
        outsidePeerKeepalive = peer.endpoint == nil ? 0 : peer.persistentKeepalive
    }

    public var isOutsidePeer: Bool { outsidePeerKeepalive != nil }

    /// Every prefix routed to this node or peer: its Pod CIDRs, then the outside peers' it holds.
    public var routedPrefixes: [IPPrefix] { podCIDRs + gatewayPrefixes }

    /// A rotation request the controller has not answered yet.
    public var rotationRequested: Bool { rotateRequest != nil && rotateRequest != rotateAnswered }

    /// The endpoint peers dial: the admin's override wins over the controller's choice.
    public var effectiveEndpoint: Endpoint? { endpointOverride ?? endpoint }

    /// Reads the annotations of Node `name`; any malformed `wgmesh.dev/` value is an error naming it,
    /// and other annotations are ignored.
    public init(name: String, annotations: [String: String]) throws(AnnotationError) {
        self.name = name
        func value(_ key: String) -> String? { annotations[key].flatMap { $0.isEmpty ? nil : $0 } }
        func fail(_ key: String, _ v: String, _ why: String) -> AnnotationError {
            AnnotationError(node: name, key: key, value: v, reason: why)
        }
        func key(_ k: String) throws(AnnotationError) -> WireGuardKey? {
            guard let v = value(k) else { return nil }
            do { return try WireGuardKey(base64: v) } catch { throw fail(k, v, "\(error)") }
        }
        func sealed(_ k: String) throws(AnnotationError) -> SealedKey? {
            guard let v = value(k) else { return nil }
            do { return try SealedKey(base64: v) } catch { throw fail(k, v, "\(error)") }
        }
        func integer(_ k: String) throws(AnnotationError) -> UInt64? {
            guard let v = value(k) else { return nil }
            guard v.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt64(v) else {
                throw fail(k, v, "expected a non-negative decimal integer")
            }
            return n
        }
        func time(_ k: String) throws(AnnotationError) -> Date? {
            guard let v = value(k) else { return nil }
            guard let d = RFC3339.parse(v) else {
                throw fail(k, v, "expected an RFC 3339 time such as 2026-11-27T10:00:00Z")
            }
            return d
        }
        func endpoint(_ k: String) throws(AnnotationError) -> Endpoint? {
            guard let v = value(k) else { return nil }
            do { return try Endpoint(v) } catch { throw fail(k, v, "\(error)") }
        }

        if let v = value(Annotation.podCIDRs) {
            let listed: [IPPrefix]
            do { listed = try IPPrefix.list(v) } catch { throw fail(Annotation.podCIDRs, v, "\(error)") }
            var cidrs: [IPPrefix] = []
            for cidr in listed {
                guard cidr.isCanonical else {
                    throw fail(Annotation.podCIDRs, v, "\(cidr) has host bits set; write \(cidr.canonical)")
                }
                guard !cidrs.contains(where: { $0.family == cidr.family }) else {
                    throw fail(Annotation.podCIDRs, v, "more than one \(cidr.family) CIDR; give one per IP family")
                }
                cidrs.append(cidr)
            }
            podCIDRs = cidrs
        }
        publicKey = try key(Annotation.publicKey)
        sealedPrivateKey = try sealed(Annotation.sealedPrivateKey)
        keyGeneration = try integer(Annotation.keyGeneration)
        keyIssuedAt = try time(Annotation.keyIssuedAt)
        nextPublicKey = try key(Annotation.nextPublicKey)
        nextSealedPrivateKey = try sealed(Annotation.nextSealedPrivateKey)
        self.endpoint = try endpoint(Annotation.endpoint)
        endpointOverride = try endpoint(Annotation.endpointOverride)
        rotateRequest = value(Annotation.rotateRequest)
        rotateAnswered = value(Annotation.rotateAnswered)
        // The agent's own reports: the controller answers a malformed enrollment key with an Event and keeps the
        // node's keys, and the agent publishes its key again; its peers keep routing to it meanwhile.
        do { enrollmentKey = try key(Annotation.enrollmentKey) } catch { problems.append(error) }
        do { appliedKeyGeneration = try integer(Annotation.appliedKeyGeneration) } catch { problems.append(error) }
        sealedTo = try key(Annotation.sealedTo)
        acceptEnrollment = value(Annotation.acceptEnrollment)

        // Fields that only make sense together.
        if (publicKey == nil) != (sealedPrivateKey == nil) || (publicKey != nil && keyGeneration == nil) {
            throw fail(
                Annotation.publicKey, value(Annotation.publicKey) ?? "",
                """
                public-key, sealed-private-key and key-generation must be set together; the controller re-issues \
                the keypair
                """
            )
        }
        if (nextPublicKey == nil) != (nextSealedPrivateKey == nil) {
            throw fail(
                Annotation.nextPublicKey, value(Annotation.nextPublicKey) ?? "",
                "next-public-key and next-sealed-private-key must be set together")
        }
        if let next = nextPublicKey, next == publicKey {
            throw fail(Annotation.nextPublicKey, next.base64, "the next key equals the current key")
        }
    }

    /// The `wgmesh.dev/` annotations that describe this node (absent fields are left out).
    public var annotations: [String: String] {
        var a: [String: String] = [:]
        if !podCIDRs.isEmpty { a[Annotation.podCIDRs] = podCIDRs.map(\.description).joined(separator: ",") }
        a[Annotation.publicKey] = publicKey?.base64
        a[Annotation.sealedPrivateKey] = sealedPrivateKey?.base64
        a[Annotation.keyGeneration] = keyGeneration.map(String.init)
        a[Annotation.keyIssuedAt] = keyIssuedAt.map(RFC3339.format)
        a[Annotation.nextPublicKey] = nextPublicKey?.base64
        a[Annotation.nextSealedPrivateKey] = nextSealedPrivateKey?.base64
        a[Annotation.endpoint] = endpoint?.description
        a[Annotation.endpointOverride] = endpointOverride?.description
        a[Annotation.rotateRequest] = rotateRequest
        a[Annotation.rotateAnswered] = rotateAnswered
        a[Annotation.enrollmentKey] = enrollmentKey?.base64
        a[Annotation.appliedKeyGeneration] = appliedKeyGeneration.map(String.init)
        a[Annotation.sealedTo] = sealedTo?.base64
        a[Annotation.acceptEnrollment] = acceptEnrollment
        return a
    }
}

/// A malformed `wgmesh.dev/` annotation: the node is left out of the mesh until it is fixed.
public struct AnnotationError: Error, Hashable, CustomStringConvertible {
    public var node: String
    public var key: String
    public var value: String
    public var reason: String

    public init(node: String, key: String, value: String, reason: String) {
        self.node = node
        self.key = key
        self.value = value
        self.reason = reason
    }

    /// The value as error messages show it: long ones are cut.
    public var shownValue: String { value.count > 60 ? String(value.prefix(24)) + "…(\(value.count) chars)" : value }

    public var description: String {
        let consequence =
            key == Annotation.podCIDRs
            ? "agents leave the node out of the mesh until it is fixed; every CIDR in it stays reserved for the node"
            : key == Annotation.enrollmentKey || key == Annotation.appliedKeyGeneration
                ? "the node stays in the mesh with the keys it has; its agent writes the value again"
                : "agents leave the node out of the mesh until it is fixed"
        return "node \(node): annotation \(key)=\"\(shownValue)\" is invalid: \(reason); \(consequence)"
    }
}

/// RFC 3339 times as Kubernetes writes them (`2026-11-27T10:00:00Z`, optional fraction and offset).
public enum RFC3339 {
    public static func parse(_ s: String) -> Date? {
        (try? Date.ISO8601FormatStyle().parse(s))
            ?? (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(s))
    }

    /// Seconds precision, UTC, as the API server's own `metav1.Time`.
    public static func format(_ d: Date) -> String {
        Date.ISO8601FormatStyle().format(d)
    }
}

extension StringProtocol {
    /// Without leading and trailing ASCII whitespace.
    var trimmingWhitespace: String {
        let s = Substring(self)
        let u = s.utf8
        func space(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0d || c == 0x0a }
        var start = u.startIndex
        var end = u.endIndex
        while start < end, space(u[start]) { start = u.index(after: start) }
        while end > start, space(u[u.index(before: end)]) { end = u.index(before: end) }
        return String(s[start..<end])
    }
}
