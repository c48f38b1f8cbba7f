import Kube
import NIOHTTP1
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension TestAPIServer {
    /// Changes the accepted token, as a rotation does.
    public func setToken(_ token: String?) { state.withLock { $0.token = token } }

    func authorized(_ request: Request) -> Bool {
        guard let token = state.withLock({ $0.token }) else { return true }
        if request.clientCertificate || bearer(request).map({ options.identities[$0] != nil }) == true { return true }
        return request.headers.first(name: "authorization") == "Bearer \(token)"
    }

    func bearer(_ request: Request) -> String? {
        guard let value = request.headers.first(name: "authorization"), value.hasPrefix("Bearer ") else { return nil }
        return String(value.dropFirst("Bearer ".count))
    }

    /// Who sent an authorized request.
    func user(_ request: Request) -> UserInfo {
        if let token = bearer(request), let user = options.identities[token] { return user }
        let token = state.withLock { $0.token }
        if request.clientCertificate || (token != nil && bearer(request) == token) { return .testClient }
        return .anonymous
    }

    /// The resources whose writes `Options.recordNodeWrite` gets: those the admission policies judge.
    static let recordedResources: Set<APIResource> = [.nodes, .peers]

    /// A write as admission sees it (what `Options.recordNodeWrite` gets).
    static func admissionRequest(_ method: String, route: Route, user: UserInfo, old: JSON?, result: JSON) -> JSON {
        let operation = ["POST": "CREATE", "DELETE": "DELETE"][method] ?? "UPDATE"
        let r = route.resource
        return .object([
            "resource": .object([
                "group": .string(r.group), "version": .string(r.version), "resource": .string(r.plural),
            ]),
            "kind": .object(["group": .string(r.group), "version": .string(r.version), "kind": .string(r.kind)]),
            "userInfo": user.json, "operation": .string(operation), "subResource": .string(route.subresource ?? ""),
            "name": .string(route.name ?? ObjectMeta(result["metadata"]).name),
            "oldObject": old ?? .null, "object": operation == "DELETE" ? .null : result,
        ])
    }
}
