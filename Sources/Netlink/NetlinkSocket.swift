import CMnl
#if canImport(Glibc)
    import Glibc
#endif

/// A netlink socket (libmnl) that sends requests one at a time and reads their answers.
final class NetlinkSocket {
    private let socket: OpaquePointer
    private let portID: UInt32
    private var sequence: UInt32
    /// Receive buffer: larger than the 32 KiB the kernel puts in one dump message.
    private var receiveBuffer: UnsafeMutableRawBufferPointer

    /// Opens a socket of `netlinkProtocol` (`NETLINK_GENERIC`, `NETLINK_ROUTE`), optionally inside the
    /// network namespace at `namespacePath` (`/run/netns/NAME`, `/proc/PID/ns/net`); the socket stays bound
    /// to that namespace for its whole life.
    /// `groups`: the multicast groups to listen to (`RTMGRP_LINK`), for a socket that reads notifications.
    init(protocol netlinkProtocol: Int32, namespacePath: String? = nil, groups: UInt32 = 0) throws {
        let opened: OpaquePointer? = try NetlinkSocket.inNamespace(namespacePath) { mnl_socket_open(netlinkProtocol) }
        guard let socket = opened else {
            throw NetlinkError(operation: "open netlink socket", errno: Glibc.errno)
        }
        self.socket = socket
        var one: Int32 = 1
        // Ask for the kernel's error text, and for acks that do not echo our (possibly 32 KiB) request.
        _ = mnl_socket_setsockopt(socket, NETLINK_EXT_ACK, &one, socklen_t(MemoryLayout<Int32>.size))
        _ = mnl_socket_setsockopt(socket, NETLINK_CAP_ACK, &one, socklen_t(MemoryLayout<Int32>.size))
        guard mnl_socket_bind(socket, groups, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let e = Glibc.errno
            mnl_socket_close(socket)
            throw NetlinkError(operation: "bind netlink socket", errno: e)
        }
        portID = mnl_socket_get_portid(socket)
        sequence = UInt32(truncatingIfNeeded: time(nil))
        receiveBuffer = .allocate(byteCount: 1 << 16, alignment: 8)
    }

    deinit {
        mnl_socket_close(socket)
        receiveBuffer.deallocate()
    }

    /// Runs `body` with the calling thread inside another network namespace, then returns to the original.
    static func inNamespace<T>(_ path: String?, _ body: () throws -> T) throws -> T {
        guard let path else { return try body() }
        let original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard original >= 0 else { throw NetlinkError(operation: "open own network namespace", errno: Glibc.errno) }
        defer { close(original) }
        let target = open(path, O_RDONLY | O_CLOEXEC)
        guard target >= 0 else {
            throw NetlinkError(
                operation: "open network namespace \(path)", errno: Glibc.errno,
                detail: "check that the namespace exists (ip netns list)")
        }
        defer { close(target) }
        guard cmnl_enter_net_namespace(target) == 0 else {
            throw NetlinkError(operation: "enter network namespace \(path)", errno: Glibc.errno)
        }
        defer {
            // Failing to return would leave this thread in the wrong namespace: nothing sane can follow.
            precondition(cmnl_enter_net_namespace(original) == 0, "cannot return to the original network namespace")
        }
        return try body()
    }

    /// Sends one request with NLM_F_ACK and waits for its acknowledgement; replies before it go to `onReply`.
    func request(
        _ message: MessageBuilder, operation: @autoclosure () -> String,
        onReply: (ReceivedMessage) throws -> Void = { _ in }
    ) throws {
        try transact(message, dump: false, operation: operation, onReply: onReply)
    }

    /// Sends a dump request and passes every reply message to `onReply` until NLMSG_DONE.
    func dump(
        _ message: MessageBuilder, operation: @autoclosure () -> String,
        onReply: (ReceivedMessage) throws -> Void
    ) throws {
        try transact(message, dump: true, operation: operation, onReply: onReply)
    }

