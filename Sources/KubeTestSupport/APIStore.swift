import Kube
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One resource type held the way kube-apiserver holds it: every write gets the next resourceVersion,
/// recent changes stay in a bounded window (the watch cache), lists are consistent snapshots, and
/// failures are the API's Status bodies. The heart of wgmesh's Kubernetes-compatible test server.
public struct APIStore: Sendable {
    public enum EventType: String, Sendable { case added = "ADDED", modified = "MODIFIED", deleted = "DELETED" }

    /// One change: the object after it (for DELETED, the last state) and the object before it.
    public struct Change: Sendable {
        public var resourceVersion: Int64
        public var type: EventType
        public var object: JSON
        var previous: JSON?
    }

    public let kind: String
    public let apiVersion: String
    private(set) public var resourceVersion: Int64
    private var objects: [String: JSON] = [:]
    private var window: [Change] = []
    /// Oldest version a watch or a continue token may start from; older ones get 410 Expired.
    private var windowStart: Int64
    private let windowSize: Int

    public init(kind: String, apiVersion: String = "v1", firstResourceVersion: Int64 = 100, windowSize: Int = 1000) {
        self.kind = kind
        self.apiVersion = apiVersion
        resourceVersion = firstResourceVersion
        windowStart = firstResourceVersion
        self.windowSize = windowSize
    }

    // MARK: reads

    public func get(_ name: String) throws(Status) -> JSON {
        guard let o = objects[name] else { throw APIStore.status(404, "NotFound", "\(kind.lowercased())s \"\(name)\" not found") }
        return o
    }

