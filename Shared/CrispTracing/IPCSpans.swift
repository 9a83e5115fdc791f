import CrispCore
import CrispIPC
import Tracing

/// The spans of the calls between daemons, on swift-distributed-tracing: a client span
/// around each IPC call made inside a traced operation (a CRI call), a server span
/// around each request that arrived with a trace context, as that caller's child.
struct IPCSpans: IPCTracer {
  func traceCall<R>(
    peer: String, method: String, _ body: (IPCTraceContext?) async throws(CrispError) -> R
  ) async throws(CrispError) -> R {
    // Only inside a traced operation: health polls and the like start no trace.
    guard let parent = ServiceContext.current, Self.inject(parent) != nil else { return try await body(nil) }
    let span = startSpan("ipc \(peer)/\(method)", context: parent, ofKind: .client)
    defer { span.end() }
    if span.isRecording {
      span.attributes["rpc.system"] = "crisp-ipc"
      span.attributes["rpc.service"] = peer
      span.attributes["rpc.method"] = method
    }
    do {
      // Sent also when not sampled: the callee then follows that decision (flags 00).
      return try await body(Self.inject(span.context))
    } catch {
      Self.record(error, on: span)
      throw error
    }
  }

  func traceRequest<R>(
    method: String, continuing trace: IPCTraceContext, _ body: () async throws -> R
  ) async throws -> R {
    var parent = ServiceContext.topLevel
    var carrier = ["traceparent": trace.traceparent]
    if let tracestate = trace.tracestate { carrier["tracestate"] = tracestate }
    InstrumentationSystem.instrument.extract(carrier, into: &parent, using: DictionaryExtractor())
    let span = startSpan("ipc.serve \(method)", context: parent, ofKind: .server)
    defer { span.end() }
    if span.isRecording {
      span.attributes["rpc.system"] = "crisp-ipc"
      span.attributes["rpc.method"] = method
    }
    do {
      return try await ServiceContext.withValue(span.context) { try await body() }
    } catch let error as CrispError {
      Self.record(error, on: span)
      throw error
    } catch {
      Self.record(CrispError(.internal, "\(error)"), on: span)
      throw error
    }
  }

  /// The W3C context of `context` (nil when it holds no span).
  static func inject(_ context: ServiceContext) -> IPCTraceContext? {
    var carrier: [String: String] = [:]
    InstrumentationSystem.instrument.inject(context, into: &carrier, using: DictionaryInjector())
    return IPCTraceContext(traceparent: carrier["traceparent"], tracestate: carrier["tracestate"])
  }

  /// A failed call; the code is CrispError's (what the wire carries).
  static func record(_ error: CrispError, on span: any Span) {
    guard span.isRecording else { return }
    span.attributes["crisp.error.code"] = error.code.rawValue
    span.setStatus(SpanStatus(code: .error, message: error.message))
  }
}

struct DictionaryInjector: Injector {
  func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
    carrier[key] = value
  }
}

/// Reads trace headers from a dictionary: the envelope's and gRPC metadata's, once validated.
public struct DictionaryExtractor: Extractor {
  public init() {}

  public func extract(key: String, from carrier: [String: String]) -> String? {
    carrier[key]
  }
}
