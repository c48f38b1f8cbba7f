import Kube
import NIOCore
import NIOHTTP1
import NIOSSL
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One connection: gathers each request, answers it, or hands the connection to a watch.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let server: TestAPIServer
    var tls = false
    var head: HTTPRequestHead?
    var body = ByteBuffer()

    init(server: TestAPIServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
        case .body(var b):
            body.writeBuffer(&b)
        case .end:
            guard let head else { return }
            self.head = nil
            let (path, query) = HTTPHandler.split(head.uri)
            var clientCertificate = false
            if tls, let ssl = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self) {
                // optionalVerification: a certificate that was sent has been verified against the test CA.
                clientCertificate = ssl.peerCertificate != nil
            }
            let request = TestAPIServer.Request(
                method: head.method.rawValue, uri: head.uri, path: path, query: query, headers: head.headers,
                body: body, clientCertificate: clientCertificate)
            switch server.handle(request, channel: context.channel) {
            case .watching:
                break
            case .close:
                context.close(promise: nil)
            case .json(let status, let json, let delay):
                let keepAlive = head.isKeepAlive
                let respond = { [self] in
                    self.respond(context: context, status: status, json: json, keepAlive: keepAlive)
                }
                if let delay {
                    context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(delay)) { respond() }
                } else {
                    respond()
                }
            }
        }
    }

    func respond(context: ChannelHandlerContext, status: HTTPResponseStatus, json: JSON, keepAlive: Bool) {
        let data = json.bytes
        var head = HTTPResponseHead(version: .http1_1, status: status)
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Cache-Control", value: "no-cache, private")
        head.headers.add(name: "Content-Length", value: String(data.count))
        if !keepAlive { head.headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: data)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        if !keepAlive { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.watcherGone(context.channel)
        context.fireChannelInactive()
    }

    /// Path and percent-decoded query parameters of a request target.
    static func split(_ uri: String) -> (String, [String: String]) {
        guard let q = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: q)...].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            query[decode(kv[0])] = kv.count > 1 ? decode(kv[1]) : ""
        }
        return (String(uri[..<q]), query)
    }

    static func decode(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        var i = s.utf8.startIndex
        let u = s.utf8
        while i < u.endIndex {
            let c = u[i]
            if c == UInt8(ascii: "%"), u.distance(from: i, to: u.endIndex) >= 3,
                let v = UInt8(
                    String(decoding: u[u.index(after: i)..<u.index(i, offsetBy: 3)], as: UTF8.self), radix: 16)
            {
                bytes.append(v)
                i = u.index(i, offsetBy: 3)
            } else {
                bytes.append(c == UInt8(ascii: "+") ? UInt8(ascii: " ") : c)
                i = u.index(after: i)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
