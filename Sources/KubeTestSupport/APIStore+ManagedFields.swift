import Kube
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension APIStore {
    /// `metadata.managedFields` after an Update by `manager`, as the API server keeps it for the fields
    /// wgmesh reads (annotations and labels by key, spec and status by top-level field): the fields the
    /// write set or changed move to the writer's entry, removed fields leave every entry, and entries left
    /// empty are dropped.
    static func managedFields(previous: JSON?, next: JSON, manager: String, subresource: String?) -> JSON {
        func fields(_ o: JSON?) -> [[String]: JSON] {
            var out: [[String]: JSON] = [:]
            for (group, keys) in [("metadata", ["annotations", "labels"])] {
                for key in keys {
                    for (k, v) in o?[group]?[key]?.object ?? [:] { out[["f:" + group, "f:" + key, "f:" + k]] = v }
                }
            }
            for top in ["spec", "status"] {
                for (k, v) in o?[top]?.object ?? [:] { out[["f:" + top, "f:" + k]] = v }
            }
            return out
        }
        func paths(_ set: JSON?, _ prefix: [String] = []) -> [[String]] {
            guard let object = set?.object else { return [] }
            if object.isEmpty { return prefix.isEmpty ? [] : [prefix] }
            return object.filter { $0.key != "." }.flatMap { paths($0.value, prefix + [$0.key]) }
        }
        func tree(_ paths: Set<[String]>) -> JSON {
            var root: [String: JSON] = [:]
            func insert(_ path: ArraySlice<String>, into node: inout [String: JSON]) {
                guard let first = path.first else { return }
                var child = node[first]?.object ?? [:]
                insert(path.dropFirst(), into: &child)
                node[first] = .object(child)
            }
            for p in paths { insert(p[...], into: &root) }
            return .object(root)
        }
        let before = fields(previous)
        let after = fields(next)
        let changed = Set(after.filter { before[$0.key] != $0.value }.keys)
        let removed = Set(before.keys.filter { after[$0] == nil })
        var entries: [JSON] = []
        var mine = Set<[String]>()
        for entry in previous?["metadata"]?["managedFields"]?.array ?? [] {
            let owned = Set(paths(entry["fieldsV1"])).subtracting(changed).subtracting(removed)
            if entry["manager"]?.string == manager, entry["subresource"]?.string == subresource {
                mine = owned
                continue
            }
            guard !owned.isEmpty else { continue }
            var e = entry.object ?? [:]
            e["fieldsV1"] = tree(owned)
            entries.append(.object(e))
        }
        mine.formUnion(changed)
        if !mine.isEmpty {
            var e: [String: JSON] = [
                "manager": .string(manager), "operation": "Update", "apiVersion": "v1",
                "time": .string(Date.ISO8601FormatStyle().format(Date())), "fieldsType": "FieldsV1",
                "fieldsV1": tree(mine),
            ]
            e["subresource"] = subresource.map(JSON.string)
            entries.append(.object(e))
        }
        return .array(entries)
    }
}
