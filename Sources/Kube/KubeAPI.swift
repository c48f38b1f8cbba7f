/// What a list request asks for.
public struct ListOptions: Sendable, Hashable {
    public var labelSelector: String?
    /// Page size; the server returns a `continue` token when more items follow.
    public var limit: Int?
    public var continueToken: String?
    /// `PartialObjectMetadataList`: metadata only, no spec or status.
    public var metadataOnly: Bool

    public init(
        labelSelector: String? = nil, limit: Int? = nil, continueToken: String? = nil, metadataOnly: Bool = false
    ) {
        self.labelSelector = labelSelector
        self.limit = limit
        self.continueToken = continueToken
        self.metadataOnly = metadataOnly
    }
}

/// What a watch request asks for.
public struct WatchOptions: Sendable, Hashable {
    /// Start after this version (a list's or the last event's); nil starts with synthetic ADDED events
    /// for every object, then the changes.
    public var resourceVersion: String?
    /// The server ends the watch after this long; the client then watches again from the last version.
    public var timeoutSeconds: Int
    /// BOOKMARK events keep the last version fresh when nothing changes.
    public var allowBookmarks: Bool
    public var labelSelector: String?
    /// `PartialObjectMetadata` objects: metadata only.
    public var metadataOnly: Bool

    public init(
        resourceVersion: String? = nil, timeoutSeconds: Int = 300, allowBookmarks: Bool = true,
        labelSelector: String? = nil, metadataOnly: Bool = false
    ) {
        self.resourceVersion = resourceVersion
        self.timeoutSeconds = timeoutSeconds
        self.allowBookmarks = allowBookmarks
        self.labelSelector = labelSelector
        self.metadataOnly = metadataOnly
    }
}

/// A PATCH body and its content type.
public enum Patch: Sendable, Hashable {
    /// RFC 7386 JSON merge patch: objects merge, `null` deletes, lists are replaced.
    case merge(JSON)
    /// Kubernetes strategic merge patch: like `merge`, but lists such as `status.conditions` merge by key.
    case strategicMerge(JSON)
    /// RFC 6902 JSON patch: a list of operations.
    case json([JSON])

    public var contentType: String {
        switch self {
        case .merge: return "application/merge-patch+json"
        case .strategicMerge: return "application/strategic-merge-patch+json"
        case .json: return "application/json-patch+json"
        }
    }

    public var body: JSON {
        switch self {
        case .merge(let j), .strategicMerge(let j): return j
        case .json(let ops): return .array(ops)
        }
    }

    /// The same patch, applied only if the object is still at `resourceVersion` (else 409 Conflict).
    public func precondition(resourceVersion: String) -> Patch {
        switch self {
        case .merge(let j): return .merge(Patch.withResourceVersion(j, resourceVersion))
        case .strategicMerge(let j): return .strategicMerge(Patch.withResourceVersion(j, resourceVersion))
        case .json(let ops):
            // The API treats a resourceVersion the patch sets as a precondition, for every patch type.
            return .json(
                [.object(["op": "replace", "path": "/metadata/resourceVersion", "value": .string(resourceVersion)])]
                    + ops)
        }
    }

    static func withResourceVersion(_ patch: JSON, _ rv: String) -> JSON {
        var p = patch.object ?? [:]
        var meta = p["metadata"]?.object ?? [:]
        meta["resourceVersion"] = .string(rv)
        p["metadata"] = .object(meta)
        return .object(p)
    }
}