    func transact(
        _ message: MessageBuilder, dump: Bool, operation: () -> String,
        onReply: (ReceivedMessage) throws -> Void
    ) throws {
        sequence &+= 1
        let seq = sequence
        message.header.pointee.nlmsg_seq = seq
        message.header.pointee.nlmsg_flags |= UInt16(NLM_F_REQUEST | (dump ? NLM_F_DUMP : NLM_F_ACK))
        let sent = mnl_socket_sendto(socket, message.header, message.length)
        guard sent == message.length else {
            throw NetlinkError(operation: operation(), errno: sent < 0 ? Glibc.errno : EMSGSIZE)
        }

        while true {
            let n = mnl_socket_recvfrom(socket, receiveBuffer.baseAddress, receiveBuffer.count)
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw NetlinkError(operation: operation(), errno: Glibc.errno)
            }
            for (header, body) in received(count: n) {
                // Replies to another request on this socket (there are none: one request at a time) are skipped.
                if header.nlmsg_seq != seq || (header.nlmsg_pid != 0 && header.nlmsg_pid != portID) { continue }
                switch Int32(header.nlmsg_type) {
                case NLMSG_NOOP:
                    continue
                case NLMSG_ERROR:
                    let error = body.count >= 4 ? body.loadUnaligned(as: Int32.self) : -EPROTO
                    if error == 0 { return }  // the ack
                    throw NetlinkError(
                        operation: operation(), errno: -error,
                        kernelMessage: NetlinkSocket.extendedAck(flags: header.nlmsg_flags, body: body))
                case NLMSG_DONE:
                    let error = body.count >= 4 ? body.loadUnaligned(as: Int32.self) : 0
                    if error != 0 {
                        throw NetlinkError(
                            operation: operation(), errno: -error,
                            kernelMessage: NetlinkSocket.extendedAck(flags: header.nlmsg_flags, body: body, done: true))
                    }
                    return
                case NLMSG_OVERRUN:
                    throw NetlinkError(operation: operation(), errno: ENOBUFS)
                default:
                    try onReply(ReceivedMessage(type: header.nlmsg_type, flags: header.nlmsg_flags, body: body))
                }
            }
        }
    }

    /// Waits up to `timeout` for notifications and passes each message to `onMessage`; returns false
    /// when the kernel dropped some because this socket's buffer was full (ENOBUFS).
    func receiveNotifications(timeout: Duration, _ onMessage: (ReceivedMessage) -> Void) throws -> Bool {
        var tv = timeval(
            tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(mnl_socket_get_fd(socket), SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let n = mnl_socket_recvfrom(socket, receiveBuffer.baseAddress, receiveBuffer.count)
        if n < 0 {
            switch Glibc.errno {
            case EAGAIN, EINTR: return true
            case ENOBUFS: return false
            case let e: throw NetlinkError(operation: "read rtnetlink notifications", errno: e)
            }
        }
        for (header, body) in received(count: n) {
            onMessage(ReceivedMessage(type: header.nlmsg_type, flags: header.nlmsg_flags, body: body))
        }
        return true
    }

    /// The messages in the first `n` bytes of the receive buffer, each header with its body; a message
    /// whose length does not fit ends the walk.
    private func received(count n: Int) -> [(header: nlmsghdr, body: UnsafeRawBufferPointer)] {
        var messages: [(header: nlmsghdr, body: UnsafeRawBufferPointer)] = []
        var offset = 0
        while offset + MemoryLayout<nlmsghdr>.size <= n {
            let base = receiveBuffer.baseAddress! + offset
            let header = base.loadUnaligned(as: nlmsghdr.self)
            let length = Int(header.nlmsg_len)
            guard length >= MemoryLayout<nlmsghdr>.size, offset + length <= n else { break }
            messages.append(
                (
                    header,
                    UnsafeRawBufferPointer(
                        start: base + MemoryLayout<nlmsghdr>.size, count: length - MemoryLayout<nlmsghdr>.size)
                ))
            offset += (length + 3) & ~3
        }
        return messages
    }

    /// The NLMSGERR_ATTR_MSG text of an error or done message, if the kernel attached one.
    static func extendedAck(flags: UInt16, body: UnsafeRawBufferPointer, done: Bool = false) -> String? {
        guard flags & UInt16(NLM_F_ACK_TLVS) != 0 else { return nil }
        var offset = 4  // the error code
        if !done {
            // struct nlmsgerr: error, then the request's header (and its payload unless capped).
            let echoed =
                body.count >= 8 + MemoryLayout<nlmsghdr>.size
                ? Int(body.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) : 0
            offset += flags & UInt16(NLM_F_CAPPED) != 0 ? MemoryLayout<nlmsghdr>.size : echoed
        }
        offset = (offset + 3) & ~3
        guard offset < body.count else { return nil }
        return Attribute.parse(UnsafeRawBufferPointer(rebasing: body[offset...]))
            .first { $0.type == UInt16(NLMSGERR_ATTR_MSG.rawValue) }?.string
    }
}
