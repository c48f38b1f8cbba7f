import WGMeshCore
#if canImport(Glibc)
    import Glibc
#endif

/// WireGuard in userspace: `wireguard-go`, configured through its UAPI socket
/// (`/var/run/wireguard/NAME.sock`, wireguard.com/xplatform) with the same meaning as the kernel's
/// generic netlink: the same DeviceConfig in, the same DeviceState out.
public final class UserspaceWireGuard: WireGuardDevice, @unchecked Sendable {
    /// Where wireguard-go puts its sockets.
    public let socketDirectory: String

    public init(socketDirectory: String = "/var/run/wireguard") { self.socketDirectory = socketDirectory }

    public func socketPath(_ name: String) -> String { socketDirectory + "/" + name + ".sock" }

    public func device(named name: String) throws -> DeviceState {
        let operation = "get device \(name)"
        let answer = try exchange(UAPI.getRequest, with: name, operation: operation)
        do {
            var device = try UAPI.device(named: name, from: answer)
            device.interfaceIndex = if_nametoindex(name)
            return device
        } catch {
            throw UserspaceError(operation: operation, errno: error.errno, detail: error.message)
        }
    }

    public func configure(_ name: String, _ config: DeviceConfig) throws {
        let operation = "set device \(name) (\(config.peers.count) peer changes)"
        let answer = try exchange(UAPI.setRequest(config), with: name, operation: operation)
        let code: Int32
        do { code = try UAPI.errno(of: answer) } catch {
            throw UserspaceError(operation: operation, errno: nil, detail: error.message)
        }
        if code != 0 {
            throw UserspaceError(operation: operation, errno: code, detail: "wireguard-go refused the configuration")
        }
    }

    /// True when a wireguard-go answers on the interface's socket.
    public func answers(_ name: String) -> Bool {
        (try? exchange(UAPI.getRequest, with: name, operation: "probe")) != nil
    }

    /// True when a process listens on the interface's socket: a connection and nothing sent, so that polling
    /// it stays cheap however many peers the device has (`answers` reads its whole configuration).
    public func accepts(_ name: String) -> Bool {
        guard let fd = try? connect(name, operation: "probe") else { return false }
        close(fd)
        return true
    }

    /// A connected socket to the interface's wireguard-go; the caller closes it.
    func connect(_ name: String, operation: String) throws -> Int32 {
        let path = socketPath(name)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw UserspaceError(operation: operation, errno: errno, detail: "socket") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw UserspaceError(operation: operation, errno: ENAMETOOLONG, detail: "socket path \(path) is too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let e = errno
            close(fd)
            throw UserspaceError(
                operation: operation, errno: e,
                detail: "no wireguard-go answers on \(path)"
                    + (e == ENOENT ? ": is it running for this interface?" : ""))
        }
        return fd
    }

    /// Sends one request and reads the answer up to its blank line.
    func exchange(_ request: String, with name: String, operation: String) throws -> String {
        let path = socketPath(name)
        let fd = try connect(name, operation: operation)
        defer { close(fd) }
        var out = Array(request.utf8)[...]
        while !out.isEmpty {
            let n = out.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw UserspaceError(operation: operation, errno: errno, detail: "write to \(path)") }
            out = out.dropFirst(n)
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        // An answer ends with "errno=N\n\n".
        while !(answer.count >= 2 && answer[answer.count - 2] == 10 && answer[answer.count - 1] == 10
            && Self.hasErrno(answer))
        {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 { throw UserspaceError(operation: operation, errno: errno, detail: "read from \(path)") }
            if n == 0 { break }
            answer += buffer[..<n]
        }
        return String(decoding: answer, as: UTF8.self)
    }

    static func hasErrno(_ answer: [UInt8]) -> Bool {
        // Cheap: the last line before the blank one starts with "errno=".
        guard let start = answer.dropLast(2).lastIndex(of: 10).map({ $0 + 1 }) ?? (answer.count > 2 ? 0 : nil) else {
            return false
        }
        return answer[start...].starts(with: Array("errno=".utf8))
    }
}

/// A UAPI request failed: the operation, wireguard-go's errno, and what to do.
public struct UserspaceError: Error, CustomStringConvertible {
    public var operation: String
    public var errno: Int32?
    public var detail: String

    public var description: String {
        "\(operation): \(detail)" + (errno.map { " (\(String(cString: strerror($0))))" } ?? "")
    }
}
