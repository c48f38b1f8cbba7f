/// Metadata every Kubernetes object carries (`metav1.ObjectMeta`); read from the object's JSON.
public struct ObjectMeta: Sendable, Hashable {
    public var name: String
    public var namespace: String?
    public var uid: String?
    /// Opaque: compare for equality only, never order (API conventions).
    public var resourceVersion: String?
    public var generation: Int64?
    public var creationTimestamp: String?
    public var deletionTimestamp: String?
    public var labels: [String: String]
    public var annotations: [String: String]

    public init(_ json: JSON?) {
        name = json?["name"]?.string ?? ""
        namespace = json?["namespace"]?.string
        uid = json?["uid"]?.string
        resourceVersion = json?["resourceVersion"]?.string
        generation = json?["generation"]?.int
        creationTimestamp = json?["creationTimestamp"]?.string
        deletionTimestamp = json?["deletionTimestamp"]?.string
        labels = json?["labels"]?.stringMap ?? [:]
        annotations = json?["annotations"]?.stringMap ?? [:]
    }
}

/// Any Kubernetes object, full or metadata-only (`PartialObjectMetadata`), kept whole as JSON.
public struct KubeObject: Sendable, Hashable {
    public var json: JSON

    public init(json: JSON) throws(KubeDecodingError) {
        guard case .object = json else { throw .notAnObject(json.description.prefix(80).description) }
        self.json = json
    }

    public var kind: String? { json["kind"]?.string }
    public var apiVersion: String? { json["apiVersion"]?.string }
    public var metadata: ObjectMeta { ObjectMeta(json["metadata"]) }

    /// The field manager that last wrote annotation `key`, from `metadata.managedFields` (the API server
    /// records one per field; nil when the object carries none).
    public func manager(ofAnnotation key: String) -> String? {
        for entry in json["metadata"]?["managedFields"]?.array ?? []
        where entry["fieldsV1"]?["f:metadata"]?["f:annotations"]?["f:" + key] != nil {
            return entry["manager"]?.string
        }
        return nil
    }
}

/// A typed view of a Node: what wgmesh reads from it.
public struct Node: Sendable, Hashable {
    public struct Address: Sendable, Hashable {
        /// `InternalIP`, `ExternalIP`, `Hostname`, …
        public var type: String
        public var address: String
    }

    public struct Condition: Sendable, Hashable {
        public var type: String
        /// `True`, `False` or `Unknown`.
        public var status: String
        public var reason: String?
        public var message: String?
        public var lastTransitionTime: String?
    }

    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }

    public var metadata: ObjectMeta { object.metadata }
    /// `spec.podCIDRs`, or the older single `spec.podCIDR`.
    public var podCIDRs: [String] {
        let spec = object.json["spec"]
        if let list = spec?["podCIDRs"]?.array?.compactMap(\.string), !list.isEmpty { return list }
        return spec?["podCIDR"]?.string.map { [$0] } ?? []
    }
    public var addresses: [Address] {
        object.json["status"]?["addresses"]?.array?.compactMap { a in
            guard let t = a["type"]?.string, let v = a["address"]?.string else { return nil }
            return Address(type: t, address: v)
        } ?? []
    }
    public var conditions: [Condition] { Condition.list(object.json["status"]?["conditions"]) }
}

extension Node.Condition {
    /// The conditions of a `status.conditions` list (any kind's); entries without type or status are skipped.
    static func list(_ json: JSON?) -> [Node.Condition] {
        json?.array?.compactMap { c in
            guard let t = c["type"]?.string, let s = c["status"]?.string else { return nil }
            return Node.Condition(
                type: t, status: s, reason: c["reason"]?.string, message: c["message"]?.string,
                lastTransitionTime: c["lastTransitionTime"]?.string)
        } ?? []
    }
}

/// A typed view of a wgmesh.dev/v1alpha1 Peer (manifests/peer-crd.yaml): its fields as the API holds them,
/// unvalidated (WGMeshCore's `OutsidePeer` reads them).
public struct Peer: Sendable, Hashable {
    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }

    public var metadata: ObjectMeta { object.metadata }
    var spec: JSON? { object.json["spec"] }
    var status: JSON? { object.json["status"] }
    public var publicKey: String? { spec?["publicKey"]?.string }
    public var endpoint: String? { spec?["endpoint"]?.string }
    public var persistentKeepalive: Int64? { spec?["persistentKeepalive"]?.int }
    public var allowedIPs: [String] { spec?["allowedIPs"]?.array?.compactMap(\.string) ?? [] }
    public var expiresAt: String? { spec?["expiresAt"]?.string }
    public var addresses: [String] { status?["addresses"]?.array?.compactMap(\.string) ?? [] }
    public var gateway: String? { status?["gateway"]?.string }
    public var lastHandshakeTime: String? { status?["lastHandshakeTime"]?.string }
    public var conditions: [Node.Condition] { Node.Condition.list(status?["conditions"]) }
}

