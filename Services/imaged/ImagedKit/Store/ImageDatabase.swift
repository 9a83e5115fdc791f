import CrispCore
import CrispStorage
import GRDB

/// One stored image as imaged records it.
public struct ImageRecord: Sendable, Equatable {
  public var id: String
  public var manifestDigest: String
  /// The image config as the registry served it (its sha256 is `id`).
  public var configJSON: String
  public var size: UInt64
  public var repoTags: [String]
  public var repoDigests: [String]
  /// Chain IDs of the layers, bottom first.
  public var chainIDs: [String]
}

/// One unpacked layer, shared by every image whose layer chain starts the same way.
public struct LayerRecord: Sendable, Equatable {
  public var chainID: String
  public var diffID: String
  public var digest: String
  public var size: UInt64
  /// Space and inodes the unpacked directory takes, measured once when committed.
  public var usedBytes: UInt64
  public var usedInodes: UInt64
}

/// The image database (SQLite in WAL mode): images, their names, their layers, and the
/// containers' root filesystem snapshots. Every change is one transaction, so a
/// SIGKILL at any point leaves either the old or the new state.
public final class ImageDatabase: Sendable {
  private let db: SQLiteDatabase

  public init(path: String) throws(CrispError) {
    db = try SQLiteDatabase(path: path, migrations: [("v1", Self.schema)])
  }

  private static let schema = """
          CREATE TABLE images (
            id TEXT PRIMARY KEY,
            manifest_digest TEXT NOT NULL,
            config TEXT NOT NULL,
            size INTEGER NOT NULL,
            created INTEGER NOT NULL
          );
          CREATE TABLE image_names (
            name TEXT PRIMARY KEY,
            image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            is_digest INTEGER NOT NULL
          );
          CREATE INDEX image_names_by_image ON image_names(image_id);
          CREATE TABLE layers (
            chain_id TEXT PRIMARY KEY,
            diff_id TEXT NOT NULL,
            digest TEXT NOT NULL,
            size INTEGER NOT NULL,
            used_bytes INTEGER NOT NULL,
            used_inodes INTEGER NOT NULL
          );
          CREATE TABLE image_layers (
            image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            chain_id TEXT NOT NULL REFERENCES layers(chain_id),
            PRIMARY KEY (image_id, position)
          );
          CREATE TABLE snapshots (
            container_id TEXT PRIMARY KEY,
            image_id TEXT NOT NULL REFERENCES images(id),
            created INTEGER NOT NULL
          );
    """

  private func run<T>(_ what: String, _ body: (Database) throws -> T) throws(CrispError) -> T {
    try db.write("image database: " + what, body)
  }

  private func read<T>(_ what: String, _ body: (Database) throws -> T) throws(CrispError) -> T {
    try db.read("image database: " + what, body)
  }

  // MARK: Layers

  public func layer(chainID: String) throws(CrispError) -> LayerRecord? {
    try read("read layer") { db in
      try Row.fetchOne(db, sql: "SELECT * FROM layers WHERE chain_id = ?", arguments: [chainID]).map(Self.layerRecord)
    }
  }

  public func insertLayer(_ layer: LayerRecord) throws(CrispError) {
    try run("record layer") { db in
      try db.execute(
        sql: """
          INSERT OR REPLACE INTO layers (chain_id, diff_id, digest, size, used_bytes, used_inodes)
          VALUES (?, ?, ?, ?, ?, ?)
          """,
        arguments: [
          layer.chainID, layer.diffID, layer.digest, Int64(layer.size), Int64(layer.usedBytes),
          Int64(layer.usedInodes),
        ])
    }
  }

  /// Layers no image uses any more (but those in `keeping`): their records are
  /// deleted and their chain IDs returned so that the caller removes the directories.
  public func removeUnusedLayers(keeping: Set<String> = []) throws(CrispError) -> [String] {
    try run("remove unused layers") { db in
      let unused = try String.fetchAll(
        db, sql: "SELECT chain_id FROM layers WHERE chain_id NOT IN (SELECT chain_id FROM image_layers)"
      ).filter { !keeping.contains($0) }
      for chainID in unused {
        try db.execute(sql: "DELETE FROM layers WHERE chain_id = ?", arguments: [chainID])
      }
      return unused
    }
  }

