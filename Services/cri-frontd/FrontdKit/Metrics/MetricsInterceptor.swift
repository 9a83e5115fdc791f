import GRPCCore

/// Times every CRI call and counts its failures by gRPC code (installed only when
/// `metrics_port` is set). A stream is timed until it ends, and its errors are those
/// thrown while producing it.
struct MetricsInterceptor: ServerInterceptor {
  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let method = context.descriptor.method
    let start = ContinuousClock.now
    var response: StreamingServerResponse<Output>
    do {
      response = try await next(request, context)
    } catch {
      Self.record(method, since: start, error: error)
      throw error
    }
    switch response.accepted {
    case .failure(let error):
      Self.record(method, since: start, error: error)
    case .success(var contents):
      // A unary answer is written, and a stream produced, after this returns.
      let producer = contents.producer
      contents.producer = { writer in
        do {
          let trailers = try await producer(writer)
          Self.record(method, since: start, error: nil)
          return trailers
        } catch {
          Self.record(method, since: start, error: error)
          throw error
        }
      }
      response.accepted = .success(contents)
    }
    return response
  }

  private static func record(_ method: String, since start: ContinuousClock.Instant, error: (any Error)?) {
    let code: RPCError.Code? =
      switch error {
      case nil: nil
      case is CancellationError: .cancelled
      case let error as RPCError: error.code
      case let error as any RPCErrorConvertible: error.rpcErrorCode
      default: .unknown
      }
    FrontdMetrics.recordRequest(method: method, duration: ContinuousClock.now - start, error: code)
  }
}