/// A typed view of a coordination.k8s.io/v1 Lease.
public struct Lease: Sendable, Hashable {
    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }

    public var metadata: ObjectMeta { object.metadata }
    var spec: JSON? { object.json["spec"] }
    public var holderIdentity: String? { spec?["holderIdentity"]?.string }
    public var leaseDurationSeconds: Int64? { spec?["leaseDurationSeconds"]?.int }
    /// RFC 3339 with microseconds (`metav1.MicroTime`).
    public var acquireTime: String? { spec?["acquireTime"]?.string }
    public var renewTime: String? { spec?["renewTime"]?.string }
    public var leaseTransitions: Int64? { spec?["leaseTransitions"]?.int }
}

/// The API's `Status` body: how every failure is reported (409, 410, 404, 422, …).
public struct Status: Sendable, Hashable, Error, CustomStringConvertible {
    public struct Cause: Sendable, Hashable {
        public var reason: String?
        public var message: String?
        public var field: String?
    }

    public var code: Int
    /// `Success` or `Failure`.
    public var status: String?
    /// `NotFound`, `Conflict`, `AlreadyExists`, `Expired`, `Invalid`, …
    public var reason: String?
    public var message: String?
    public var causes: [Cause]
    /// `details` as sent: name, group, kind, causes.
    public var details: JSON?

    /// A failure the server did not describe with a Status body (a proxy's 502 page, say).
    public init(code: Int, reason: String?, message: String?) {
        self.code = code
        status = "Failure"
        self.reason = reason
        self.message = message
        causes = []
    }

    /// The Status as the API sends it.
    public var json: JSON {
        var body: [String: JSON] = [
            "kind": "Status", "apiVersion": "v1", "metadata": .object([:]), "code": .integer(Int64(code)),
        ]
        body["status"] = status.map(JSON.string)
        body["reason"] = reason.map(JSON.string)
        body["message"] = message.map(JSON.string)
        body["details"] = details
        return .object(body)
    }

    public init(json: JSON) throws(KubeDecodingError) {
        guard json["kind"]?.string == "Status" else {
            throw .unexpectedKind(expected: "Status", got: json["kind"]?.string)
        }
        code = Int(json["code"]?.int ?? 0)
        status = json["status"]?.string
        reason = json["reason"]?.string
        message = json["message"]?.string
        details = json["details"]
        causes =
            json["details"]?["causes"]?.array?.map {
                Cause(reason: $0["reason"]?.string, message: $0["message"]?.string, field: $0["field"]?.string)
            } ?? []
    }

    public var description: String {
        var s = "\(code) \(reason ?? "")"
        if let message { s += ": \(message)" }
        for c in causes { s += "; \(c.field ?? "?"): \(c.message ?? c.reason ?? "")" }
        return s
    }
}

/// `metav1.ListMeta` and the items of a list.
public struct ObjectList: Sendable, Hashable {
    public var kind: String?
    public var resourceVersion: String?
    /// Non-empty when more pages follow; pass it as `continue` with the same `limit`.
    public var continueToken: String?
    public var remainingItemCount: Int64?
    public var items: [KubeObject]

    public init(json: JSON) throws(KubeDecodingError) {
        guard let items = json["items"]?.array else { throw .missingField("items") }
        kind = json["kind"]?.string
        let meta = json["metadata"]
        resourceVersion = meta?["resourceVersion"]?.string
        continueToken = meta?["continue"]?.string.flatMap { $0.isEmpty ? nil : $0 }
        remainingItemCount = meta?["remainingItemCount"]?.int
        self.items = try items.map { (item) throws(KubeDecodingError) -> KubeObject in try KubeObject(json: item) }
    }
}

/// One event of a watch stream (one JSON object per line).
public enum WatchEvent: Sendable, Hashable {
    case added(KubeObject)
    case modified(KubeObject)
    case deleted(KubeObject)
    /// Only `metadata.resourceVersion` is meaningful; `initialEventsEnd` marks the end of a streaming list.
    case bookmark(resourceVersion: String, initialEventsEnd: Bool)
    /// The server ends the watch with a Status, 410 Expired when the version left the watch cache.
    case error(Status)

    public init(json: JSON) throws(KubeDecodingError) {
        guard let type = json["type"]?.string, let object = json["object"] else { throw .missingField("type/object") }
        switch type {
        case "ADDED": self = .added(try KubeObject(json: object))
        case "MODIFIED": self = .modified(try KubeObject(json: object))
        case "DELETED": self = .deleted(try KubeObject(json: object))
        case "BOOKMARK":
            let meta = ObjectMeta(object["metadata"])
            guard let rv = meta.resourceVersion else { throw .missingField("object.metadata.resourceVersion") }
            self = .bookmark(
                resourceVersion: rv, initialEventsEnd: meta.annotations["k8s.io/initial-events-end"] == "true")
        case "ERROR": self = .error(try Status(json: object))
        default: throw .unknownWatchEventType(type)
        }
    }
}

/// A response body that is not what the API's documented shape says.
public enum KubeDecodingError: Error, Equatable, CustomStringConvertible {
    case notAnObject(String)
    case missingField(String)
    case unexpectedKind(expected: String, got: String?)
    case unknownWatchEventType(String)

    public var description: String {
        switch self {
        case .notAnObject(let s): return "expected a JSON object, got \(s)"
        case .missingField(let f): return "the response has no \(f)"
        case .unexpectedKind(let e, let g): return "expected kind \(e), got \(g ?? "none")"
        case .unknownWatchEventType(let t): return "unknown watch event type \(t)"
        }
    }
}
