import CrispCore

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

/// Maps method names to handlers. `handle` turns any request bytes into reply bytes
/// and never throws or traps: unknown versions, unknown methods, undecodable bytes
/// and handler failures all become error replies.
public struct IPCRouter: Sendable {
  /// The request bytes, and the trace the request continues (nil: it carried none).
  typealias RawHandler = @Sendable ([UInt8], IPCTraceContext?) async -> [UInt8]
  private var handlers: [String: RawHandler] = [:]

  public init() {
    register(Ping.self) { request in Ping.Response(payload: request.payload) }
  }

  public var methods: [String] { handlers.keys.sorted() }

  /// Answers `oldName` as `method` (registered before): a method renamed stays
  /// reachable by a peer of the previous release while the daemons restart one by one.
  public mutating func alias<M: IPCMethod>(_ oldName: String, for method: M.Type) {
    handlers[oldName] = handlers[M.name]
  }

  public mutating func register<M: IPCMethod>(
    _ method: M.Type, handler: @escaping @Sendable (M.Request) async throws -> M.Response
  ) {
    handlers[M.name] = { bytes, trace in
      let request: M.Request
      do {
        let decoded = try WireCodec.decode(RequestParams<M.Request>.self, from: bytes)
        if let params = decoded.params {
          request = params
        } else {
          request = try WireCodec.decode(M.Request.self, from: Array("{}".utf8))
        }
      } catch {
        return WireCodec.errorReply(
          CrispError(.invalidArgument, "bad params for \(M.name): \(WireCodec.describe(error))"))
      }
      do {
        // Traced only when the request carried a trace (calls outside any traced
        // operation, health polls, crispctl, start none) and a tracer is installed.
        let response =
          if let trace, let tracer = IPCTracing.current {
            try await tracer.traceRequest(method: M.name, continuing: trace) { try await handler(request) }
          } else {
            try await handler(request)
          }
        return try WireCodec.encode(ReplyEnvelope(result: response, error: nil))
      } catch let error as CrispError {
        return WireCodec.errorReply(error)
      } catch {
        return WireCodec.errorReply(CrispError(.internal, "\(M.name) failed: \(error)"))
      }
    }
  }

  public func handle(_ bytes: [UInt8]) async -> [UInt8] {
    guard bytes.count <= IPCProtocol.maxMessageBytes else {
      return WireCodec.errorReply(
        CrispError(.invalidArgument, "request of \(bytes.count) bytes exceeds \(IPCProtocol.maxMessageBytes)"))
    }
    let header: RequestHeader
    do {
      header = try WireCodec.decode(RequestHeader.self, from: bytes)
    } catch {
      return WireCodec.errorReply(
        CrispError(.invalidArgument, "undecodable request: \(WireCodec.describe(error))"))
    }
    guard let version = header.v else {
      return WireCodec.errorReply(CrispError(.invalidArgument, "request has no protocol version field 'v'"))
    }
    guard version == IPCProtocol.version else {
      return WireCodec.errorReply(
        CrispError(
          .failedPrecondition,
          "unsupported IPC protocol version \(version): this daemon speaks version \(IPCProtocol.version)"))
    }
    guard let method = header.method else {
      return WireCodec.errorReply(CrispError(.invalidArgument, "request has no 'method' field"))
    }
    guard let handler = handlers[method] else {
      return WireCodec.errorReply(
        CrispError(.unimplemented, "unknown method '\(method)' (known: \(methods.joined(separator: ", ")))"))
    }
    let reply = await handler(bytes, header.trace)
    guard reply.count <= IPCProtocol.maxReplyBytes else {
      return WireCodec.errorReply(
        CrispError(
          .resourceExhausted,
          "the reply to '\(method)' has \(reply.count) bytes, more than the \(IPCProtocol.maxReplyBytes) a peer accepts"
        ))
    }
    return reply
  }
}
