import CrispIPC
import CrispTracing
import GRPCCore
import Tracing

/// A server span per CRI call (only installed when `[tracing] endpoint` is set): named
/// after the method ("runtime.v1.RuntimeService/RunPodSandbox"), with the gRPC status
/// code, continuing the trace of kubelet's `traceparent` metadata when it sends one.
/// The span covers the handler and, for streaming responses, the whole stream; the IPC
/// calls the handler makes become its children (CrispIPC reads the task's context).
struct RPCTracingInterceptor: ServerInterceptor {
  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    var parent = ServiceContext.topLevel
    // Metadata is the client's: only a well-formed traceparent is passed on (as in the
    // IPC envelope); a bad one is ignored without a word, the call served as usual.
    if let trace = IPCTraceContext(
      traceparent: request.metadata[stringValues: "traceparent"].first(where: { _ in true }),
      tracestate: request.metadata[stringValues: "tracestate"].first(where: { _ in true }))
    {
      var carrier = ["traceparent": trace.traceparent]
      if let tracestate = trace.tracestate { carrier["tracestate"] = tracestate }
      InstrumentationSystem.instrument.extract(carrier, into: &parent, using: DictionaryExtractor())
    }
    let descriptor = context.descriptor
    let span = startSpan(descriptor.fullyQualifiedMethod, context: parent, ofKind: .server)
    if span.isRecording {
      span.attributes["rpc.system"] = "grpc"
      span.attributes["rpc.service"] = descriptor.service.fullyQualifiedService
      span.attributes["rpc.method"] = descriptor.method
    }
    var response: StreamingServerResponse<Output>
    do {
      response = try await ServiceContext.withValue(span.context) { try await next(request, context) }
    } catch {
      Self.finish(span, error: error)
      throw error
    }
    switch response.accepted {
    case .failure(let error):
      Self.finish(span, error: error)
    case .success(var contents):
      // The handler's answer is written (or, for a stream, produced) after this returns.
      let producer = contents.producer
      contents.producer = { writer in
        do {
          let trailers = try await ServiceContext.withValue(span.context) { try await producer(writer) }
          Self.finish(span, error: nil)
          return trailers
        } catch {
          Self.finish(span, error: error)
          throw error
        }
      }
      response.accepted = .success(contents)
    }
    return response
  }

  private static func finish(_ span: any Span, error: (any Error)?) {
    defer { span.end() }
    guard span.isRecording else { return }
    guard let error else {
      span.attributes["rpc.grpc.status_code"] = 0  // OK
      return
    }
    let rpcError: RPCError =
      switch error {
      case let error as RPCError: error
      case let error as any RPCErrorConvertible: RPCError(error)
      default: RPCError(code: .unknown, message: "\(error)")
      }
    span.attributes["rpc.grpc.status_code"] = rpcError.code.rawValue
    span.setStatus(SpanStatus(code: .error, message: rpcError.message))
  }
}
