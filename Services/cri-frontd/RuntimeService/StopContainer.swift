import CRIAPI
import CrispCore
import CrispIPC
import GRPCCore

extension RuntimeService {
  /// The image's stop signal, then SIGKILL after `timeout` seconds (0: at once).
  /// Idempotent: a stopped, exited or unknown container succeeds.
  func stopContainer(request: Runtime_V1_StopContainerRequest, context: ServerContext) async throws
    -> Runtime_V1_StopContainerResponse
  {
    try await rpc { () async throws(CrispError) in
      guard request.timeout >= 0 else {
        throw CrispError(.invalidArgument, "StopContainer: timeout must not be negative, got \(request.timeout)")
      }
      guard let record = try runtime.resolveContainer(request.containerID) else { return .init() }
      try await runtime.withContainerLock(record.id) { () async throws(CrispError) in
        try await stop(record, timeoutSeconds: request.timeout)
      }
      return .init()
    }
  }

  /// Must be called with the container's lock held.
  func stop(_ record: ContainerRecord, timeoutSeconds: Int64) async throws(CrispError) {
    guard let shim = runtime.shims.client(record.id) else { return }
    let deadline = Int32(clamping: (timeoutSeconds + 30) * 1000)
    let state = try await shim.call(
      ShimStop.self, .init(timeoutSeconds: timeoutSeconds, signal: record.stopSignal), timeoutMs: deadline)
    if state.state == .exited {
      events.record(.stopped, record, at: state.finishedAt, exit: state)
    }
    logger.info("container stopped", metadata: ["container": "\(record.id)"])
  }
}