    /// A page of the list, sorted by name, as of one resourceVersion: the current one for a first page,
    /// the token's for the next pages (410 once it has left the window, as etcd compaction does).
    public func list(limit: Int? = nil, continueToken: String? = nil) throws(Status) -> JSON {
        var at = resourceVersion, after = ""
        if let continueToken {
            guard let (rv, start) = APIStore.decodeContinue(continueToken) else {
                throw APIStore.status(400, "BadRequest", "continue key is not valid: illegal base64 data")
            }
            guard rv >= windowStart else {
                throw APIStore.status(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
            }
            at = rv
            after = start
        }
        let snapshot = self.snapshot(at: at).filter { $0.key > after }.sorted { $0.key < $1.key }
        let page = limit.map { Array(snapshot.prefix(max(1, $0))) } ?? snapshot
        var meta: [String: JSON] = ["resourceVersion": .string(String(at))]
        if page.count < snapshot.count, let last = page.last {
            meta["continue"] = .string(APIStore.encodeContinue(rv: at, start: last.key))
            meta["remainingItemCount"] = .integer(Int64(snapshot.count - page.count))
        }
        return .object(["kind": .string(kind + "List"), "apiVersion": .string(apiVersion), "metadata": .object(meta),
                        "items": .array(page.map(\.value))])
    }

    /// The changes after `resourceVersion`, oldest first; 410 Expired when it has left the window.
    public func changes(after rv: Int64) throws(Status) -> [Change] {
        guard rv >= windowStart else {
            throw APIStore.status(410, "Expired", "too old resource version: \(rv) (\(windowStart))")
        }
        return window.filter { $0.resourceVersion > rv }
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

    public mutating func create(_ object: JSON) throws(Status) -> JSON {
        let meta = ObjectMeta(object["metadata"])
        guard !meta.name.isEmpty else { throw APIStore.invalid("metadata.name", "name or generateName is required") }
        guard objects[meta.name] == nil else {
            throw APIStore.status(409, "AlreadyExists", "\(kind.lowercased())s \"\(meta.name)\" already exists")
        }
        return commit(.added, name: meta.name, object: object, previous: nil)
    }

    /// PUT: the body's resourceVersion, when set, must be the current one (409 Conflict otherwise).
    public mutating func update(_ object: JSON) throws(Status) -> JSON {
        let meta = ObjectMeta(object["metadata"])
        let current = try get(meta.name)
        try checkPrecondition(meta.resourceVersion, current: current, name: meta.name)
        return commit(.modified, name: meta.name, object: object, previous: current)
    }

    /// JSON merge patch (RFC 7386). A `metadata.resourceVersion` in the patch is a precondition.
    public mutating func mergePatch(_ name: String, _ patch: JSON) throws(Status) -> JSON {
        let current = try get(name)
        try checkPrecondition(patch["metadata"]?["resourceVersion"]?.string, current: current, name: name)
        for key in (patch["metadata"]?["annotations"]?.object ?? [:]).keys where !APIStore.isQualifiedName(key) {
            throw APIStore.invalid("metadata.annotations", "Invalid value: \"\(key)\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")
        }
        let merged = APIStore.mergePatch(current, patch)
        guard ObjectMeta(merged["metadata"]).name == name else { throw APIStore.invalid("metadata.name", "field is immutable") }
        return commit(.modified, name: name, object: merged, previous: current)
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

    private func checkPrecondition(_ expected: String?, current: JSON, name: String) throws(Status) {
        guard let expected else { return }
        guard expected == ObjectMeta(current["metadata"]).resourceVersion else {
            throw APIStore.status(409, "Conflict", "Operation cannot be fulfilled on \(kind.lowercased())s \"\(name)\": the object has been modified; please apply your changes to the latest version and try again")
        }
    }

    private mutating func commit(_ type: EventType, name: String, object: JSON, previous: JSON?) -> JSON {
        resourceVersion += 1
        var o = object.object ?? [:]
        var meta = o["metadata"]?.object ?? [:]
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

    // MARK: helpers

    /// RFC 7386: objects merge key by key, `null` deletes, anything else replaces.
    public static func mergePatch(_ target: JSON, _ patch: JSON) -> JSON {
        guard case .object(let p) = patch else { return patch }
        var t = target.object ?? [:]
        for (k, v) in p {
            if v == .null { t[k] = nil } else { t[k] = mergePatch(t[k] ?? .null, v) }
        }
        return .object(t)
    }

    /// The Status body kube-apiserver sends with a failure.
    public static func status(_ code: Int, _ reason: String, _ message: String, causes: [JSON] = []) -> Status {
        var body: [String: JSON] = ["kind": "Status", "apiVersion": "v1", "metadata": .object([:]), "status": "Failure",
                                    "message": .string(message), "reason": .string(reason), "code": .integer(Int64(code))]
        if !causes.isEmpty { body["details"] = .object(["causes": .array(causes)]) }
        return try! Status(json: .object(body))
    }

    static func invalid(_ field: String, _ message: String) -> Status {
        status(422, "Invalid", "\(field): \(message)", causes: [.object(["reason": "FieldValueInvalid", "message": .string(message), "field": .string(field)])])
    }

    /// A Kubernetes qualified name: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
    static func isQualifiedName(_ key: String) -> Bool {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let name = parts.last, (1...63).contains(name.count) else { return false }
        func alnum(_ c: Character) -> Bool { c.isASCII && (c.isLetter || c.isNumber) }
        guard let f = name.first, let l = name.last, alnum(f), alnum(l),
              name.allSatisfy({ alnum($0) || $0 == "-" || $0 == "_" || $0 == "." }) else { return false }
        if parts.count == 2 {
            let prefix = parts[0]
            guard (1...253).contains(prefix.count), prefix.allSatisfy({ ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" || $0 == "." }) else { return false }
        }
        return true
    }

    static func encodeContinue(rv: Int64, start: String) -> String {
        Data(JSON.object(["v": "meta.k8s.io/v1", "rv": .integer(rv), "start": .string(start + "\u{0}")]).data).base64EncodedString()
            .replacing("=", with: "")
    }

    static func decodeContinue(_ token: String) -> (Int64, String)? {
        let padded = token + String(repeating: "=", count: (4 - token.count % 4) % 4)
        guard let data = Data(base64Encoded: padded), let json = try? JSON.parse(data),
              let rv = json["rv"]?.int, let start = json["start"]?.string else { return nil }
        return (rv, String(start.dropLast(start.hasSuffix("\u{0}") ? 1 : 0)))
    }
}
