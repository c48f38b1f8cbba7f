import Kube
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One resource type held the way kube-apiserver holds it: every write gets the next resourceVersion,
/// recent changes stay in a bounded window (the watch cache), lists are consistent snapshots, and
/// failures are the API's Status bodies. The heart of wgmesh's Kubernetes-compatible test server.
///
/// Its parts: the patch algorithms in APIStore+Patches, `metadata.managedFields` in APIStore+ManagedFields,
/// name and annotation-key validation in APIStore+Validation.
public struct APIStore: Sendable {
    public enum EventType: String, Sendable { case added = "ADDED", modified = "MODIFIED", deleted = "DELETED" }

    /// One change: the object after it (for DELETED, the last state) and the object before it.
    public struct Change: Sendable {
        public var resourceVersion: Int64
        public var type: EventType
        public var object: JSON
        var previous: JSON?
    }

    public let resource: APIResource
    public var kind: String { resource.kind }
    public var apiVersion: String { resource.apiVersion }
    private(set) public var resourceVersion: Int64
    private var objects: [String: JSON] = [:]
    private var window: [Change] = []
    /// Oldest version a watch or a continue token may start from; older ones get 410 Expired.
    private(set) public var windowStart: Int64
    private let windowSize: Int
    /// Set when the resource is a CustomResourceDefinition's: its schema and subresources.
    var customResource: CustomResourceDefinition.Version?

    public init(resource: APIResource, firstResourceVersion: Int64 = 100, windowSize: Int = 1000) {
        self.resource = resource
        resourceVersion = firstResourceVersion
        windowStart = firstResourceVersion
        self.windowSize = windowSize
    }

    /// Whether the type has a `status` subresource (Node does; Lease and Event do not; a custom resource
    /// does when its definition says so).
    public var hasStatus: Bool { customResource.map(\.hasStatus) ?? (resource == .nodes) }

    // MARK: reads

    public func get(_ name: String) throws(Status) -> JSON {
        guard let o = objects[name] else {
            throw status(404, "NotFound", "\(resource.qualifiedName) \"\(name)\" not found", name: name)
        }
        return o
    }

    /// A page of the list, sorted by name, as of one resourceVersion: the current one for a first page,
    /// the token's for the next pages (410 once it has left the window, as etcd compaction does); only the
    /// objects `labelSelector` matches, when given.
    public func list(limit: Int? = nil, continueToken: String? = nil, labelSelector: LabelSelector? = nil)
        throws(Status) -> JSON
    {
        var at = resourceVersion
        var after = ""
        if let continueToken {
            guard let (rv, start) = APIStore.decodeContinue(continueToken) else {
                throw APIStore.status(400, "BadRequest", "continue key is not valid: illegal base64 data")
            }
            guard rv >= windowStart else {
                throw APIStore.status(
                    410, "Expired",
                    """
                    The provided continue parameter is too old to display a consistent list result. \
                    You can start a new list without the continue parameter, or use the continue token in this \
                    response to retrieve the remainder of the results. Continuing with the provided token results \
                    in an inconsistent list - objects that were created, modified, or deleted between the time \
                    the first chunk was returned and now may show up in the list.
                    """)
            }
            at = rv
            after = String(start.dropFirst())
        }
        let snapshot = self.snapshot(at: at).filter { $0.key > after && labelSelector?.matches($0.value) != false }
            .sorted { $0.key < $1.key }
        let page = limit.map { Array(snapshot.prefix(max(1, $0))) } ?? snapshot
        var meta: [String: JSON] = ["resourceVersion": .string(String(at))]
        if page.count < snapshot.count, let last = page.last {
            meta["continue"] = .string(APIStore.encodeContinue(rv: at, start: "/" + last.key))
            meta["remainingItemCount"] = .integer(Int64(snapshot.count - page.count))
        }
        return .object([
            "kind": .string(kind + "List"), "apiVersion": .string(apiVersion), "metadata": .object(meta),
            "items": .array(page.map { APIStore.withoutType($0.value) }),
        ])
    }

    /// The changes after `resourceVersion`, oldest first; 410 Expired when it has left the window.
    public func changes(after rv: Int64) throws(Status) -> [Change] {
        guard rv >= windowStart else {
            throw APIStore.status(410, "Expired", "too old resource version: \(rv) (\(windowStart))")
        }
        // The window is in resourceVersion order: find the first later change by binary search.
        var low = 0
        var high = window.count
        while low < high {
            let mid = (low + high) / 2
            if window[mid].resourceVersion > rv { high = mid } else { low = mid + 1 }
        }
        return Array(window[low...])
    }

