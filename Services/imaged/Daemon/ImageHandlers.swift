import CrispCore
import CrispIPC
import FoundationEssentials
import ImagedKit
import Logging

/// imaged's IPC calls, each a thin translation onto the store or the puller.
struct ImageHandlers: Sendable {
  let store: ImageStore
  let puller: ImagePuller
  let pulls: PullGate
  /// Releases by container, and the one reconcile at a time (key ""), each done once.
  let releases = KeyedWork<Void>()
  let reconciles = KeyedWork<[String]>()
  let logger: Logger

  func register(in router: inout IPCRouter) {
    router.register(ImagePull.self) { request in
      let credentials = try Self.credentials(request.auth)
      let record = try await pulls.run { () async throws(CrispError) in
        try await puller.pull(request.image, credentials: credentials, serverAddress: request.auth?.serverAddress ?? "")
      }
      return ImagePull.Response(image: store.info(record))
    }
    router.register(ImageList.self) { request in
      ImageList.Response(images: try store.list(filter: request.filter))
    }
    router.register(ImageStatus.self) { request in
      guard let record = try store.resolve(request.image) else { return ImageStatus.Response(image: nil) }
      return ImageStatus.Response(image: store.info(record), configJSON: request.verbose ? record.configJSON : nil)
    }
    router.register(ImageRemove.self) { request in
      ImageRemove.Response(deleted: try store.remove(request.image))
    }
    router.register(ImageFsUsage.self) { _ in try store.usage() }
    router.register(SnapshotPrepare.self) { request in
      try store.prepareSnapshot(containerID: request.containerID, image: request.image)
    }
    router.register(SnapshotReconcile.self) { request in
      let keep = Set(request.containerIDs)
      let released = await reconciles.run("") {
        await BlockingWork.result { () throws(CrispError) in
          try store.releaseOrphanedSnapshots(keeping: keep, createdBefore: request.listedAt)
        }
      }
      return SnapshotReconcile.Response(released: try released.get())
    }
    router.register(SnapshotUsage.self) { request in
      try await store.snapshotUsage(containerIDs: request.containerIDs)
    }
    router.register(SnapshotRelease.self) { request in
      // A container's writable layer can hold millions of files: off the async threads,
      // and once however often frontd asks while it runs.
      try await releases.run(request.containerID) {
        await BlockingWork.result { () throws(CrispError) in try store.releaseSnapshot(containerID: request.containerID)
        }
      }.get()
      return Empty()
    }
    Self.registerOldNames(in: &router)
  }

  /// The names these calls had before each peer got one prefix (2026-12): a frontd of
  /// that release calls them until it restarts too. Drop them a release later.
  static func registerOldNames(in router: inout IPCRouter) {
    router.alias("snapshot.prepare", for: SnapshotPrepare.self)
    router.alias("snapshot.release", for: SnapshotRelease.self)
    router.alias("snapshot.reconcile", for: SnapshotReconcile.self)
    router.alias("snapshot.usage", for: SnapshotUsage.self)
  }

  /// The CRI's AuthConfig as registry credentials; nil when it carries none.
  static func credentials(_ auth: RegistryAuth?) throws(CrispError) -> RegistryCredentials? {
    guard let auth else { return nil }
    if !auth.registryToken.isEmpty { return .registryToken(auth.registryToken) }
    if !auth.identityToken.isEmpty { return .identityToken(auth.identityToken) }
    if !auth.username.isEmpty || !auth.password.isEmpty {
      return .basic(username: auth.username, password: auth.password)
    }
    if !auth.auth.isEmpty {
      guard let data = Data(base64Encoded: auth.auth), let decoded = String(data: data, encoding: .utf8),
        let colon = decoded.firstIndex(of: ":")
      else {
        throw CrispError(.invalidArgument, "auth.auth must be base64 of \"username:password\"")
      }
      return .basic(username: String(decoded[..<colon]), password: String(decoded[decoded.index(after: colon)...]))
    }
    return nil
  }
}
