import CrispCore
import CrispIPC
import CrispLinux
import CrispOCI
import FoundationEssentials
import Glibc
import Logging

/// imaged's stored images as the CRI sees them: lookup by name, ID or ID prefix,
/// listing, removal with layer reference counting, space used, and the containers'
/// root filesystem snapshots.
public final class ImageStore: Sendable {
  public let paths: ImageStorePaths
  public let database: ImageDatabase
  public let layers: LayerStore
  private let registries: RegistriesConfig
  private let pinned: PinnedImages
  private let logger: Logger

  public init(
    paths: ImageStorePaths, registries: RegistriesConfig, pinnedImages: [String], logger: Logger
  ) throws(CrispError) {
    self.paths = paths
    self.registries = registries
    self.logger = logger
    for dir in [paths.base, paths.base + "/blobs", paths.blobsDir, paths.layersDir, paths.snapshotsDir, paths.tempDir] {
      try Files.makeDirectory(dir)
    }
    try Files.makeDirectory(paths.emptyLayer, mode: 0o755)
    database = try ImageDatabase(path: paths.database)
    layers = LayerStore(paths: paths, database: database)
    self.pinned = PinnedImages(pinnedImages, registries: registries)
  }

  /// Removes what an interrupted pull or removal left: temporary files, layer
  /// directories no image uses, snapshot directories without a record.
  public func cleanUpAfterRestart() throws(CrispError) {
    for name in Files.list(paths.tempDir) { DirectoryTree.remove(paths.tempDir + "/" + name) }
    try removeUnusedLayers()
    try removeUnreferencedBlobs()
    let recordedLayers = Set(try database.allLayerChainIDs().map { String($0.dropFirst(7)) })
    for name in Files.list(paths.layersDir) where !recordedLayers.contains(name) {
      logger.info("removing an unrecorded layer directory", metadata: ["layer": "\(name)"])
      DirectoryTree.remove(paths.layersDir + "/" + name)
    }
    let snapshots = Set(try database.snapshotContainerIDs())
    for name in Files.list(paths.snapshotsDir) where !snapshots.contains(name) {
      DirectoryTree.remove(paths.snapshot(name))
    }
  }

  private func removeUnusedLayers() throws(CrispError) {
    try layers.collectUnused()
  }

  /// Deletes the stored manifests, indexes and configs no image refers to any more:
  /// they were kept for good before, one set per image ever pulled. (Nothing reads them
  /// back: a pull that loses its blob to a removal running at the same time loses nothing.)
  private func removeUnreferencedBlobs() throws(CrispError) {
    var referenced = Set<String>()
    func hex(_ digest: Substring) -> String { String(digest.split(separator: ":").last ?? "") }
    for image in try database.images() {
      referenced.insert(hex(Substring(image.id)))
      referenced.insert(hex(Substring(image.manifestDigest)))
      for name in image.repoDigests {
        if let digest = name.split(separator: "@").last { referenced.insert(hex(digest)) }
      }
    }
    for name in Files.list(paths.blobsDir) where !referenced.contains(name) {
      unlink(paths.blob(name))
    }
  }

  // MARK: Lookup

  /// The image `text` names: `sha256:<id>`, a bare ID, a unique ID prefix (3+ hex
  /// digits), or a name with tag or digest (short names resolved as a pull would).
  public func resolve(_ text: String) throws(CrispError) -> ImageRecord? {
    let trimmed = text.hasPrefix("sha256:") ? String(text.dropFirst(7)) : text
    let isHex = !trimmed.isEmpty && trimmed.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    if isHex && trimmed.utf8.count == 64 {
      return try database.image(id: "sha256:" + trimmed)
    }
    if isHex && (trimmed.utf8.count >= 3 || text.hasPrefix("sha256:")) {
      let matches = try database.imageIDs(withPrefix: "sha256:" + trimmed)
      if matches.count == 1 { return try database.image(id: matches[0]) }
      if matches.count > 1 {
        throw CrispError(.invalidArgument, "image ID prefix \"\(text)\" is ambiguous (\(matches.count) images)")
      }
      if text.hasPrefix("sha256:") { return nil }
    }
    guard let candidates = try? registries.qualify(text) else {
      throw CrispError(.invalidArgument, "\"\(text)\" is neither an image ID nor a valid image reference")
    }
    for reference in candidates {
      if let digest = reference.digest, let id = try database.imageID(forName: reference.name + "@" + digest) {
        return try database.image(id: id)
      }
      if reference.digest == nil, let tag = reference.tag,
        let id = try database.imageID(forName: reference.name + ":" + tag)
      {
        return try database.image(id: id)
      }
    }
    return nil
  }