    /// The objects as they were at `rv`: today's, with the later changes undone.
    func snapshot(at rv: Int64) -> [String: JSON] {
        var state = objects
        for change in window.reversed() where change.resourceVersion > rv {
            let name = ObjectMeta(change.object["metadata"]).name
            state[name] = change.previous
        }
        return state
    }

    // MARK: writes

    /// POST. A `generateName` without a name gets five random characters appended, as the API does.
    public mutating func create(_ object: JSON, manager: String? = nil) throws(Status) -> JSON {
        var object = object
        var meta = ObjectMeta(object["metadata"])
        if meta.name.isEmpty, let prefix = object["metadata"]?["generateName"]?.string {
            // The prefix must itself be valid: a trailing "-" is fine, a trailing "." is not.
            guard APIStore.isDNSSubdomain(prefix.hasSuffix("-") ? prefix + "a" : prefix) else {
                throw invalid(
                    "metadata.generateName",
                    """
                    Invalid value: "\(prefix)": a lowercase RFC 1123 subdomain must consist of lower case \
                    alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character
                    """,
                    name: prefix)
            }
            meta.name = prefix + String((0..<5).map { _ in "bcdfghjklmnpqrstvwxz2456789".randomElement()! })
            object = APIStore.mergePatch(object, .object(["metadata": .object(["name": .string(meta.name)])]))
        }
        guard !meta.name.isEmpty else {
            throw invalid("metadata.name", "Required value: name or generateName is required", name: "")
        }
        guard APIStore.isDNSSubdomain(meta.name) else {
            throw invalid(
                "metadata.name",
                """
                Invalid value: "\(meta.name)": a lowercase RFC 1123 subdomain must consist of lower case \
                alphanumeric characters, '-' or '.'
                """,
                name: meta.name)
        }
        try validateAnnotations(object, name: meta.name)
        object = try admitDefinition(object)
        object = try admitCustomResource(object, current: nil, subresource: nil, name: meta.name)
        guard objects[meta.name] == nil else {
            throw status(
                409, "AlreadyExists", "\(resource.qualifiedName) \"\(meta.name)\" already exists", name: meta.name)
        }
        return commit(.added, name: meta.name, object: object, previous: nil, manager: manager, subresource: nil)
    }

    /// PUT, of the object or of its `status` subresource. The body's resourceVersion, when set, must be
    /// the current one (409 Conflict otherwise).
    public mutating func update(_ object: JSON, subresource: String? = nil, manager: String? = nil) throws(Status)
        -> JSON
    {
        let name = ObjectMeta(object["metadata"]).name
        let current = try get(name)
        return try write(name, current: current, proposed: object, subresource: subresource, manager: manager)
    }

    /// PATCH, of the object or of its `status` subresource. A `metadata.resourceVersion` the patch sets
    /// is a precondition, whatever the patch type.
    public mutating func patch(_ name: String, _ patch: Patch, subresource: String? = nil, manager: String? = nil)
        throws(Status) -> JSON
    {
        let current = try get(name)
        let proposed: JSON
        switch patch {
        case .merge(let p): proposed = APIStore.mergePatch(current, p)
        case .strategicMerge(let p): proposed = APIStore.strategicMergePatch(current, p)
        case .json(let ops): proposed = try applyJSONPatch(current, ops, name: name)
        }
        return try write(name, current: current, proposed: proposed, subresource: subresource, manager: manager)
    }

    /// JSON merge patch (RFC 7386); see `patch`.
    public mutating func mergePatch(_ name: String, _ patch: JSON) throws(Status) -> JSON {
        try self.patch(name, .merge(patch))
    }

    public mutating func delete(_ name: String) throws(Status) -> JSON {
        let current = try get(name)
        return commit(.deleted, name: name, object: current, previous: current)
    }

    /// Forgets the oldest changes, as compaction does: watches and continue tokens from before get 410.
    public mutating func compact(keepLast n: Int) {
        let drop = max(0, window.count - n)
        window.removeFirst(drop)
        windowStart = (window.first?.resourceVersion).map { $0 - 1 } ?? resourceVersion
    }

