import CrispCore
import CrispIPC
import Foundation
import Synchronization

/// IPC clients to the shims, one per container, kept while the container exists.
final class ShimClients: Sendable {
  private let paths: CrispPaths
  private let clients = Mutex<[String: IPCClient]>([:])

  init(paths: CrispPaths) { self.paths = paths }

  /// The container's shim, or nil when its socket is gone (the shim exited or died).
  func client(_ containerID: String) -> IPCClient? {
    let socket = paths.shimSocket(containerID: containerID)
    guard FileManager.default.fileExists(atPath: socket) else {
      forget(containerID)
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

  func forget(_ containerID: String) {
    let client = clients.withLock { $0.removeValue(forKey: containerID) }
    client?.close()
  }

  /// The shim's view of its container, or nil when no shim answers.
  func state(_ containerID: String) async -> ShimContainerState? {
    guard let client = client(containerID) else { return nil }
    return try? await client.call(ShimState.self, timeoutMs: 3_000)
  }
}
