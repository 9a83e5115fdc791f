import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import GRPCCore

extension RuntimeService {
  /// Runs a command in a running container through its shim (`runc exec`) and
  /// answers its exit code and output. A command still running at `timeout` seconds
  /// is killed and the call fails with DeadlineExceeded, as kubelet's probes expect.
  func execSync(request: Runtime_V1_ExecSyncRequest, context: ServerContext) async throws
    -> Runtime_V1_ExecSyncResponse
  {
    try await rpc { () async throws(CrispError) in
      guard !request.cmd.isEmpty, !request.cmd[0].isEmpty else {
        throw CrispError(.invalidArgument, "ExecSync: cmd must name a command")
      }
      guard request.timeout >= 0 else {
        throw CrispError(.invalidArgument, "ExecSync: timeout must not be negative, got \(request.timeout)")
      }
      let record = try container(request.containerID).record
      guard let shim = monitors.monitor(record.id), let state = await monitors.state(record.id),
        state.state == .running
      else {
        throw CrispError(.failedPrecondition, "container \(record.id) is not running")
      }
      let deadline = request.timeout > 0 ? Int32(clamping: (request.timeout + 10) * 1000) : Int32.max
      let result = try await shim.execSync(
        .init(command: request.cmd, timeoutSeconds: request.timeout), timeoutMs: deadline)
      if result.timedOut {
        throw CrispError(.deadlineExceeded, "command \(request.cmd[0]) timed out after \(request.timeout) s")
      }
      var response = Runtime_V1_ExecSyncResponse()
      response.exitCode = result.exitCode
      response.stdout = Data(base64Encoded: result.stdout) ?? Data()
      response.stderr = Data(base64Encoded: result.stderr) ?? Data()
      return response
    }
  }
}