    /// Validates and stores a new state. The main resource cannot change status, the status
    /// subresource can change only status (the registry's status strategies).
    private mutating func write(_ name: String, current: JSON, proposed: JSON, subresource: String?, manager: String?)
        throws(Status) -> JSON
    {
        if let subresource {
            guard subresource == "status", hasStatus else {
                throw status(404, "NotFound", "the server could not find the requested resource", name: name)
            }
        }
        let expected = ObjectMeta(proposed["metadata"]).resourceVersion
        if let expected, expected != ObjectMeta(current["metadata"]).resourceVersion {
            throw status(
                409, "Conflict",
                """
                Operation cannot be fulfilled on \(resource.qualifiedName) "\(name)": the object has been modified; \
                please apply your changes to the latest version and try again
                """,
                name: name)
        }
        guard ObjectMeta(proposed["metadata"]).name == name else {
            throw invalid(
                "metadata.name", "Invalid value: \"\(ObjectMeta(proposed["metadata"]).name)\": field is immutable",
                name: name)
        }
        try validateAnnotations(proposed, name: name)
        var next = proposed.object ?? [:]
        if customResource != nil {
            next =
                try admitCustomResource(proposed, current: current, subresource: subresource, name: name).object ?? [:]
        } else if subresource == "status" {
            next = current.object ?? [:]
            next["status"] = proposed["status"]
        } else if hasStatus {
            next["status"] = current["status"]
        }
        // Server-owned metadata is not the client's to change.
        var meta = next["metadata"]?.object ?? [:]
        for key in ["uid", "creationTimestamp", "managedFields"] { meta[key] = current["metadata"]?[key] }
        next["metadata"] = .object(meta)
        if resource == .customResourceDefinitions {
            // The definition's status is the API server's.
            next["status"] = nil
            next = try admitDefinition(.object(next)).object ?? [:]
        }
        return commit(
            .modified, name: name, object: .object(next), previous: current, manager: manager, subresource: subresource)
    }

    private mutating func commit(
        _ type: EventType, name: String, object: JSON, previous: JSON?,
        manager: String? = nil, subresource: String? = nil
    ) -> JSON {
        resourceVersion += 1
        var o = object.object ?? [:]
        var meta = o["metadata"]?.object ?? [:]
        if type != .deleted, let manager {
            meta["managedFields"] = APIStore.managedFields(
                previous: previous, next: object, manager: manager, subresource: subresource)
        }
        meta["resourceVersion"] = .string(String(resourceVersion))
        if type == .added {
            meta["uid"] = .string(UUID().uuidString.lowercased())
            meta["creationTimestamp"] = .string(Date.ISO8601FormatStyle().format(Date()))
        }
        o["metadata"] = .object(meta)
        o["kind"] = .string(kind)
        o["apiVersion"] = .string(apiVersion)
        let stored = JSON.object(o)
        objects[name] = type == .deleted ? nil : stored
        window.append(Change(resourceVersion: resourceVersion, type: type, object: stored, previous: previous))
        if window.count > windowSize { compact(keepLast: windowSize) }
        return stored
    }

    // MARK: failures

    /// The Status body kube-apiserver sends with a failure of this resource.
    public func status(_ code: Int, _ reason: String, _ message: String, name: String, causes: [JSON] = []) -> Status {
        // As captured: a conflict or not-found names the resource (and group); an invalid object, its kind.
        var details: [String: JSON] = ["name": .string(name)]
        if causes.isEmpty {
            details["kind"] = .string(resource.plural)
            if !resource.group.isEmpty { details["group"] = .string(resource.group) }
        } else {
            details["kind"] = .string(kind)
            details["causes"] = .array(causes)
        }
        return APIStore.status(code, reason, message, details: .object(details))
    }

    func invalid(_ field: String, _ message: String, name: String) -> Status {
        status(
            422, "Invalid", "\(kind) \"\(name)\" is invalid: \(field): \(message)", name: name,
            causes: [.object(["reason": "FieldValueInvalid", "message": .string(message), "field": .string(field)])])
    }

    // MARK: helpers

    /// A Status body as kube-apiserver sends it.
    public static func status(_ code: Int, _ reason: String, _ message: String, details: JSON? = nil) -> Status {
        var body: [String: JSON] = [
            "kind": "Status", "apiVersion": "v1", "metadata": .object([:]), "status": "Failure",
            "message": .string(message), "reason": .string(reason), "code": .integer(Int64(code)),
        ]
        body["details"] = details
        return try! Status(json: .object(body))
    }

    /// An item of a typed list: the API leaves out each item's kind and apiVersion.
    public static func withoutType(_ object: JSON) -> JSON {
        var o = object.object ?? [:]
        o["kind"] = nil
        o["apiVersion"] = nil
        return .object(o)
    }

    static func encodeContinue(rv: Int64, start: String) -> String {
        Data(JSON.object(["v": "meta.k8s.io/v1", "rv": .integer(rv), "start": .string(start + "\u{0}")]).data)
            .base64EncodedString()
            .replacing("=", with: "")
    }

    static func decodeContinue(_ token: String) -> (Int64, String)? {
        let padded = token + String(repeating: "=", count: (4 - token.count % 4) % 4)
        guard let data = Data(base64Encoded: padded), let json = try? JSON.parse(data),
            let rv = json["rv"]?.int, let start = json["start"]?.string
        else { return nil }
        return (rv, String(start.dropLast(start.hasSuffix("\u{0}") ? 1 : 0)))
    }
}
