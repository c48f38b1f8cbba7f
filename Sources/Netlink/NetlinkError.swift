#if canImport(Glibc)
    import Glibc
#endif

/// A failed netlink operation: what was being done, the kernel's errno and its extended-ack text.
public struct NetlinkError: Error, CustomStringConvertible, Equatable {
    /// What wgmesh was doing, for example `set peer xTIB…=`.
    public var operation: String
    /// The positive errno, or 0 when the failure was not the kernel's.
    public var errno: Int32
    /// The kernel's extended acknowledgement message, when it sent one.
    public var kernelMessage: String?
    /// A problem found before anything was sent.
    public var detail: String?

    public init(operation: String, errno: Int32, kernelMessage: String? = nil, detail: String? = nil) {
        self.operation = operation
        self.errno = errno
        self.kernelMessage = kernelMessage
        self.detail = detail
    }

    /// A rejection of bad input, made before anything reached the kernel.
    static func invalid(_ operation: String, _ detail: String) -> NetlinkError {
        NetlinkError(operation: operation, errno: 0, detail: detail)
    }

    public var description: String {
        var s = operation + ": "
        if let detail { s += detail }
        if errno != 0 {
            s += (detail == nil ? "" : "; ") + "\(NetlinkError.errnoName(errno)) (\(String(cString: strerror(errno))))"
        }
        if let kernelMessage, !kernelMessage.isEmpty { s += ": kernel says \"\(kernelMessage)\"" }
        return s
    }

    static func errnoName(_ e: Int32) -> String {
        switch e {
        case EPERM: return "EPERM"
        case ENOENT: return "ENOENT"
        case EEXIST: return "EEXIST"
        case EINVAL: return "EINVAL"
        case ENODEV: return "ENODEV"
        case EBUSY: return "EBUSY"
        case ENOMEM: return "ENOMEM"
        case EOPNOTSUPP: return "EOPNOTSUPP"
        case ENETDOWN: return "ENETDOWN"
        case EMSGSIZE: return "EMSGSIZE"
        case EADDRNOTAVAIL: return "EADDRNOTAVAIL"
        case ESRCH: return "ESRCH"
        case ENOBUFS: return "ENOBUFS"
        case EAFNOSUPPORT: return "EAFNOSUPPORT"
        default: return "errno \(e)"
        }
    }
}
