import CrispCore
import Synchronization

/// W3C trace context (https://www.w3.org/TR/trace-context/) as carried in a request
/// envelope. The fields come from another process: only a well-formed `traceparent`
/// is kept, and a `tracestate` only beside one; anything else is dropped silently,
/// because a broken trace header must never fail the request it rides on.
public struct IPCTraceContext: Sendable, Equatable {
  /// Longer than any real header; a version after 00 may append fields, so not exactly 55.
  static let maxTraceparentBytes = 256
  /// The W3C limit is 32 list members of up to 256 bytes; crisp forwards 512 at most.
  static let maxTracestateBytes = 512

  public var traceparent: String
  public var tracestate: String?

  /// nil when `traceparent` is absent or malformed.
  public init?(traceparent: String?, tracestate: String?) {
    guard let traceparent, Self.isValidTraceparent(traceparent) else { return nil }
    self.traceparent = traceparent
    self.tracestate = tracestate.flatMap { Self.isValidTracestate($0) ? $0 : nil }
  }

  /// `version-traceid-parentid-flags`: lowercase hex, version ff and all-zero ids are
  /// invalid; a version other than 00 may carry more fields after the flags.
  static func isValidTraceparent(_ value: String) -> Bool {
    let bytes = Array(value.utf8)
    guard bytes.count >= 55, bytes.count <= maxTraceparentBytes else { return false }
    guard bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"), bytes[52] == UInt8(ascii: "-") else {
      return false
    }
    let version = bytes[0..<2]
    let traceID = bytes[3..<35]
    let parentID = bytes[36..<52]
    let flags = bytes[53..<55]
    for field in [version, traceID, parentID, flags] where !field.allSatisfy(isLowerHex) {
      return false
    }
    if version.elementsEqual("ff".utf8) { return false }
    if traceID.allSatisfy({ $0 == UInt8(ascii: "0") }) || parentID.allSatisfy({ $0 == UInt8(ascii: "0") }) {
      return false
    }
    if bytes.count > 55 {
      // Version 00 is exactly 55 bytes; later versions continue with "-".
      guard !version.elementsEqual("00".utf8), bytes[55] == UInt8(ascii: "-") else { return false }
      return bytes[56...].allSatisfy { $0 >= 0x20 && $0 < 0x7f }
    }
    return true
  }

  static func isValidTracestate(_ value: String) -> Bool {
    let bytes = value.utf8
    return bytes.count <= maxTracestateBytes && bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
  }

  private static func isLowerHex(_ byte: UInt8) -> Bool {
    (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
  }
}

/// How the calls between daemons are traced: a daemon that exports traces installs one
/// (CrispTracing's, on swift-distributed-tracing) before it serves or calls. Without
/// one (tracing off, and always in shimd, which links no tracing library) nothing
/// runs: no span, no trace fields in the envelope.
public protocol IPCTracer: Sendable {
  /// Around one call to `peer`: `body` gets the context to send (nil: none).
  func traceCall<R>(
    peer: String, method: String, _ body: (IPCTraceContext?) async throws(CrispError) -> R
  ) async throws(CrispError) -> R

  /// Around the handling of a request that carried `trace`.
  func traceRequest<R>(
    method: String, continuing trace: IPCTraceContext, _ body: () async throws -> R
  ) async throws -> R
}

public enum IPCTracing {
  private static let installed = Mutex<(any IPCTracer)?>(nil)

  /// Once, at start-up.
  public static func install(_ tracer: any IPCTracer) {
    installed.withLock { $0 = tracer }
  }

  static var current: (any IPCTracer)? { installed.withLock { $0 } }
}
