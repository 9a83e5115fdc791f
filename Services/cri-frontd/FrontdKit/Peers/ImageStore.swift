import CrispCore
import CrispIPC

/// What the container lifecycle needs of imaged: the image a container names, and the
/// container's root filesystem. A protocol so that the lifecycle can be tested with a
/// fake store; `ImagedPeer` is the real one.
protocol ImageStore: Sendable {
  /// The image a name, tag, digest or ID names; nil when it is not present.
  func image(named name: String) async throws(CrispError) -> ImageInfo?
  /// A writable layer over the image for the container.
  func prepareSnapshot(containerID: String, image: String) async throws(CrispError) -> SnapshotPrepare.Response
  /// Deletes the container's writable layer. Idempotent.
  func releaseSnapshot(containerID: String) async throws(CrispError)
  /// Releases the snapshots made before `listedAt` of containers not in `keeping`;
  /// answers the released ones.
  func releaseOrphanedSnapshots(keeping: [String], listedAt: Int64) async throws(CrispError) -> [String]
}

/// imaged, over its IPC socket.
struct ImagedPeer: ImageStore {
  let client: IPCClient

  func image(named name: String) async throws(CrispError) -> ImageInfo? {
    try await client.call(ImageStatus.self, .init(image: name)).image
  }

  func prepareSnapshot(containerID: String, image: String) async throws(CrispError) -> SnapshotPrepare.Response {
    try await client.call(SnapshotPrepare.self, .init(containerID: containerID, image: image))
  }

  func releaseSnapshot(containerID: String) async throws(CrispError) {
    // Deleting a writable layer of millions of files takes a while: kubelet's own
    // deadline (2 minutes) bounds the call, not the IPC default.
    _ = try await client.call(SnapshotRelease.self, .init(containerID: containerID), timeoutMs: 120_000)
  }

  func releaseOrphanedSnapshots(keeping: [String], listedAt: Int64) async throws(CrispError) -> [String] {
    try await client.call(
      SnapshotReconcile.self, .init(containerIDs: keeping, listedAt: listedAt), timeoutMs: 600_000
    ).released
  }
}
