import Kube

extension APIStore {
    /// A custom resource as the API server admits it (apiextensions' customResourceStrategy): fields the schema
    /// does not name pruned; with a status subresource, status kept as it was (a create has none); generation 1
    /// on create, one more whenever anything but metadata changes; then validated against the schema.
    func admitCustomResource(_ proposed: JSON, current: JSON?, subresource: String?, name: String) throws(Status)
        -> JSON
    {
        guard let custom = customResource else { return proposed }
        var next = custom.schema.pruned(proposed, root: true).object ?? [:]
        // As stored: a body without kind or apiVersion changes neither, nor the generation.
        next["kind"] = .string(kind)
        next["apiVersion"] = .string(apiVersion)
        if let current {
            if subresource == "status" {
                // The status strategy: the object as it was, with the new status.
                let status = next["status"]
                next = current.object ?? [:]
                next["status"] = status
            } else if custom.hasStatus {
                next["status"] = current["status"]
            }
        } else if custom.hasStatus {
            next["status"] = nil
        }
        var meta = next["metadata"]?.object ?? [:]
        if let current {
            // The status strategy keeps the generation with the rest of the object.
            let generation = current["metadata"]?["generation"]?.int ?? 1
            let same =
                subresource == "status" || APIStore.withoutMetadata(.object(next)) == APIStore.withoutMetadata(current)
            meta["generation"] = .integer(same ? generation : generation + 1)
        } else {
            meta["generation"] = .integer(1)
        }
        next["metadata"] = .object(meta)
        let errors = custom.schema.validate(.object(next))
        guard errors.isEmpty else { throw invalidCustomResource(errors, name: name) }
        return .object(next)
    }

    /// A definition as the API server stores it, or the reason it refuses it.
    func admitDefinition(_ object: JSON) throws(Status) -> JSON {
        guard resource == .customResourceDefinitions else { return object }
        _ = try CustomResourceDefinition(object)
        return CustomResourceDefinition.established(object)
    }

    /// 422 for a custom resource, worded as apiextensions words it: `Kind.group "name" is invalid: ...`.
    func invalidCustomResource(_ errors: [FieldError], name: String) -> Status {
        APIStore.status(
            422, "Invalid", "\(kind).\(resource.group) \"\(name)\" is invalid: \(FieldError.aggregate(errors))",
            details: .object([
                "name": .string(name), "group": .string(resource.group), "kind": .string(kind),
                "causes": .array(errors.map(\.cause)),
            ]))
    }

    static func withoutMetadata(_ object: JSON) -> JSON {
        var o = object.object ?? [:]
        o["metadata"] = nil
        return .object(o)
    }
}
