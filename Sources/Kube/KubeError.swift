import NIOCore
#if canImport(Glibc)
    import Glibc
#endif

/// Why an API request failed, with the request named (`PATCH /api/v1/nodes/node-1`).
public enum KubeError: Error, CustomStringConvertible {
    /// The server answered with a failure Status (404, 409, 410, 422, 500, …).
    case api(request: String, Status)
    /// No usable answer: refused, reset, TLS, timeout.
    case transport(request: String, String)
    /// An answer that is not what the API documents.
    case decoding(request: String, KubeDecodingError)
    /// Credentials could not be read (a token file that vanished).
    case credentials(KubeConfigError)
    /// The calling task was cancelled (shutdown, or leadership lost) before the answer came.
    case cancelled(request: String)

    /// The HTTP status code of an API failure.
    public var code: Int? {
        if case .api(_, let s) = self { return s.code }
        return nil
    }

    public var status: Status? {
        if case .api(_, let s) = self { return s }
        return nil
    }

    /// 409 Conflict: a resourceVersion precondition failed; read again and retry.
    public var isConflict: Bool { code == 409 && status?.reason == "Conflict" }
    public var isNotFound: Bool { code == 404 }
    /// Worth retrying unchanged after a pause: the server or the path to it is struggling.
    public var isTransient: Bool {
        switch self {
        case .transport: return true
        case .api(_, let s): return s.code == 429 || s.code >= 500
        case .decoding, .credentials, .cancelled: return false
        }
    }

    public var description: String {
        switch self {
        case .api(let r, let s): return "\(r): \(s)"
        case .transport(let r, let why): return "\(r): \(why)"
        case .decoding(let r, let e): return "\(r): \(e)"
        case .credentials(let e): return "credentials: \(e)"
        case .cancelled(let r): return "\(r): cancelled"
        }
    }

    /// Shutting down or handing over: nothing went wrong, and nothing to log as a failure.
    public var isCancelled: Bool {
        if case .cancelled = self { return true }
        return false
    }

    /// A failure below HTTP, in words an operator reads ("connection refused", not NIO's type names);
    /// cancellation is `.cancelled`.
    static func transport(_ request: String, _ error: any Error, context: String = "") -> KubeError {
        if error is CancellationError || Task.isCancelled { return .cancelled(request: request) }
        let why: String
        if let io = error as? IOError {
            why = String(cString: strerror(io.errnoCode)).lowercased()
        } else {
            why = "\(error)"
        }
        return .transport(request: request, context + why)
    }
}

/// A time span as logs show it: `0.85s`, `12s`.
public struct Seconds: CustomStringConvertible, Sendable {
    public let value: Double
    public init(_ value: Double) { self.value = value }
    public init(_ duration: Duration) {
        let c = duration.components
        value = Double(c.seconds) + Double(c.attoseconds) / 1e18
    }

    public var description: String {
        value >= 10 ? "\(Int(value.rounded()))s" : "\((value * 100).rounded() / 100)s"
    }
}

/// Exponential backoff with jitter, so that many clients retrying do not retry in step.
public struct Backoff: Sendable {
    public var initial: Duration
    public var maximum: Duration
    public var factor: Double
    /// Each delay is stretched by a random fraction up to this.
    public var jitter: Double
    /// Delays handed out since the last reset.
    public private(set) var attempts = 0
    private var current: Duration

    public init(
        initial: Duration = .milliseconds(500), maximum: Duration = .seconds(30), factor: Double = 2,
        jitter: Double = 0.5
    ) {
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        current = initial
    }

    /// The next delay; each is `factor` times the last, capped at `maximum`, plus jitter.
    public mutating func next() -> Duration {
        let d = current
        attempts += 1
        current = min(maximum, current * factor)
        return d * (1 + Double.random(in: 0...jitter))
    }

    /// After a success: start again from `initial`.
    public mutating func reset() {
        current = initial
        attempts = 0
    }
}
