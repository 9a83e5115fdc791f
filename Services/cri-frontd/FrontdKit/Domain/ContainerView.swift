import CRIAPI
import CrispCore
import CrispIPC

/// Where a container is in its life, as its monitor (or what its monitor left) says.
enum ContainerPhase: Sendable, Equatable {
  /// `pid`: the runtime's init, waiting to exec the container's process.
  case created(pid: Int32)
  case running(pid: Int32, startedAt: Int64)
  case exited(ContainerExit)
  /// The monitor is gone and left no exit record: kubelet is shown exit code 255 and
  /// reason Unknown, never a guessed 0.
  case unknown

  /// The container's init while it has one (0: none).
  var pid: Int32 {
    switch self {
    case .created(let pid), .running(let pid, _): pid
    case .exited, .unknown: 0
    }
  }

  var criState: Runtime_V1_ContainerState {
    switch self {
    case .created: .containerCreated
    case .running: .containerRunning
    case .exited, .unknown: .containerExited
    }
  }
}

/// How a container ended.
struct ContainerExit: Sendable, Equatable {
  /// 0 when the container never started.
  var startedAt: Int64
  var finishedAt: Int64
  var exitCode: Int32
  var oomKilled: Bool

  var reason: String { oomKilled ? "OOMKilled" : exitCode == 0 ? "Completed" : "Error" }
}

/// A container's record and its phase now.
struct ContainerView: Sendable {
  var container: Container
  var phase: ContainerPhase
  /// Its monitor answered (else the phase comes from its exit record, or is unknown).
  var monitorAnswered: Bool

  var record: ContainerRecord { container.record }
  var config: Runtime_V1_ContainerConfig { container.config }
  var state: Runtime_V1_ContainerState { phase.criState }
}

extension ContainerPhase {
  init(_ shim: ShimContainerState) {
    switch shim.state {
    case .created: self = .created(pid: shim.pid)
    case .running: self = .running(pid: shim.pid, startedAt: shim.startedAt)
    case .exited:
      self = .exited(
        ContainerExit(
          startedAt: shim.startedAt, finishedAt: shim.finishedAt, exitCode: shim.exitCode, oomKilled: shim.oomKilled))
    }
  }
}

extension Containers {
  /// The container's phase: from its monitor while it lives, else from the exit file
  /// the monitor left.
  func view(_ container: Container) async -> ContainerView {
    if let shim = await monitors.knownState(container.id) {
      return ContainerView(container: container, phase: ContainerPhase(shim), monitorAnswered: true)
    }
    if let exit = launcher.bundle(container.id).exitRecord() {
      return ContainerView(
        container: container,
        phase: .exited(
          ContainerExit(startedAt: 0, finishedAt: exit.finishedAt, exitCode: exit.exitCode, oomKilled: exit.oomKilled)),
        monitorAnswered: false)
    }
    return ContainerView(container: container, phase: .unknown, monitorAnswered: false)
  }

  /// The views of many containers, in their order. Each monitor is asked at the same
  /// time (up to 32 at once): kubelet lists every container every second, and one
  /// monitor after the other made ListContainers 13 times slower than containerd's
  /// with 50 containers.
  func views(_ containers: [Container]) async -> [ContainerView] {
    let width = 32
    return await withTaskGroup(of: (Int, ContainerView).self, returning: [ContainerView].self) { group in
      var results = [ContainerView?](repeating: nil, count: containers.count)
      for (index, container) in containers.enumerated() {
        if index >= width, let (done, view) = await group.next() { results[done] = view }
        group.addTask { (index, await self.view(container)) }
      }
      while let (done, view) = await group.next() { results[done] = view }
      return results.compactMap { $0 }
    }
  }
}
