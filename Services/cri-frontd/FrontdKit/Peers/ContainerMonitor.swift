import CrispCore
import CrispIPC

/// A container's monitor (its shimd), as the lifecycle and the RPCs talk to it. A
/// protocol so that the lifecycle can be tested with fake monitors; `ShimMonitor` is
/// the real one.
protocol ContainerMonitor: Sendable {
  func start() async throws(CrispError) -> ShimContainerState
  /// `signal` first, then SIGKILL after `timeoutSeconds` (0: at once).
  func stop(timeoutSeconds: Int64, signal: String) async throws(CrispError) -> ShimContainerState
  /// Deletes the container from its runtime; the monitor exits after answering.
  func delete() async throws(CrispError)
  func execSync(_ request: ShimExecSync.Request, timeoutMs: Int32) async throws(CrispError) -> ShimExecSync.Response
  func reopenLog() async throws(CrispError)
  func updateResources(json: String) async throws(CrispError)
  func streamExec(_ request: ShimStreamExec.Request) async throws(CrispError) -> SessionSocket
  func streamAttach(_ request: SessionStreams) async throws(CrispError) -> SessionSocket
}

/// The monitors of the node's containers (and of pods' infra processes, under the
/// pod's ID), and what each last said of its container.
protocol ContainerMonitors: Sendable {
  /// The container's monitor, or nil when it is gone (it exited or died).
  func monitor(_ containerID: String) -> (any ContainerMonitor)?
  /// The monitor's view of its container now; nil when no monitor answers.
  func state(_ containerID: String) async -> ShimContainerState?
  /// The monitor's last answer while it still holds, else its answer now.
  func knownState(_ containerID: String) async -> ShimContainerState?
  /// What a monitor said outside `knownState` (a start's or a stop's answer, an exit
  /// event), so that what is known moves on with it.
  func observe(_ containerID: String, _ state: ShimContainerState)
  /// The container is gone: its connection and what its monitor said.
  func forget(_ containerID: String)
}

/// A shimd, over its IPC socket.
struct ShimMonitor: ContainerMonitor {
  let client: IPCClient

  func start() async throws(CrispError) -> ShimContainerState {
    try await client.call(ShimStart.self, Empty(), timeoutMs: 60_000)
  }

  func stop(timeoutSeconds: Int64, signal: String) async throws(CrispError) -> ShimContainerState {
    let deadline = Int32(clamping: (timeoutSeconds + 30) * 1000)
    return try await client.call(
      ShimStop.self, .init(timeoutSeconds: timeoutSeconds, signal: signal), timeoutMs: deadline)
  }

  func delete() async throws(CrispError) {
    do throws(CrispError) {
      _ = try await client.call(ShimDelete.self, Empty(), timeoutMs: 60_000)
    } catch  where error.code == .unavailable {
      // The shim exited while answering: its work was done.
    }
  }

  func execSync(_ request: ShimExecSync.Request, timeoutMs: Int32) async throws(CrispError) -> ShimExecSync.Response {
    try await client.call(ShimExecSync.self, request, timeoutMs: timeoutMs)
  }

  func reopenLog() async throws(CrispError) {
    _ = try await client.call(ShimReopenLog.self, Empty())
  }

  func updateResources(json: String) async throws(CrispError) {
    _ = try await client.call(ShimUpdateResources.self, .init(resources: json), timeoutMs: 40_000)
  }

  func streamExec(_ request: ShimStreamExec.Request) async throws(CrispError) -> SessionSocket {
    try await client.call(ShimStreamExec.self, request)
  }

  func streamAttach(_ request: SessionStreams) async throws(CrispError) -> SessionSocket {
    try await client.call(ShimStreamAttach.self, request)
  }
}
