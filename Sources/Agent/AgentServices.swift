import Logging
import ServiceLifecycle

/// The agent as a swift-service-lifecycle service: a graceful shutdown (SIGTERM) stops the watching
/// and leaves the data plane as it is.
public struct AgentService: Service {
    let agent: MeshAgent
    let wakeups: AsyncStream<Void>?

    public init(_ agent: MeshAgent, wakeups: AsyncStream<Void>? = nil) {
        self.agent = agent
        self.wakeups = wakeups
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown { try await agent.run(wakeups: wakeups) }
    }
}

/// `/metrics`, `/healthz` and `/readyz` for as long as the group runs.
public struct HealthService: Service {
    let host: String?
    let port: Int
    let agent: MeshAgent
    let logger: Logger

    /// `host` nil listens on every address (IPv6 and IPv4, or IPv4 alone where the node has no IPv6).
    public init(host: String?, port: Int, agent: MeshAgent, logger: Logger) {
        self.host = host
        self.port = port
        self.agent = agent
        self.logger = logger
    }

    public func run() async throws {
        let agent = self.agent
        let server = try await HealthServer.start(
            host: host, port: port, metrics: { agent.metrics.registry.emitToString() },
            readiness: { agent.readiness })
        logger.info("metrics and health listening", metadata: ["port": "\(server.port ?? port)"])
        try? await gracefulShutdown()
        try await server.stop()
    }
}
