import Kube
import WGMeshCore

extension ObservedNode {
    /// The Node as the commands judge it; a metadata-only object has no condition.
    public init(_ object: KubeObject) {
        let condition = Node(object).conditions.first { $0.type == MeshCondition.type }.map {
            ObservedNode.Condition(status: $0.status, reason: $0.reason, message: $0.message)
        }
        self.init(name: object.metadata.name, annotations: object.metadata.annotations, condition: condition)
    }
}

/// The field manager and user agent of the people's commands' writes.
public let cliFieldManager = "wgmesh-cli"

/// Every Node (those `labelSelector` matches, when given), whole or metadata only.
func observedNodes(_ api: any KubeAPI, labelSelector: String? = nil, metadataOnly: Bool = false) async throws(KubeError)
    -> [ObservedNode]
{
    try await api.listAll(.nodes, metadataOnly: metadataOnly, labelSelector: labelSelector).items.map(ObservedNode.init)
}

/// A command's refusal or failure, said to the user as it is: what was wrong, with the value, and what to do.
public struct CLIError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
