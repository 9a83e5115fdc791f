import CrispCore
import CrispIPC
import CrispLinux
import Foundation
import Synchronization

/// IPC clients to the shims, one per container, kept while the container exists; and
/// what each shim last said of its container, while that still holds.
final class ShimClients: ContainerMonitors {
  private let paths: CrispPaths
  private let clients = Mutex<[String: IPCClient]>([:])
  private let known = Mutex<KnownStates>(KnownStates())

  init(paths: CrispPaths) { self.paths = paths }

  func monitor(_ containerID: String) -> (any ContainerMonitor)? {
    client(containerID).map { ShimMonitor(client: $0) }
  }

  /// The container's shim, or nil when its socket is gone (the shim exited or died).
  private func client(_ containerID: String) -> IPCClient? {
    let socket = paths.shimSocket(containerID: containerID)
    guard FileManager.default.fileExists(atPath: socket) else {
      closeClient(containerID)
      return nil
    }
    return clients.withLock { clients in
      if let client = clients[containerID] { return client }
      guard
        let client = try? IPCClient(
          peer: "shimd of \(containerID.prefix(12))", address: CrispPaths.ipcAddress(socket), defaultTimeoutMs: 10_000)
      else { return nil }
      clients[containerID] = client
      return client
    }
  }

  /// The container is gone: its client and what its shim said.
  func forget(_ containerID: String) {
    closeClient(containerID)
    known.withLock { _ = $0.entries.removeValue(forKey: containerID) }
  }

  private func closeClient(_ containerID: String) {
    let client = clients.withLock { $0.removeValue(forKey: containerID) }
    client?.close()
  }

  /// The shim's view of its container now, or nil when no shim answers.
  func state(_ containerID: String) async -> ShimContainerState? {
    guard let client = client(containerID) else { return nil }
    return try? await client.call(ShimState.self, timeoutMs: 3_000)
  }

  /// The container's state for a status, a listing or an event: the shim's last answer
  /// while it still holds, else the shim's answer now (nil when no shim answers).
  /// kubelet lists every container every second and asks each one's status; asking
  /// every shim every time made ListContainers 7 times slower than containerd's, most
  /// of it in futex waits of the IPC round trips.
  func knownState(_ containerID: String) async -> ShimContainerState? {
    let lookup = known.withLock { known -> Result<ShimContainerState, Ask> in
      if let entry = known.entries[containerID], entry.holds { return .success(entry.state) }
      known.entries[containerID]?.dropExitedWatch()
      known.sequence += 1
      return .failure(Ask(sequence: known.sequence))
    }
    let asked: UInt64
    switch lookup {
    case .success(let state): return state
    case .failure(let ask): asked = ask.sequence
    }
    guard let answer = await state(containerID) else { return nil }
    remember(containerID, answer, askedAt: asked)
    return answer
  }

  /// What a shim said outside `knownState` (a start's or a stop's answer, its exit
  /// event): an exit is kept for good; any other answer drops what was known, since only
  /// an answer asked after a watch was opened can confirm it (a created container that
  /// was just started keeps its pid).
  func observe(_ containerID: String, _ state: ShimContainerState) {
    // A container removed meanwhile (its shim is gone with its socket) is not kept.
    guard FileManager.default.fileExists(atPath: paths.shimSocket(containerID: containerID)) else { return }
    known.withLock { known in
      if state.state == .exited {
        known.entries[containerID] = Known(state: state, watch: nil, watchedAt: 0, confirmed: true)
      } else {
        known.entries.removeValue(forKey: containerID)
      }
    }
  }

  /// An exit is final. A running container's answer holds while its init runs: a pidfd
  /// on the init, opened before a later answer named the same pid, so that it is that
  /// process and not a later one given the same pid. A created container is asked every
  /// time: its init keeps its pid when it starts, so no watch can tell that it did (and
  /// a start whose answer was lost must still show).
  private func remember(_ containerID: String, _ answer: ShimContainerState, askedAt: UInt64) {
    switch answer.state {
    case .exited:
      known.withLock { $0.entries[containerID] = Known(state: answer, watch: nil, watchedAt: 0, confirmed: true) }
    case .running where answer.pid > 0:
      let confirms = known.withLock { known -> Bool in
        guard var entry = known.entries[containerID], let watch = entry.watch, watch.pid == answer.pid,
          entry.watchedAt < askedAt, !watch.hasExited
        else { return false }
        entry.state = answer
        entry.confirmed = true
        known.entries[containerID] = entry
        return true
      }
      if confirms { return }
      let watch = ProcessWatch(pid: answer.pid)
      known.withLock { known in
        known.sequence += 1
        known.entries[containerID] = Known(state: answer, watch: watch, watchedAt: known.sequence, confirmed: false)
      }
    default:
      known.withLock { _ = $0.entries.removeValue(forKey: containerID) }
    }
  }
}

private struct KnownStates: ~Copyable {
  var entries: [String: Known] = [:]
  /// Orders questions to the shims and the opening of pidfds.
  var sequence: UInt64 = 0
}

/// A question to put to a shim, numbered in `KnownStates.sequence`.
private struct Ask: Error {
  var sequence: UInt64
}

private struct Known: Sendable {
  var state: ShimContainerState
  var watch: ProcessWatch?
  /// `KnownStates.sequence` when the watch was opened.
  var watchedAt: UInt64
  var confirmed: Bool

  var holds: Bool {
    guard confirmed else { return false }
    if state.state == .exited { return true }
    guard let watch else { return false }
    return !watch.hasExited
  }

  /// A watch on an init that has exited is of no more use.
  mutating func dropExitedWatch() {
    if let watch, watch.hasExited {
      self.watch = nil
      confirmed = false
    }
  }
}
