import Kube

/// Who sent a request, as kube-apiserver's authenticators name it: admission's `request.userInfo`.
public struct UserInfo: Sendable, Hashable {
    public var username: String
    public var uid: String?
    public var groups: [String]
    public var extra: [String: [String]]

    public init(username: String, uid: String? = nil, groups: [String], extra: [String: [String]] = [:]) {
        self.username = username
        self.uid = uid
        self.groups = groups
        self.extra = extra
    }

    /// A service account's token, as the API server reads it: the Pod's node is in `extra` (Kubernetes 1.30+).
    public static func serviceAccount(_ namespace: String, _ name: String, pod: String? = nil, node: String? = nil)
        -> UserInfo
    {
        var extra: [String: [String]] = [:]
        if let pod {
            extra["authentication.kubernetes.io/credential-id"] = ["JTI=\(namespace)-\(name)-\(pod)"]
            extra["authentication.kubernetes.io/pod-name"] = [pod]
            extra["authentication.kubernetes.io/pod-uid"] = ["pod-uid-\(pod)"]
        }
        if let node {
            extra["authentication.kubernetes.io/node-name"] = [node]
            extra["authentication.kubernetes.io/node-uid"] = ["node-uid-\(node)"]
        }
        return UserInfo(
            username: "system:serviceaccount:\(namespace):\(name)", uid: "sa-uid-\(namespace)-\(name)",
            groups: ["system:serviceaccounts", "system:serviceaccounts:\(namespace)", "system:authenticated"],
            extra: extra)
    }

    /// The agent DaemonSet's Pod on `node`, with its Pod-bound token.
    public static func agent(node: String) -> UserInfo {
        serviceAccount("wgmesh-system", "wgmesh-agent", pod: "wgmesh-agent-\(node)", node: node)
    }

    /// The controller Deployment's Pod.
    public static let controller = serviceAccount("wgmesh-system", "wgmesh-controller", pod: "wgmesh-controller-0")

    /// A person with kubeadm's admin kubeconfig (the people's commands, kubectl).
    public static let admin = UserInfo(
        username: "kubernetes-admin", groups: ["kubeadm:cluster-admins", "system:authenticated"])

    /// A request with no credentials, where anonymous requests are allowed.
    public static let anonymous = UserInfo(username: "system:anonymous", groups: ["system:unauthenticated"])

    /// A client the server's own `token` or the test client certificate authenticates.
    public static let testClient = UserInfo(
        username: "test-client", groups: ["system:masters", "system:authenticated"])

    /// As in an AdmissionReview's `request.userInfo`.
    public var json: JSON {
        var o: [String: JSON] = ["username": .string(username), "groups": .array(groups.map(JSON.string))]
        if let uid { o["uid"] = .string(uid) }
        if !extra.isEmpty { o["extra"] = .object(extra.mapValues { .array($0.map(JSON.string)) }) }
        return .object(o)
    }
}
