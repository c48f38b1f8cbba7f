import NIOCore
import NIOPosix
import Synchronization
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A forward proxy on loopback for tests: HTTP CONNECT (Basic authentication when `credentials` is set)
/// and SOCKS5 without authentication, both on one port. It records every target it is asked for, and
/// connects to `hosts[name]` instead of a name, so that a client can be sent to a name no resolver knows.
public final class TestProxy: Sendable {
    public let port: Int
    let hosts: [String: String]
    /// `user:password` that CONNECT must present.
    let credentials: String?
    let group: MultiThreadedEventLoopGroup
    let channel: any Channel
    let recorded = Mutex<[String]>([])

    /// The targets asked for, as `host:port`, in order (refused ones too).
    public var targets: [String] { recorded.withLock { $0 } }

    public static func start(hosts: [String: String] = [:], credentials: (user: String, password: String)? = nil)
        async throws -> TestProxy
    {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let box = Mutex<TestProxy?>(nil)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ProxyHandshakeHandler(proxy: box.withLock { $0 }!))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let proxy = TestProxy(
            channel: channel, group: group, hosts: hosts, credentials: credentials.map { "\($0.user):\($0.password)" })
        box.withLock { $0 = proxy }
        return proxy
    }

    init(channel: any Channel, group: MultiThreadedEventLoopGroup, hosts: [String: String], credentials: String?) {
        self.channel = channel
        self.group = group
        self.hosts = hosts
        self.credentials = credentials
        port = channel.localAddress?.port ?? 0
    }

    public func stop() async throws {
        try await channel.close()
        try await group.shutdownGracefully()
    }

    /// `http://127.0.0.1:PORT`, or with another scheme (`socks5`).
    public func url(scheme: String = "http") -> String { "\(scheme)://127.0.0.1:\(port)" }
}

/// Reads a CONNECT request or a SOCKS5 greeting and request, connects to the target, answers, and
/// then relays bytes both ways.
final class ProxyHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let proxy: TestProxy
    var buffer = ByteBuffer()
    var socksGreeted = false
    var connecting = false

    init(proxy: TestProxy) { self.proxy = proxy }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffer.writeBuffer(&bytes)
        guard !connecting, let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        if first == 5 { socks(context) } else { httpConnect(context) }
    }

    func httpConnect(_ context: ChannelHandlerContext) {
        let view = buffer.readableBytesView
        guard let end = view.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
        let head = String(decoding: view[..<end.lowerBound], as: UTF8.self)
        buffer.moveReaderIndex(to: end.upperBound)
        let lines = head.split(separator: "\r\n").map(String.init)
        let words = lines.first?.split(separator: " ").map(String.init) ?? []
        guard words.count == 3, words[0] == "CONNECT" else {
            return reply(context, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n", close: true)
        }
        proxy.recorded.withLock { $0.append(words[1]) }
        if let credentials = proxy.credentials {
            let expected = "proxy-authorization: basic " + Data(credentials.utf8).base64EncodedString().lowercased()
            guard lines.contains(where: { $0.lowercased() == expected }) else {
                return reply(
                    context,
                    "HTTP/1.1 407 Proxy Authentication Required\r\n"
                        + "Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
                    close: true)
            }
        }
        guard let colon = words[1].lastIndex(of: ":"), let port = Int(words[1][words[1].index(after: colon)...]) else {
            return reply(context, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", close: true)
        }
        var host = words[1][..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        relay(
            context, host: String(host), port: port, success: Array("HTTP/1.1 200 Connection established\r\n\r\n".utf8),
            failure: Array("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n".utf8))
    }

    /// RFC 1928: a greeting offering "no authentication", then a CONNECT to an IPv4 or domain target.
    func socks(_ context: ChannelHandlerContext) {
        let bytes = Array(buffer.readableBytesView)
        if !socksGreeted {
            guard bytes.count >= 2, bytes.count >= 2 + Int(bytes[1]) else { return }
            buffer.moveReaderIndex(forwardBy: 2 + Int(bytes[1]))
            guard bytes[2..<(2 + Int(bytes[1]))].contains(0) else { return reply(context, [5, 0xff], close: true) }
            socksGreeted = true
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: [5, 0])), promise: nil)
            return socks(context)
        }
        guard bytes.count >= 5, bytes[1] == 1 else { return }
        let host: String
        let length: Int
        switch bytes[3] {
        case 1: (host, length) = (bytes[4..<min(8, bytes.count)].map(String.init).joined(separator: "."), 4)
        case 3:
            (host, length) = (
                String(decoding: bytes.dropFirst(5).prefix(Int(bytes[4])), as: UTF8.self), 1 + Int(bytes[4])
            )
        default: return reply(context, [5, 8, 0, 1, 0, 0, 0, 0, 0, 0], close: true)
        }
        guard bytes.count >= 4 + length + 2 else { return }
        let port = Int(bytes[4 + length]) << 8 | Int(bytes[5 + length])
        buffer.moveReaderIndex(forwardBy: 6 + length)
        proxy.recorded.withLock { $0.append("\(host):\(port)") }
        relay(
            context, host: host, port: port, success: [5, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            failure: [5, 5, 0, 1, 0, 0, 0, 0, 0, 0])
    }

    func reply(_ context: ChannelHandlerContext, _ text: String, close: Bool) {
        reply(context, Array(text.utf8), close: close)
    }

    func reply(_ context: ChannelHandlerContext, _ bytes: [UInt8], close: Bool) {
        let written = context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes)))
        if close { written.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }

    /// Connects to the target (or the address `hosts` gives for it), answers, and glues the two channels.
    func relay(_ context: ChannelHandlerContext, host: String, port: Int, success: [UInt8], failure: [UInt8]) {
        connecting = true
        let inbound = context.channel
        ClientBootstrap(group: context.eventLoop)
            .channelInitializer { outbound in
                outbound.eventLoop.makeCompletedFuture {
                    try outbound.pipeline.syncOperations.addHandler(RelayHandler(partner: inbound))
                }
            }
            .connect(host: proxy.hosts[host] ?? host, port: port)
            .assumeIsolated()
            .whenComplete { [self] result in
                switch result {
                case .success(let outbound):
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: success)), promise: nil)
                    let rest = buffer
                    do {
                        try context.pipeline.syncOperations.addHandler(RelayHandler(partner: outbound))
                    } catch {
                        context.close(promise: nil)
                        return
                    }
                    context.pipeline.syncOperations.removeHandler(self, promise: nil)
                    if rest.readableBytes > 0 { outbound.writeAndFlush(rest, promise: nil) }
                case .failure:
                    reply(context, failure, close: true)
                }
            }
    }
}

/// Writes whatever one channel reads to its partner, and closes the partner when it closes.
final class RelayHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    let partner: any Channel

    init(partner: any Channel) { self.partner = partner }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