  public func list(filter: String) throws(CrispError) -> [ImageInfo] {
    if !filter.isEmpty {
      return try resolve(filter).map { [info($0)] } ?? []
    }
    return try database.images().map(info)
  }

  public func info(_ record: ImageRecord) -> ImageInfo {
    ImageInfo(
      id: record.id, repoTags: record.repoTags, repoDigests: record.repoDigests, size: record.size,
      config: Self.runtimeConfig(record.configJSON), pinned: record.repoTags.contains { pinned.matches($0) })
  }

  static func runtimeConfig(_ json: String) -> ImageRuntimeConfig {
    guard let file = try? JSONDecoder().decode(ImageConfigFile.self, from: Data(json.utf8)), let c = file.config else {
      return ImageRuntimeConfig()
    }
    return ImageRuntimeConfig(
      user: c.user ?? "", env: c.env ?? [], entrypoint: c.entrypoint ?? [], cmd: c.cmd ?? [],
      workingDir: c.workingDir ?? "", stopSignal: c.stopSignal ?? "", labels: c.labels ?? [:],
      volumes: (c.volumes ?? [:]).keys.sorted())
  }

  // MARK: Removal

  /// Removes `text`: a tag is untagged while other tags remain; an ID, digest or last
  /// tag deletes the image, and layers no other image uses go with it.
  public func remove(_ text: String) throws(CrispError) -> Bool {
    guard let record = try resolve(text) else { return false }
    let outcome: ImageDatabase.RemoveOutcome
    if let name = try tagName(text, of: record) {
      outcome = try database.removeName(name)
    } else {
      outcome = try database.removeImage(id: record.id)
    }
    guard outcome == .deleted else { return false }
    try removeUnusedLayers()
    try removeUnreferencedBlobs()
    logger.info("image removed", metadata: ["id": "\(record.id)"])
    return true
  }

  /// The tag `text` names on `record`, or nil when it names the image itself (ID or digest).
  private func tagName(_ text: String, of record: ImageRecord) throws(CrispError) -> String? {
    guard let candidates = try? registries.qualify(text) else { return nil }
    for reference in candidates where reference.digest == nil {
      if let tag = reference.tag, record.repoTags.contains(reference.name + ":" + tag) {
        return reference.name + ":" + tag
      }
    }
    return nil
  }

  // MARK: Space

  public func usage() throws(CrispError) -> ImageFsUsage.Response {
    let layers = try database.layerUsage()
    let blobs = DiskUsage.measure(paths.base + "/blobs")
    var bytes = layers.bytes + blobs.bytes
    var inodes = layers.inodes + blobs.inodes
    for file in [paths.database, paths.database + "-wal", paths.database + "-shm"] {
      let used = DiskUsage.measure(file)
      bytes += used.bytes
      inodes += used.inodes
    }
    return ImageFsUsage.Response(
      mountpoint: paths.base, usedBytes: bytes, inodesUsed: inodes, timestamp: WallClock.nowNanoseconds())
  }

  // MARK: Snapshots

