import CrispCore
import CrispLinux
import Glibc
import Synchronization

/// The unpacked layers, shared by every image that starts with the same layer chain.
/// One lock orders the three things that touch them: a pull deciding whether a layer
/// is present (and pinning it until its image is recorded), a finished download
/// committing its directory, and removal collecting layers no image uses. So a layer
/// in use is never replaced or deleted under a running container or a pull.
public final class LayerStore: Sendable {
  public let paths: ImageStorePaths
  let database: ImageDatabase
  private let state = Mutex<[String: Int]>([:])  // pins: chain ID → pulls using it

  init(paths: ImageStorePaths, database: ImageDatabase) {
    self.paths = paths
    self.database = database
  }

  func directory(_ chainID: String) -> String { paths.layer(chainHex: String(chainID.dropFirst(7))) }

  /// Pins `chainIDs` (removal leaves them alone) and answers which are missing.
  func pinAndFindMissing(_ chainIDs: [String]) throws(CrispError) -> Set<String> {
    try state.withLock { pins throws(CrispError) in
      for id in chainIDs { pins[id, default: 0] += 1 }
      var missing = Set<String>()
      for id in chainIDs
      where try database.layer(chainID: id) == nil || !Files.exists(directory(id), followingLinks: false) {
        missing.insert(id)
      }
      return missing
    }
  }

  func unpin(_ chainIDs: [String]) {
    state.withLock { pins in
      for id in chainIDs {
        pins[id, default: 1] -= 1
        if pins[id] == 0 { pins[id] = nil }
      }
    }
  }

  /// Moves a verified temporary directory into place and records it. A layer recorded
  /// meanwhile (another pull was faster) wins: the copy is thrown away.
  func commit(temp: String, record: LayerRecord) throws(CrispError) -> LayerRecord {
    let target = directory(record.chainID)
    return try state.withLock { _ throws(CrispError) in
      if let existing = try database.layer(chainID: record.chainID), Files.exists(target, followingLinks: false) {
        DirectoryTree.remove(temp)
        return existing
      }
      // Left by a pull that was killed before recording it: nothing refers to it.
      if Files.exists(target, followingLinks: false) { DirectoryTree.remove(target) }
      guard rename(temp, target) == 0 else {
        throw CrispError(.internal, "cannot move layer into \(target): \(Files.errnoText())")
      }
      do throws(CrispError) {
        try database.insertLayer(record)
      } catch {
        DirectoryTree.remove(target)
        throw error
      }
      return record
    }
  }

  /// Deletes layers no image uses and no pull has pinned. Their directories are
  /// renamed away under the lock and deleted after it.
  func collectUnused() throws(CrispError) {
    let doomed: [String] = try state.withLock { pins throws(CrispError) in
      var moved = [String]()
      for chainID in try database.removeUnusedLayers(keeping: Set(pins.keys)) {
        let trash = paths.tempDir + "/removed-" + String(chainID.dropFirst(7).prefix(16)) + "-" + randomSuffix()
        if rename(directory(chainID), trash) == 0 { moved.append(trash) }
      }
      return moved
    }
    for dir in doomed { DirectoryTree.remove(dir) }
  }
}
