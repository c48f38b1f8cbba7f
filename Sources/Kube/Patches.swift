/// The patches wgmesh writes to a Node's annotations and conditions, built in one place.
extension Patch {
    /// The JSON merge patch `{"metadata":{"annotations":{...}}}`: each key set to its value, or removed where the
    /// value is nil (`null`).
    public static func annotations(_ changes: [String: String?]) -> Patch {
        .merge(
            .object(["metadata": .object(["annotations": .object(changes.mapValues { $0.map(JSON.string) ?? .null })])])
        )
    }

    /// `annotations` with every key set.
    public static func annotations(_ values: [String: String]) -> Patch {
        annotations(values.mapValues { Optional($0) })
    }

    /// The strategic merge patch `{"status":{"conditions":[condition]}}`, for the status subresource: conditions
    /// merge by type, so the other owners' conditions stay.
    public static func condition(_ condition: JSON) -> Patch {
        .strategicMerge(.object(["status": .object(["conditions": .array([condition])])]))
    }
}