  public func allLayerChainIDs() throws(CrispError) -> Set<String> {
    try read("list layers") { db in Set(try String.fetchAll(db, sql: "SELECT chain_id FROM layers")) }
  }

  public func layerUsage() throws(CrispError) -> (bytes: UInt64, inodes: UInt64) {
    try read("sum layer usage") { db in
      let row = try Row.fetchOne(
        db, sql: "SELECT COALESCE(SUM(used_bytes), 0) AS b, COALESCE(SUM(used_inodes), 0) AS i FROM layers")
      return (UInt64(row?["b"] as Int64? ?? 0), UInt64(row?["i"] as Int64? ?? 0))
    }
  }

  // MARK: Images

  /// Records a pulled image, or adds names to it. A name that pointed at another image
  /// moves here (a tag re-pushed), and an image left with no name at all is deleted,
  /// as containerd and CRI-O do.
  public func recordImage(_ image: ImageRecord, names: [String], digests: [String]) throws(CrispError) {
    try run("record image") { db in
      try db.execute(
        sql: """
          INSERT INTO images (id, manifest_digest, config, size, created) VALUES (?, ?, ?, ?, ?)
          ON CONFLICT(id) DO UPDATE SET manifest_digest = excluded.manifest_digest
          """,
        arguments: [image.id, image.manifestDigest, image.configJSON, Int64(image.size), WallClock.nowNanoseconds()])
      try db.execute(sql: "DELETE FROM image_layers WHERE image_id = ?", arguments: [image.id])
      for (position, chainID) in image.chainIDs.enumerated() {
        try db.execute(
          sql: "INSERT INTO image_layers (image_id, position, chain_id) VALUES (?, ?, ?)",
          arguments: [image.id, position, chainID])
      }
      var previousOwners = Set<String>()
      for (name, isDigest) in names.map({ ($0, false) }) + digests.map({ ($0, true) }) {
        if let owner = try String.fetchOne(
          db, sql: "SELECT image_id FROM image_names WHERE name = ?", arguments: [name]), owner != image.id
        {
          previousOwners.insert(owner)
        }
        try db.execute(
          sql: "INSERT OR REPLACE INTO image_names (name, image_id, is_digest) VALUES (?, ?, ?)",
          arguments: [name, image.id, isDigest])
      }
      for owner in previousOwners {
        let left =
          try Int.fetchOne(
            db, sql: "SELECT COUNT(*) FROM image_names WHERE image_id = ? AND is_digest = 0", arguments: [owner]) ?? 0
        let inUse =
          try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM snapshots WHERE image_id = ?", arguments: [owner]) ?? 0
        if left == 0 && inUse == 0 {
          try db.execute(sql: "DELETE FROM images WHERE id = ?", arguments: [owner])
        }
      }
    }
  }

  public func images() throws(CrispError) -> [ImageRecord] {
    try read("list images") { db in
      try Row.fetchAll(db, sql: "SELECT * FROM images ORDER BY created").map { try Self.imageRecord(db, $0) }
    }
  }

  public func image(id: String) throws(CrispError) -> ImageRecord? {
    try read("read image") { db in
      try Row.fetchOne(db, sql: "SELECT * FROM images WHERE id = ?", arguments: [id]).map {
        try Self.imageRecord(db, $0)
      }
    }
  }

  /// The image a name (`registry/repo:tag` or `registry/repo@sha256:…`) points at.
  public func imageID(forName name: String) throws(CrispError) -> String? {
    try read("look up image name") { db in
      try String.fetchOne(db, sql: "SELECT image_id FROM image_names WHERE name = ?", arguments: [name])
    }
  }

  /// IDs that start with `prefix` (hex after `sha256:`).
  public func imageIDs(withPrefix prefix: String) throws(CrispError) -> [String] {
    try read("look up image ID prefix") { db in
      try String.fetchAll(
        db, sql: "SELECT id FROM images WHERE substr(id, 1, ?) = ?", arguments: [prefix.utf8.count, prefix])
    }
  }

  public enum RemoveOutcome: Sendable, Equatable {
    case untagged
    case deleted
    case notFound
  }

