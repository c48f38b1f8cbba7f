import Kube
import NIOHTTP1
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension TestAPIServer {
    /// A failure injected into matching requests.
    public struct Fault: Sendable {
        public enum Effect: Sendable {
            /// Answer with this HTTP status and a Status body (500, 503, 429, 409 Conflict, 410 Expired …).
            case status(Int)
            /// Answer normally, this much later.
            case delay(Duration)
            /// Close the connection without answering.
            case closeConnection
            /// A watch: send this many events, then cut the connection mid-stream.
            case dropWatch(afterEvents: Int)
            /// A watch: answer with one ERROR event holding 410 Expired, as for a compacted version.
            case expireWatch
        }

        public var effect: Effect
        /// GET, PATCH, …; nil matches any.
        public var method: String?
        /// A substring of the path and query (`/nodes/n1`, `continue=`); nil matches any.
        public var path: String?
        /// Only watches (`watch=1`), only other requests, or both (nil).
        public var watch: Bool?
        /// A substring of the User-Agent; nil matches any.
        public var userAgent: String?
        /// How many requests it applies to.
        public var count: Int

        public init(
            _ effect: Effect, method: String? = nil, path: String? = nil, watch: Bool? = nil, userAgent: String? = nil,
            count: Int = 1
        ) {
            self.effect = effect
            self.method = method
            self.path = path
            self.watch = watch
            self.userAgent = userAgent
            self.count = count
        }
    }

    public func inject(_ fault: Fault) { state.withLock { $0.faults.append(fault) } }

    public func clearFaults() { state.withLock { $0.faults = [] } }

    /// The first injected fault that matches `request`, used up by one.
    func takeFault(_ request: Request, isWatch: Bool) -> Fault.Effect? {
        state.withLock { s in
            guard
                let i = s.faults.firstIndex(where: { f in
                    (f.method == nil || f.method == request.method) && (f.path.map { request.uri.contains($0) } ?? true)
                        && (f.watch.map { $0 == isWatch } ?? true)
                        && (f.userAgent.map { request.headers.first(name: "user-agent")?.contains($0) ?? false }
                            ?? true)
                })
            else { return nil }
            s.faults[i].count -= 1
            let effect = s.faults[i].effect
            if s.faults[i].count <= 0 { s.faults.remove(at: i) }
            return effect
        }
    }

    static func faultStatus(_ code: Int) -> Status {
        switch code {
        case 409:
            return APIStore.status(
                409, "Conflict",
                """
                Operation cannot be fulfilled: the object has been modified; \
                please apply your changes to the latest version and try again
                """)
        case 410: return APIStore.status(410, "Expired", "The resourceVersion for the provided list is too old.")
        case 429:
            return APIStore.status(
                429, "TooManyRequests", "the server has received too many requests and has asked us to try again later")
        // A ValidatingAdmissionPolicy's denial (its default reason, Invalid).
        case 422:
            return APIStore.status(
                422, "Invalid",
                """
                ValidatingAdmissionPolicy 'wgmesh-agent-own-node' with binding 'wgmesh-agent-own-node' \
                denied request: injected refusal
                """)
        case 503:
            return APIStore.status(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        default: return APIStore.status(code, "InternalError", "Internal error occurred: injected fault")
        }
    }
}
