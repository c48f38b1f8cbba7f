import Kube
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A CustomResourceDefinition (apiextensions.k8s.io/v1) as the test server reads it: the resource each served
/// version adds to the API, whether it has a status subresource, and its schema.
struct CustomResourceDefinition: Sendable {
    /// One served version: what APIStore needs to hold its objects as the API server holds custom resources.
    struct Version: Sendable {
        var resource: APIResource
        var hasStatus: Bool
        var schema: OpenAPISchema
    }

    var name: String
    var versions: [Version]

    /// Reads a definition; what kube-apiserver would refuse, or what the test server cannot enforce, is
    /// refused as an invalid CustomResourceDefinition (422), naming the field.
    init(_ object: JSON) throws(Status) {
        let spec = object["spec"] ?? .null
        name = ObjectMeta(object["metadata"]).name
        let group = spec["group"]?.string ?? ""
        let plural = spec["names"]?["plural"]?.string ?? ""
        let kind = spec["names"]?["kind"]?.string ?? ""
        let scope = spec["scope"]?.string ?? ""
        var errors: [FieldError] = []
        if group.isEmpty { errors.append(.required("spec.group")) }
        if plural.isEmpty { errors.append(.required("spec.names.plural")) }
        if kind.isEmpty { errors.append(.required("spec.names.kind")) }
        if !["Cluster", "Namespaced"].contains(scope) {
            errors.append(.notSupported("spec.scope", .string(scope), supported: ["Cluster", "Namespaced"]))
        }
        if !plural.isEmpty, !group.isEmpty, name != plural + "." + group {
            errors.append(.invalid("metadata.name", .string(name), "must be spec.names.plural+\".\"+spec.group"))
        }
        let list = spec["versions"]?.array ?? []
        if list.isEmpty {
            errors.append(
                .invalid("spec.versions", .array([]), "must have exactly one version marked as storage version"))
        }
        versions = []
        for (i, v) in list.enumerated() {
            let path = "spec.versions[\(i)]"
            guard let schema = v["schema"]?["openAPIV3Schema"] else {
                errors.append(.required(path + ".schema.openAPIV3Schema", "schemas are required"))
                continue
            }
            let parsed = OpenAPISchema(schema, path: path + ".schema.openAPIV3Schema", errors: &errors)
            guard v["served"]?.bool == true else { continue }
            let resource = APIResource(
                group: group, version: v["name"]?.string ?? "", plural: plural, kind: kind,
                namespaced: scope == "Namespaced")
            versions.append(
                Version(resource: resource, hasStatus: v["subresources"]?["status"] != nil, schema: parsed))
        }
        guard errors.isEmpty else {
            throw APIStore.status(
                422, "Invalid",
                "CustomResourceDefinition.apiextensions.k8s.io \"\(name)\" is invalid: \(FieldError.aggregate(errors))",
                details: .object([
                    "name": .string(name), "group": "apiextensions.k8s.io", "kind": "CustomResourceDefinition",
                    "causes": .array(errors.map(\.cause)),
                ]))
        }
    }

    /// The definition as the API server stores it once its names are accepted: Established at once.
    static func established(_ object: JSON) -> JSON {
        let names = object["spec"]?["names"] ?? .object([:])
        let stored = (object["spec"]?["versions"]?.array ?? []).filter { $0["storage"]?.bool == true }
            .compactMap { $0["name"] }
        func condition(_ type: String, _ reason: String, _ message: String) -> JSON {
            .object([
                "type": .string(type), "status": "True", "reason": .string(reason), "message": .string(message),
                "lastTransitionTime": .string(Date.ISO8601FormatStyle().format(Date())),
            ])
        }
        return APIStore.mergePatch(
            object,
            .object([
                "status": .object([
                    "acceptedNames": names, "storedVersions": .array(stored),
                    "conditions": .array([
                        condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                        condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                    ]),
                ])
            ]))
    }
}
