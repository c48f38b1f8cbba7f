import Kube
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension APIStore {
    /// RFC 7386: objects merge key by key, `null` deletes, anything else replaces.
    public static func mergePatch(_ target: JSON, _ patch: JSON) -> JSON {
        guard case .object(let p) = patch else { return patch }
        var t = target.object ?? [:]
        for (k, v) in p {
            if v == .null { t[k] = nil } else { t[k] = mergePatch(t[k] ?? .null, v) }
        }
        return .object(t)
    }

    /// Lists that a strategic merge patch merges element by element, and the key that identifies an
    /// element (the `patchMergeKey` of the Go types wgmesh patches).
    static let strategicMergeKeys = ["conditions": "type", "addresses": "type", "taints": "key"]

    /// Kubernetes strategic merge patch, for the fields wgmesh patches: RFC 7386, except that the
    /// lists in `strategicMergeKeys` merge by their key instead of being replaced.
    public static func strategicMergePatch(_ target: JSON, _ patch: JSON) -> JSON {
        guard case .object(let p) = patch else { return patch }
        var t = target.object ?? [:]
        for (k, v) in p {
            if v == .null {
                t[k] = nil
            } else if let key = strategicMergeKeys[k], case .array(let patchItems) = v, case .array(var items)? = t[k] {
                for item in patchItems {
                    if let i = items.firstIndex(where: { $0[key] != nil && $0[key] == item[key] }) {
                        items[i] = strategicMergePatch(items[i], item)
                    } else {
                        items.append(item)
                    }
                }
                t[k] = .array(items)
            } else {
                t[k] = strategicMergePatch(t[k] ?? .null, v)
            }
        }
        return .object(t)
    }

    /// RFC 6902 JSON patch: add, remove, replace and test, with RFC 6901 pointers.
    func applyJSONPatch(_ target: JSON, _ ops: [JSON], name: String) throws(Status) -> JSON {
        var doc = target
        for op in ops {
            guard let kind = op["op"]?.string, let path = op["path"]?.string else {
                throw status(400, "BadRequest", "the JSON patch operation \(op) has no op or path", name: name)
            }
            let tokens = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
                .map { String($0.replacing("~1", with: "/").replacing("~0", with: "~")) }
            switch kind {
            case "add", "replace":
                guard let value = op["value"],
                    let next = APIStore.setting(doc, Array(tokens)[...], to: value, mustExist: kind == "replace")
                else {
                    throw status(
                        422, "Invalid", "jsonpatch \(kind) operation does not apply: doc is missing path: \"\(path)\"",
                        name: name)
                }
                doc = next
            case "remove":
                guard let next = APIStore.setting(doc, Array(tokens)[...], to: nil, mustExist: true) else {
                    throw status(
                        422, "Invalid", "jsonpatch remove operation does not apply: doc is missing path: \"\(path)\"",
                        name: name)
                }
                doc = next
            case "test":
                guard APIStore.value(doc, Array(tokens)[...]) == op["value"] else {
                    throw status(422, "Invalid", "testing value \(path) failed: test failed", name: name)
                }
            default:
                throw status(400, "BadRequest", "unsupported JSON patch operation \"\(kind)\"", name: name)
            }
        }
        return doc
    }

    static func value(_ doc: JSON, _ path: ArraySlice<String>) -> JSON? {
        guard let first = path.first else { return doc }
        switch doc {
        case .object(let o): return o[first].flatMap { value($0, path.dropFirst()) }
        case .array(let a): return Int(first).flatMap { a.indices.contains($0) ? value(a[$0], path.dropFirst()) : nil }
        default: return nil
        }
    }

    /// `doc` with the value at `path` set (nil: removed); nil when the path does not lead anywhere.
    static func setting(_ doc: JSON, _ path: ArraySlice<String>, to value: JSON?, mustExist: Bool) -> JSON? {
        guard let first = path.first else { return value }
        let last = path.count == 1
        switch doc {
        case .object(var o):
            if last {
                if mustExist && o[first] == nil { return nil }
                o[first] = value
            } else {
                guard let child = o[first], let next = setting(child, path.dropFirst(), to: value, mustExist: mustExist)
                else { return nil }
                o[first] = next
            }
            return .object(o)
        case .array(var a):
            if last, first == "-", !mustExist, let value {
                a.append(value)
                return .array(a)
            }
            guard let i = Int(first), i >= 0, i <= a.count, !(mustExist && i == a.count) else { return nil }
            if last {
                if let value { if mustExist { a[i] = value } else { a.insert(value, at: i) } } else { a.remove(at: i) }
            } else {
                guard i < a.count, let next = setting(a[i], path.dropFirst(), to: value, mustExist: mustExist) else {
                    return nil
                }
                a[i] = next
            }
            return .array(a)
        default:
            return nil
        }
    }
}
