import Kube
import Yams
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension TestAPIServer {
    /// Creates the CustomResourceDefinitions in a YAML stream (documents of other kinds are an error), as
    /// `kubectl create -f` would; each is served as soon as it is created. Returns them as stored.
    @discardableResult
    public func createCustomResourceDefinitions(yaml: String) throws -> [JSON] {
        let documents = try Yams.load_all(yaml: yaml).map(TestAPIServer.json)
        return try documents.filter { $0 != JSON.null }.map { object in
            guard object["kind"]?.string == "CustomResourceDefinition" else {
                throw APIStore.status(
                    400, "BadRequest", "not a CustomResourceDefinition: kind \(object["kind"]?.string ?? "none")")
            }
            return try withStore(.customResourceDefinitions) { try $0.create(object) }
        }
    }

    /// Serves wgmesh's Peer (manifests/peer-crd.yaml, read from this checkout), as `kubectl apply -k` does.
    public func installPeerCRD(filePath: String = #filePath) throws {
        let url = URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("manifests/peer-crd.yaml")
        try createCustomResourceDefinitions(yaml: String(contentsOf: url, encoding: .utf8))
    }

    /// Serves what the stored definitions define, as the API server's apiextensions controllers do: a new
    /// served version at once; a deleted definition's objects deleted (watchers see them go) and their
    /// watches ended, so that its path is 404 again.
    func syncCustomResources(_ s: inout State) {
        let definitions = StoreKey(resource: .customResourceDefinitions, namespace: nil)
        var served: [APIResource: CustomResourceDefinition.Version] = [:]
        let items = s.stores[definitions].flatMap { try? $0.list() }?["items"]?.array ?? []
        for item in items {
            guard let definition = try? CustomResourceDefinition(item) else { continue }
            for version in definition.versions { served[version.resource] = version }
        }
        let gone = Set(s.customResources.keys).subtracting(served.keys)
        s.customResources = served
        for key in Array(s.stores.keys) {
            if gone.contains(key.resource), var store = s.stores[key] {
                let before = store.resourceVersion
                let names = ((try? store.list())?["items"]?.array ?? []).map { ObjectMeta($0["metadata"]).name }
                for name in names { _ = try? store.delete(name) }
                s.stores[key] = store
                notify(&s, key, (try? store.changes(after: before)) ?? [])
                for (id, watcher) in s.watchers where watcher.key == key { endWatch(&s, id, cleanly: true) }
                s.stores[key] = nil
            } else if let version = served[key.resource] {
                s.stores[key]!.customResource = version
            }
        }
    }

    /// A YAML value as JSON: Yams resolves plain scalars (`true`, `3`) and keeps quoted ones strings.
    static func json(_ value: Any) -> JSON {
        switch value {
        case let b as Bool: return .bool(b)
        case let i as Int: return .integer(Int64(i))
        case let d as Double: return .double(d)
        case let s as String: return .string(s)
        case let a as [Any]: return .array(a.map(json))
        case let o as [String: Any]: return .object(o.mapValues(json))
        case let o as [AnyHashable: Any]:
            return .object(Dictionary(uniqueKeysWithValues: o.map { ("\($0.key.base)", json($0.value)) }))
        default: return .null
        }
    }
}
