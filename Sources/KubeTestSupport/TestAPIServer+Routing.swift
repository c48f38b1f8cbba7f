import Kube
import NIOCore
import NIOHTTP1
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension TestAPIServer {
    struct Request {
        var method: String
        /// The request target as sent: path and query.
        var uri: String
        var path: String
        var query: [String: String]
        var headers: HTTPHeaders
        var body: ByteBuffer
        var clientCertificate: Bool
    }

    enum Response {
        case json(HTTPResponseStatus, JSON, delay: Duration?)
        case close
        /// The channel now belongs to a watch.
        case watching
    }

    func handle(_ request: Request, channel: any Channel) -> Response {
        let isWatch = request.query["watch"] == "1" || request.query["watch"] == "true"
        let route = Route(request.path, served: state.withLock { $0.servedResources })
        if let route {
            let verb = isWatch ? "WATCH" : (request.method == "GET" && route.name == nil ? "LIST" : request.method)
            state.withLock { $0.requests["\(verb) \(route.resource.plural)", default: 0] += 1 }
        }
        var delay: Duration?
        let fault = takeFault(request, isWatch: isWatch)
        switch fault {
        case .status(let code):
            return .json(HTTPResponseStatus(statusCode: code), TestAPIServer.faultStatus(code).json, delay: nil)
        case .closeConnection:
            return .close
        case .delay(let d):
            delay = d
        case .dropWatch, .expireWatch, nil:
            break
        }
        guard authorized(request) else {
            return .json(
                .unauthorized, Status(code: 401, reason: "Unauthorized", message: "Unauthorized").json, delay: delay)
        }
        guard let route else {
            return .json(
                .notFound, APIStore.status(404, "NotFound", "the server could not find the requested resource").json,
                delay: delay)
        }
        let key = StoreKey(resource: route.resource, namespace: route.namespace)
        let accept = request.headers.first(name: "accept") ?? ""
        let metadataOnly = accept.contains("as=PartialObjectMetadata")
        if isWatch, route.name == nil {
            var selector: LabelSelector?
            do throws(Status) {
                if let text = request.query["labelSelector"] { selector = try LabelSelector(text) }
            } catch {
                return .json(.badRequest, error.json, delay: delay)
            }
            startWatch(
                request, key: key, channel: channel, metadataOnly: metadataOnly, selector: selector, fault: fault)
            return .watching
        }
        do {
            let result = try serve(request, route: route, key: key, user: user(request))
            var body = result.body
            if metadataOnly {
                body = body["items"] != nil ? TestAPIServer.metadataList(body) : TestAPIServer.metadataObject(body)
            }
            return .json(result.status, body, delay: delay)
        } catch {
            return .json(HTTPResponseStatus(statusCode: error.code), error.json, delay: delay)
        }
    }

    func serve(_ request: Request, route: Route, key: StoreKey, user: UserInfo) throws(Status) -> (
        status: HTTPResponseStatus, body: JSON
    ) {
        func body() throws(Status) -> JSON {
            do {
                return try JSON.parse(request.body.readableBytesView)
            } catch {
                throw APIStore.status(400, "BadRequest", "the request body is not JSON: \(error)")
            }
        }
        let record: (@Sendable (JSON) -> Void)? =
            TestAPIServer.recordedResources.contains(key.resource) && request.method != "GET"
            ? options.recordNodeWrite : nil
        let store = { (body: (inout APIStore) throws(Status) -> JSON) throws(Status) -> JSON in
            let result: Result<JSON, Status> = self.withStore(key.resource, namespace: key.namespace) { s in
                do throws(Status) {
                    let old = route.name.flatMap { try? s.get($0) }
                    let result = try body(&s)
                    // Under the store's lock: the records come in the order of the writes.
                    record?(
                        TestAPIServer.admissionRequest(
                            request.method, route: route, user: user, old: old, result: result))
                    return .success(result)
                } catch { return .failure(error) }
            }
            return try result.get()
        }
        // As kube-apiserver: the fieldManager parameter, else the User-Agent up to its first "/".
        let manager =
            request.query["fieldManager"]
            ?? request.headers.first(name: "user-agent").map {
                String($0.split(separator: "/", maxSplits: 1).first ?? "")
            }
        switch (request.method, route.name) {
        case ("GET", nil):
            if request.query["resourceVersionMatch"] == "Exact",
                let rv = request.query["resourceVersion"].flatMap({ Int64($0) })
            {
                let tooOld = withStore(key.resource, namespace: key.namespace) { rv < $0.windowStart }
                if tooOld {
                    throw APIStore.status(410, "Expired", "The resourceVersion for the provided list is too old.")
                }
            }
            let limit = request.query["limit"].flatMap { Int($0) }
            var selector: LabelSelector?
            if let text = request.query["labelSelector"] { selector = try LabelSelector(text) }
            return (
                .ok,
                try store { s throws(Status) in
                    try s.list(limit: limit, continueToken: request.query["continue"], labelSelector: selector)
                }
            )
        case ("GET", let name?):
            return (.ok, try store { s throws(Status) in try s.get(name) })
        case ("POST", nil):
            var object = try body()
            if let ns = key.namespace {
                object = APIStore.mergePatch(object, .object(["metadata": .object(["namespace": .string(ns)])]))
            }
            return (.created, try store { s throws(Status) in try s.create(object, manager: manager) })
        case ("PUT", let name?):
            let object = try body()
            guard ObjectMeta(object["metadata"]).name == name else {
                throw APIStore.status(
                    400, "BadRequest",
                    """
                    the name of the object (\(ObjectMeta(object["metadata"]).name)) \
                    does not match the name on the URL (\(name))
                    """)
            }
            return (
                .ok,
                try store { s throws(Status) in try s.update(object, subresource: route.subresource, manager: manager) }
            )
        case ("PATCH", let name?):
            let content = request.headers.first(name: "content-type") ?? ""
            let b = try body()
            let patch: Patch
            switch content.split(separator: ";").first.map(String.init) ?? "" {
            case "application/merge-patch+json": patch = .merge(b)
            case "application/strategic-merge-patch+json": patch = .strategicMerge(b)
            case "application/json-patch+json": patch = .json(b.array ?? [])
            default:
                throw APIStore.status(
                    415, "UnsupportedMediaType",
                    """
                    the body of the request was in an unknown format - accepted media types include: \
                    application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml
                    """)
            }
            return (
                .ok,
                try store { s throws(Status) in
                    try s.patch(name, patch, subresource: route.subresource, manager: manager)
                }
            )
        case ("DELETE", let name?):
            return (.ok, try store { s throws(Status) in try s.delete(name) })
        default:
            throw APIStore.status(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        }
    }
    // MARK: metadata-only responses

    static func metadataObject(_ object: JSON) -> JSON {
        .object([
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": object["metadata"] ?? .object([:]),
        ])
    }

    static func metadataList(_ list: JSON) -> JSON {
        .object([
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": list["metadata"] ?? .object([:]),
            "items": .array((list["items"]?.array ?? []).map(metadataObject)),
        ])
    }
}

/// `/api/v1/nodes/NAME/status`, `/apis/GROUP/VERSION/namespaces/NS/PLURAL/NAME`.
struct Route {
    var resource: APIResource
    var namespace: String?
    var name: String?
    var subresource: String?

    /// nil unless the path names one of `served` (a resource of a CRD not yet created is 404, as on a real server).
    init?(_ path: String, served: [APIResource]) {
        var parts = path.split(separator: "/").map(String.init)[...]
        let group: String
        let version: String
        switch parts.first {
        case "api":
            guard parts.count >= 2 else { return nil }
            group = ""
            version = parts[parts.startIndex + 1]
            parts = parts.dropFirst(2)
        case "apis":
            guard parts.count >= 3 else { return nil }
            group = parts[parts.startIndex + 1]
            version = parts[parts.startIndex + 2]
            parts = parts.dropFirst(3)
        default:
            return nil
        }
        if parts.first == "namespaces", parts.count >= 3 {
            namespace = parts[parts.startIndex + 1]
            parts = parts.dropFirst(2)
        }
        guard let plural = parts.first,
            let resource = served.first(where: {
                $0.group == group && $0.version == version && $0.plural == plural
            }),
            resource.namespaced == (namespace != nil), parts.count <= 3
        else { return nil }
        self.resource = resource
        name = parts.dropFirst().first
        subresource = parts.dropFirst(2).first
    }
}
