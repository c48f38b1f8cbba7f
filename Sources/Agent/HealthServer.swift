import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// `/healthz` (the process answers), `/readyz` (`readiness` gives no reason not to be: 503 with the reason
/// otherwise) and, when given, `/metrics` (Prometheus
/// text): the agent's metrics address and the controller's health address.
public final class HealthServer: Sendable {
    let channel: any Channel

    /// Listens on `host:port`; `host` nil is every address (IPv6 and IPv4, or IPv4 alone where the host has
    /// no IPv6). `metrics` nil answers /metrics with 404.
    public static func start(
        host: String?, port: Int, metrics: (@Sendable () -> String)?,
        readiness: @escaping @Sendable () -> String?
    ) async throws -> HealthServer {
        guard let host else {
            do {
                return try await start(host: "::", port: port, metrics: metrics, readiness: readiness)
            } catch {
                return try await start(host: "0.0.0.0", port: port, metrics: metrics, readiness: readiness)
            }
        }
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(metrics: metrics, readiness: readiness))
                }
            }
        return HealthServer(channel: try await bootstrap.bind(host: host, port: port).get())
    }

    init(channel: any Channel) { self.channel = channel }

    public var port: Int? { channel.localAddress?.port }

    public func stop() async throws { try await channel.close() }

    final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let metrics: (@Sendable () -> String)?
        let readiness: @Sendable () -> String?

        init(metrics: (@Sendable () -> String)?, readiness: @escaping @Sendable () -> String?) {
            self.metrics = metrics
            self.readiness = readiness
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .head(let head) = unwrapInboundIn(data) else { return }
            let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
            let (status, body, type): (HTTPResponseStatus, String, String)
            switch (head.method, path, metrics) {
            case (.GET, "/metrics", let metrics?): (status, body, type) = (.ok, metrics(), "text/plain; version=0.0.4")
            case (.GET, "/healthz", _): (status, body, type) = (.ok, "ok\n", "text/plain")
            case (.GET, "/readyz", _):
                let why = readiness()
                (status, body, type) = (
                    why == nil ? .ok : .serviceUnavailable, why.map { "not ready: \($0)\n" } ?? "ok\n", "text/plain"
                )
            default: (status, body, type) = (.notFound, "not found\n", "text/plain")
            }
            var headers = HTTPHeaders([
                ("Content-Type", type), ("Content-Length", String(body.utf8.count)), ("Connection", "close"),
            ])
            headers.replaceOrAdd(name: "Cache-Control", value: "no-store")
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
                promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
