import CMnl

/// One netlink message under construction, built with libmnl into a buffer of fixed capacity.
final class MessageBuilder {
    let capacity: Int
    private let buffer: UnsafeMutableRawPointer
    let header: UnsafeMutablePointer<nlmsghdr>

    init(capacity: Int, type: UInt16, flags: Int32) {
        self.capacity = capacity
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: capacity)
        header = mnl_nlmsg_put_header(buffer)
        header.pointee.nlmsg_type = type
        header.pointee.nlmsg_flags = UInt16(flags)
    }

    deinit { buffer.deallocate() }

    /// Appends a fixed family header (`genlmsghdr`, `ifinfomsg`, `rtmsg`, …) after the netlink header.
    func putHeader<T>(_ value: T) {
        let p = mnl_nlmsg_put_extra_header(header, MemoryLayout<T>.size)!
        p.storeBytes(of: value, as: T.self)
    }

    /// Appends an attribute if it fits; false (and nothing appended) when it does not.
    @discardableResult
    func put(_ type: UInt16, bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { mnl_attr_put_check(header, capacity, type, bytes.count, $0.baseAddress) }
    }

    @discardableResult
    func put(_ type: UInt16, u8 value: UInt8) -> Bool { mnl_attr_put_u8_check(header, capacity, type, value) }
    @discardableResult
    func put(_ type: UInt16, u16 value: UInt16) -> Bool { mnl_attr_put_u16_check(header, capacity, type, value) }
    @discardableResult
    func put(_ type: UInt16, u32 value: UInt32) -> Bool { mnl_attr_put_u32_check(header, capacity, type, value) }
    @discardableResult
    func put(_ type: UInt16, string value: String) -> Bool { mnl_attr_put_strz_check(header, capacity, type, value) }

    /// Opens a nested attribute, or nil when not even its header fits.
    func nestStart(_ type: UInt16) -> UnsafeMutablePointer<nlattr>? {
        mnl_attr_nest_start_check(header, capacity, type)
    }
    func nestEnd(_ nest: UnsafeMutablePointer<nlattr>) { mnl_attr_nest_end(header, nest) }
    /// Drops a nested attribute and everything put into it since it was opened.
    func nestCancel(_ nest: UnsafeMutablePointer<nlattr>) { mnl_attr_nest_cancel(header, nest) }

    var length: Int { Int(header.pointee.nlmsg_len) }
    var bytes: [UInt8] { Array(UnsafeRawBufferPointer(start: buffer, count: length)) }
}

/// A read-only view of one netlink attribute.
struct Attribute {
    let type: UInt16
    let payload: UnsafeRawBufferPointer

    var u8: UInt8? { payload.count >= 1 ? payload.load(as: UInt8.self) : nil }
    var u16: UInt16? { payload.count >= 2 ? payload.loadUnaligned(as: UInt16.self) : nil }
    var u32: UInt32? { payload.count >= 4 ? payload.loadUnaligned(as: UInt32.self) : nil }
    var u64: UInt64? { payload.count >= 8 ? payload.loadUnaligned(as: UInt64.self) : nil }
    var bytes: [UInt8] { Array(payload) }
    var string: String {
        let raw = payload.prefix { $0 != 0 }
        return String(decoding: raw, as: UTF8.self)
    }
    /// The attributes nested inside this one.
    var nested: [Attribute] { Attribute.parse(payload) }

    /// Splits a region into attributes, stopping at the first malformed one.
    static func parse(_ region: UnsafeRawBufferPointer) -> [Attribute] {
        var out: [Attribute] = []
        var offset = 0
        let headerSize = 4
        while offset + headerSize <= region.count {
            let length = Int(region.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            // NLA_TYPE_MASK: drop the nested and byte-order flags
            let type = region.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self) & 0x3fff
            guard length >= headerSize, offset + length <= region.count else { break }
            out.append(
                Attribute(
                    type: type,
                    payload: UnsafeRawBufferPointer(rebasing: region[(offset + headerSize)..<(offset + length)])))
            offset += (length + 3) & ~3
        }
        return out
    }
}

/// A received netlink message: its header and the bytes after it.
struct ReceivedMessage {
    let type: UInt16
    let flags: UInt16
    let body: UnsafeRawBufferPointer

    /// The fixed family header at the start of the body.
    func header<T>(as: T.Type) -> T? {
        body.count >= MemoryLayout<T>.size ? body.loadUnaligned(as: T.self) : nil
    }

    /// The attributes that follow a family header of `headerSize` bytes.
    func attributes(after headerSize: Int) -> [Attribute] {
        let aligned = (headerSize + 3) & ~3
        guard body.count >= aligned else { return [] }
        return Attribute.parse(UnsafeRawBufferPointer(rebasing: body[aligned...]))
    }
}
