import CrispCore

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

/// The wire format: JSON a person can read and type while debugging, e.g.
///
///     nngcat --req0 --dial ipc:///run/crisp/imaged.ipc --ascii \
///       --data '{"v":1,"method":"health"}'
///
/// request  `{"v":1,"method":"health","params":{…}}` (params may be left out when empty;
///          `"traceparent"` and `"tracestate"`, W3C trace context, only when tracing)
/// reply    `{"v":1,"result":{…}}` or `{"v":1,"error":{"code":"notFound","message":"…"}}`
/// event    `{"v":1,"event":"container.exited","data":{…}}`
public enum IPCProtocol {
  /// Bumped on any incompatible change of the message set; a peer speaking another
  /// version gets an error reply naming both versions.
  public static let version = 1
  /// Bytes beyond this are refused before decoding: no message crisp sends comes close.
  public static let maxMessageBytes = 4 << 20
  /// Replies may be larger (a list of every image or container of a busy node), but
  /// bounded all the same: a reply beyond it becomes an error reply.
  public static let maxReplyBytes = 64 << 20
}

struct RequestHeader: Decodable {
  var v: Int?
  var method: String?
  /// Untrusted: kept only when valid (IPCTraceContext), and a field of the wrong type
  /// is dropped, not an error: tracing never fails a request.
  var trace: IPCTraceContext?

  enum CodingKeys: String, CodingKey {
    case v, method, traceparent, tracestate
  }

  init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    v = try container.decodeIfPresent(Int.self, forKey: .v)
    method = try container.decodeIfPresent(String.self, forKey: .method)
    trace = IPCTraceContext(
      traceparent: try? container.decodeIfPresent(String.self, forKey: .traceparent),
      tracestate: try? container.decodeIfPresent(String.self, forKey: .tracestate))
  }
}

/// The trace fields are left out when nil, so a request without tracing is byte for
/// byte what it was before them; peers that predate them ignore them.
struct RequestEnvelope<Params: Encodable>: Encodable {
  var v = IPCProtocol.version
  var method: String
  var params: Params
  var traceparent: String? = nil
  var tracestate: String? = nil
}

struct RequestParams<Params: Decodable>: Decodable {
  var params: Params?
}

struct WireError: Codable, Sendable {
  var code: String
  var message: String
}

struct ReplyEnvelope<Result: Codable>: Codable {
  var v = IPCProtocol.version
  var result: Result?
  var error: WireError?
}

struct ReplyHeader: Decodable {
  var v: Int?
  var error: WireError?
}

struct EventEnvelope<Data: Codable>: Codable {
  var v = IPCProtocol.version
  var event: String
  var data: Data
}

struct EventHeader: Decodable {
  var v: Int?
  var event: String?
}

enum WireCodec {
  static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return Array(try encoder.encode(value))
  }

  static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
    try JSONDecoder().decode(type, from: Data(bytes))
  }

  /// A reply carrying an error; encoding two strings cannot fail.
  static func errorReply(_ error: CrispError) -> [UInt8] {
    let reply = ReplyEnvelope<Empty>(result: nil, error: WireError(code: error.code.rawValue, message: error.message))
    return (try? encode(reply)) ?? Array(#"{"v":1,"error":{"code":"internal","message":"unencodable error"}}"#.utf8)
  }

  /// A short, printable description of why bytes did not decode, for error replies.
  static func describe(_ error: any Error) -> String {
    switch error {
    case DecodingError.keyNotFound(let key, let context):
      return "missing field '\(path(context.codingPath + [key]))'"
    case DecodingError.typeMismatch(let type, let context):
      return "field '\(path(context.codingPath))' is not \(type)"
    case DecodingError.valueNotFound(let type, let context):
      return "field '\(path(context.codingPath))' must be \(type), found null"
    case DecodingError.dataCorrupted(let context):
      return context.codingPath.isEmpty
        ? "not valid JSON" : "field '\(path(context.codingPath))': \(context.debugDescription)"
    default:
      return "\(error)"
    }
  }

  private static func path(_ keys: [any CodingKey]) -> String {
    keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
  }
}