/// The Kubernetes API as wgmesh uses it. `KubeClient` is the one implementation; tests run it against
/// `TestAPIServer`, a real HTTP server with kube-apiserver semantics.
public protocol KubeAPI: Sendable {
    func get(_ resource: APIResource, namespace: String?, name: String) async throws(KubeError) -> KubeObject
    /// One page; see `listAll` for every page.
    func list(_ resource: APIResource, namespace: String?, options: ListOptions) async throws(KubeError) -> ObjectList
    /// Opens a watch. HTTP failures throw here; a 410 for a too-old version arrives as an `.error` event.
    func watch(_ resource: APIResource, namespace: String?, options: WatchOptions) async throws(KubeError)
        -> WatchStream
    func create(_ resource: APIResource, namespace: String?, _ object: JSON) async throws(KubeError) -> KubeObject
    /// PUT: a `metadata.resourceVersion` in the object makes it conditional (409 Conflict when stale).
    func update(_ resource: APIResource, namespace: String?, _ object: JSON, subresource: String?)
        async throws(KubeError) -> KubeObject
    func patch(_ resource: APIResource, namespace: String?, name: String, _ patch: Patch, subresource: String?)
        async throws(KubeError) -> KubeObject
    func delete(_ resource: APIResource, namespace: String?, name: String) async throws(KubeError)
}

extension KubeAPI {
    /// Every page of a list, as of one resourceVersion. When a continue token expires (410) midway,
    /// starts over, as client-go's pager does: a list mixing two versions would be inconsistent.
    /// `transform` is applied to each page as it arrives, so that only one page is ever held whole.
    public func listAll(
        _ resource: APIResource, namespace: String? = nil, pageSize: Int = 500,
        metadataOnly: Bool = false, labelSelector: String? = nil,
        transform: (@Sendable (KubeObject) -> KubeObject)? = nil
    ) async throws(KubeError) -> ObjectList {
        restart: while true {
            var options = ListOptions(labelSelector: labelSelector, limit: pageSize, metadataOnly: metadataOnly)
            var result = try await list(resource, namespace: namespace, options: options)
            if let transform { result.items = result.items.map(transform) }
            while let token = result.continueToken {
                options.continueToken = token
                let page: ObjectList
                do {
                    page = try await list(resource, namespace: namespace, options: options)
                } catch  where error.code == 410 {
                    continue restart
                }
                result.items += transform.map { page.items.map($0) } ?? page.items
                result.continueToken = page.continueToken
            }
            result.remainingItemCount = nil
            return result
        }
    }

    /// Reads the object, asks `change` for a patch, and sends it with a resourceVersion precondition;
    /// on 409 Conflict reads again and asks again. `change` returning nil means nothing to do.
    /// Transient failures (5xx, 429, transport) are retried too, with backoff.
    @discardableResult
    public func patchRetrying(
        _ resource: APIResource, namespace: String? = nil, name: String, subresource: String? = nil,
        attempts: Int = 8, backoff: Backoff = Backoff(initial: .milliseconds(20), maximum: .seconds(2)),
        _ change: (KubeObject) throws(KubeError) -> Patch?
    ) async throws(KubeError) -> KubeObject {
        var backoff = backoff
        var attempt = 0
        while true {
            attempt += 1
            do {
                let current = try await get(resource, namespace: namespace, name: name)
                guard let p = try change(current) else { return current }
                let rv = current.metadata.resourceVersion ?? ""
                return try await patch(
                    resource, namespace: namespace, name: name, p.precondition(resourceVersion: rv),
                    subresource: subresource)
            } catch  where attempt < attempts && (error.isConflict || error.isTransient) {
                // A conflict means someone else wrote first: read again at once, but spread a storm out.
                try? await Task.sleep(for: backoff.next())
                if Task.isCancelled { throw error }
            }
        }
    }

    /// Removes a Node's condition of `type` through the status subresource: a JSON patch that tests the index
    /// it removes, at the version read (409 reads again), so that no other condition goes instead. False when
    /// the Node has none.
    public func removeNodeCondition(_ type: String, node: String) async throws(KubeError) -> Bool {
        var found = false
        try await patchRetrying(.nodes, name: node, subresource: "status") { object in
            let conditions = object.json["status"]?["conditions"]?.array ?? []
            guard let index = conditions.firstIndex(where: { $0["type"]?.string == type }) else {
                found = false
                return nil
            }
            found = true
            return .json([
                .object(["op": "test", "path": .string("/status/conditions/\(index)/type"), "value": .string(type)]),
                .object(["op": "remove", "path": .string("/status/conditions/\(index)")]),
            ])
        }
        return found
    }
}
