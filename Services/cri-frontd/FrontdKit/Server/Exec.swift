import CRIAPI
import CrispCore
import GRPCCore
import Streaming

extension RuntimeService {
  /// Validates the request and answers the streaming server's URL for it, with a
  /// single-use token; the command runs when the client connects there.
  func exec(request: Runtime_V1_ExecRequest, context: ServerContext) async throws -> Runtime_V1_ExecResponse {
    try await rpc { () async throws(CrispError) in
      guard !request.cmd.isEmpty else { throw CrispError(.invalidArgument, "Exec: cmd must not be empty") }
      let options = try Self.streamOptions(
        "Exec", stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, tty: request.tty)
      let id = try await runningContainerID("Exec", request.containerID)
      var response = Runtime_V1_ExecResponse()
      response.url = try streamURL(.exec(containerID: id, command: request.cmd, options: options))
      return response
    }
  }

  static func streamOptions(
    _ call: String, stdin: Bool, stdout: Bool, stderr: Bool, tty: Bool
  ) throws(CrispError) -> StreamOptions {
    guard stdin || stdout || stderr else {
      throw CrispError(.invalidArgument, "\(call): one of stdin, stdout and stderr must be set")
    }
    guard !(tty && stderr) else {
      throw CrispError(.invalidArgument, "\(call): tty and stderr cannot both be set (a terminal merges stderr)")
    }
    return StreamOptions(stdin: stdin, stdout: stdout, stderr: stderr, tty: tty)
  }

  /// The full ID of a container that exists and runs.
  func runningContainerID(_ call: String, _ text: String) async throws(CrispError) -> String {
    let record = try container(text).record
    guard let state = await monitors.state(record.id), state.state == .running else {
      throw CrispError(.failedPrecondition, "\(call): container \(record.id) is not running")
    }
    return record.id
  }

  func streamURL(_ request: StreamRequest) throws(CrispError) -> String {
    do {
      return try streaming.url(for: request)
    } catch let error as CrispError {
      throw error
    } catch {
      throw CrispError(.internal, "cannot issue a streaming URL: \(error)")
    }
  }
}
