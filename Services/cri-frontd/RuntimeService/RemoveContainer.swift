import CRIAPI
import CrispCore
import CrispIPC
import GRPCCore

extension RuntimeService {
  /// Kills the container if it runs, deletes it from runc (through its shim, which then
  /// exits), releases its root filesystem and forgets it. Idempotent.
  func removeContainer(request: Runtime_V1_RemoveContainerRequest, context: ServerContext) async throws
    -> Runtime_V1_RemoveContainerResponse
  {
    try await rpc { () async throws(CrispError) in
      guard let record = try runtime.resolveContainer(request.containerID) else { return .init() }
      try await runtime.withContainerLock(record.id) { () async throws(CrispError) in try await remove(record) }
      return .init()
    }
  }

  /// Must be called with the container's lock held.
  func remove(_ record: ContainerRecord) async throws(CrispError) {
    if let shim = runtime.shims.client(record.id) {
      do throws(CrispError) {
        _ = try await shim.call(ShimDelete.self, Empty(), timeoutMs: 60_000)
      } catch  where error.code == .unavailable {
        // The shim exited while answering: its work was done.
      }
    } else {
      // No shim (it died): delete what runc may still hold, best effort.
      let handler = (try? runtime.store.pod(record.podID))??.runtimeHandler ?? "runc"
      _ = try? await ChildProcessRunner.runtime(runtime, handler: handler, ["delete", "--force", record.id])
      await ChildProcessRunner.unmount(
        runtime, ContainerBundle(paths: runtime.paths, containerID: record.id).directory + "/rootfs")
    }
    runtime.shims.forget(record.id)
    ContainerBundle(paths: runtime.paths, containerID: record.id).remove()
    // Deleting a writable layer of millions of files takes a while: kubelet's own
    // deadline (2 minutes) bounds the call, not the IPC default.
    _ = try await peers.imaged.call(SnapshotRelease.self, .init(containerID: record.id), timeoutMs: 120_000)
    try runtime.store.deleteContainer(record.id)
    logger.info("container removed", metadata: ["container": "\(record.id)"])
    events.record(.deleted, record)
  }
}