  /// A container's root filesystem: the image's layers read-only, under a private
  /// upper directory. Preparing again answers the same mount.
  public func prepareSnapshot(containerID: String, image: String) throws(CrispError) -> SnapshotPrepare.Response {
    try Self.checkContainerID(containerID)
    guard let record = try resolve(image) else {
      throw CrispError(.notFound, "image \"\(image)\" is not pulled")
    }
    if let existing = try database.snapshotImage(containerID: containerID), existing != record.id {
      throw CrispError(.alreadyExists, "container \(containerID) already has a root filesystem from image \(existing)")
    }
    var lowers = record.chainIDs.reversed().map { paths.layer(chainHex: String($0.dropFirst(7))) }
    for dir in lowers where !Files.exists(dir, followingLinks: false) {
      throw CrispError(.failedPrecondition, "layer \(dir) of image \(record.id) is missing; pull the image again")
    }
    if lowers.isEmpty { lowers = [paths.emptyLayer] }
    let base = paths.snapshot(containerID)
    // The record comes first: an image with a recorded snapshot cannot be removed
    // between here and the mount.
    try database.insertSnapshot(containerID: containerID, imageID: record.id)
    try Files.makeDirectory(base)
    try Files.makeDirectory(base + "/upper", mode: 0o755)
    try Files.makeDirectory(base + "/work")
    let options = [
      "lowerdir=" + lowers.joined(separator: ":"), "upperdir=" + base + "/upper", "workdir=" + base + "/work",
      // Opaque directories in layers are marked with user.overlay.opaque, which
      // imaged can set without CAP_SYS_ADMIN.
      "userxattr",
    ]
    let mount = RootfsMount(
      type: "overlay", source: "overlay", lowerDirs: lowers, upperDir: base + "/upper", workDir: base + "/work",
      options: options)
    return SnapshotPrepare.Response(
      imageID: record.id, mount: mount, passwd: Self.imageFile("etc/passwd", lowers),
      group: Self.imageFile("etc/group", lowers))
  }

  /// A file of the image as the container will see it (`MergedLayers`), as text; empty
  /// when there is none.
  static func imageFile(_ path: String, _ lowers: [String]) -> String {
    MergedLayers.readFile(path, lowers: lowers).map { String(decoding: $0, as: UTF8.self) } ?? ""
  }

  /// Releases every snapshot recorded before `createdBefore` whose container is not in
  /// `containers`; answers the containers released.
  public func releaseOrphanedSnapshots(keeping containers: Set<String>, createdBefore: Int64) throws(CrispError)
    -> [String]
  {
    let orphans = try database.snapshotContainerIDs(createdBefore: createdBefore).filter { !containers.contains($0) }
    for id in orphans {
      try releaseSnapshot(containerID: id)
      logger.info("released the snapshot of a container frontd does not know", metadata: ["container": "\(id)"])
    }
    return orphans
  }

  public func releaseSnapshot(containerID: String) throws(CrispError) {
    try Self.checkContainerID(containerID)
    DirectoryTree.remove(paths.snapshot(containerID))
    try database.deleteSnapshot(containerID: containerID)
  }

  /// Space taken by the writable layers of these containers; unknown ones are left out.
  /// The walks run off the async executor (a layer can hold millions of files).
  public func snapshotUsage(containerIDs: [String]) async throws(CrispError) -> SnapshotUsage.Response {
    guard containerIDs.count <= 10_000 else {
      throw CrispError(
        .invalidArgument, "image.snapshotUsage: \(containerIDs.count) containers asked at once (10000 at most)")
    }
    for id in containerIDs { try Self.checkContainerID(id) }
    let uppers = containerIDs.map { ($0, paths.snapshot($0) + "/upper") }
    let usages = await BlockingWork.run {
      uppers.compactMap { id, upper -> SnapshotUsage.Usage? in
        guard Files.exists(upper, followingLinks: false) else { return nil }
        let used = DiskUsage.measure(upper)
        return SnapshotUsage.Usage(
          containerID: id, bytes: used.bytes, inodes: used.inodes, timestamp: WallClock.nowNanoseconds())
      }
    }
    return SnapshotUsage.Response(usages: usages)
  }

  static func checkContainerID(_ id: String) throws(CrispError) {
    let allowed = id.utf8.allSatisfy {
      ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 122) || ($0 >= 65 && $0 <= 90) || $0 == 45 || $0 == 95
    }
    guard !id.isEmpty, id.utf8.count <= 128, allowed else {
      throw CrispError(.invalidArgument, "container ID \"\(id)\" must be 1 to 128 letters, digits, '-' or '_'")
    }
  }
}
