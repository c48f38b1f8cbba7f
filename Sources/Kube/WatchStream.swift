import AsyncHTTPClient
import NIOCore

/// The events of one watch response, decoded as they arrive: the body is one JSON object per line.
/// It ends when the server ends the watch (`timeoutSeconds`, or after an ERROR event); a broken
/// connection throws `KubeError.transport`.
public struct WatchStream: AsyncSequence, Sendable {
    public typealias Element = WatchEvent
    let body: HTTPClientResponse.Body
    let request: String

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(chunks: body.makeAsyncIterator(), request: request)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var chunks: HTTPClientResponse.Body.AsyncIterator
        let request: String
        var buffer: [UInt8] = []
        /// Where the unread part of `buffer` starts: lines are consumed by moving it, not by copying.
        var start = 0
        var ended = false

        public mutating func next() async throws -> WatchEvent? {
            while true {
                if let newline = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
                    let line = buffer[start..<newline]
                    start = newline + 1
                    if let event = try decode(line) { return event }
                    continue
                }
                if ended {
                    // A last line without a newline is still an event.
                    defer {
                        buffer = []
                        start = 0
                    }
                    return try decode(buffer[start...])
                }
                let chunk: ByteBuffer?
                do {
                    chunk = try await chunks.next()
                } catch {
                    throw KubeError.transport(request, error, context: "the watch connection broke: ")
                }
                buffer.removeFirst(start)
                start = 0
                if let chunk { buffer.append(contentsOf: chunk.readableBytesView) } else { ended = true }
            }
        }

        func decode(_ line: ArraySlice<UInt8>) throws(KubeError) -> WatchEvent? {
            guard
                line.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\t") }
                )
            else { return nil }
            let json: JSON
            do {
                json = try JSON.parse(line)
            } catch {
                throw .decoding(request: request, .notAnObject(String(decoding: line.prefix(80), as: UTF8.self)))
            }
            do {
                return try WatchEvent(json: json)
            } catch {
                throw .decoding(request: request, error)
            }
        }
    }
}