  /// Removes one name; the image goes when no tag is left. Deleting an image a
  /// snapshot uses is refused.
  public func removeName(_ name: String) throws(CrispError) -> RemoveOutcome {
    try run("remove image name") { db in
      guard let id = try String.fetchOne(db, sql: "SELECT image_id FROM image_names WHERE name = ?", arguments: [name])
      else { return .notFound }
      let tags =
        try Int.fetchOne(
          db, sql: "SELECT COUNT(*) FROM image_names WHERE image_id = ? AND is_digest = 0 AND name != ?",
          arguments: [id, name]) ?? 0
      if tags > 0 {
        try db.execute(sql: "DELETE FROM image_names WHERE name = ?", arguments: [name])
        return .untagged
      }
      try Self.deleteImage(db, id: id)
      return .deleted
    }
  }

  /// Removes an image with all its names.
  public func removeImage(id: String) throws(CrispError) -> RemoveOutcome {
    try run("remove image") { db in
      guard try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM images WHERE id = ?", arguments: [id]) ?? 0 > 0 else {
        return .notFound
      }
      try Self.deleteImage(db, id: id)
      return .deleted
    }
  }

  private static func deleteImage(_ db: Database, id: String) throws {
    let users = try String.fetchAll(
      db, sql: "SELECT container_id FROM snapshots WHERE image_id = ? LIMIT 3", arguments: [id])
    if !users.isEmpty {
      throw CrispError(
        .failedPrecondition,
        "image \(id) is in use by container(s) \(users.joined(separator: ", ")); remove them first")
    }
    try db.execute(sql: "DELETE FROM images WHERE id = ?", arguments: [id])
  }

  // MARK: Snapshots

  public func snapshotImage(containerID: String) throws(CrispError) -> String? {
    try read("read snapshot") { db in
      try String.fetchOne(db, sql: "SELECT image_id FROM snapshots WHERE container_id = ?", arguments: [containerID])
    }
  }

  public func insertSnapshot(containerID: String, imageID: String) throws(CrispError) {
    try run("record snapshot") { db in
      try db.execute(
        sql: "INSERT OR IGNORE INTO snapshots (container_id, image_id, created) VALUES (?, ?, ?)",
        arguments: [containerID, imageID, WallClock.nowNanoseconds()])
    }
  }

  public func deleteSnapshot(containerID: String) throws(CrispError) {
    try run("delete snapshot") { db in
      try db.execute(sql: "DELETE FROM snapshots WHERE container_id = ?", arguments: [containerID])
    }
  }

  /// Snapshots recorded before `time` (wall clock, ns).
  public func snapshotContainerIDs(createdBefore time: Int64) throws(CrispError) -> [String] {
    try read("list snapshots") { db in
      try String.fetchAll(db, sql: "SELECT container_id FROM snapshots WHERE created < ?", arguments: [time])
    }
  }

  public func snapshotContainerIDs() throws(CrispError) -> [String] {
    try read("list snapshots") { db in try String.fetchAll(db, sql: "SELECT container_id FROM snapshots") }
  }

  // MARK: Rows

  private static func layerRecord(_ row: Row) -> LayerRecord {
    LayerRecord(
      chainID: row["chain_id"], diffID: row["diff_id"], digest: row["digest"],
      size: UInt64(row["size"] as Int64), usedBytes: UInt64(row["used_bytes"] as Int64),
      usedInodes: UInt64(row["used_inodes"] as Int64))
  }

  private static func imageRecord(_ db: Database, _ row: Row) throws -> ImageRecord {
    let id: String = row["id"]
    let names = try Row.fetchAll(
      db, sql: "SELECT name, is_digest FROM image_names WHERE image_id = ? ORDER BY name", arguments: [id])
    let chain = try String.fetchAll(
      db, sql: "SELECT chain_id FROM image_layers WHERE image_id = ? ORDER BY position", arguments: [id])
    return ImageRecord(
      id: id, manifestDigest: row["manifest_digest"], configJSON: row["config"], size: UInt64(row["size"] as Int64),
      repoTags: names.filter { !($0["is_digest"] as Bool) }.map { $0["name"] },
      repoDigests: names.filter { $0["is_digest"] as Bool }.map { $0["name"] }, chainIDs: chain)
  }
}
