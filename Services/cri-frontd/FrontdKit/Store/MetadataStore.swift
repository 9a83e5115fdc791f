import CrispCore
import CrispStorage
import Foundation
import GRDB

/// One pod sandbox as frontd records it. `config` is the CRI PodSandboxConfig in
/// protobuf encoding, kept byte for byte so labels and annotations come back unaltered.
struct PodRecord: Sendable, Equatable {
  enum State: String, Sendable {
    /// Recorded, network not set up yet (or a RunPodSandbox cut off by a crash).
    case creating
    case ready
    case notReady = "notready"
  }

  var id: String
  var name: String
  var namespace: String
  var uid: String
  var attempt: UInt32
  var state: State
  var createdAt: Int64
  var config: [UInt8]
  var runtimeHandler: String
  /// IPs from CNI, IPv4 first.
  var ips: [String]
  /// Pinned namespace files from netd (empty for the host's).
  var netns: String
  var ipcns: String
  var utsns: String
}

/// One container as frontd records it; its live state is its shim's, and after the
/// shim is gone, its exit file's.
struct ContainerRecord: Sendable, Equatable {
  var id: String
  var podID: String
  var name: String
  var attempt: UInt32
  /// The image as CreateContainer named it, and the image ID it resolved to.
  var image: String
  var imageID: String
  var createdAt: Int64
  var config: [UInt8]
  var logPath: String
  /// The image's StopSignal (empty: SIGTERM).
  var stopSignal: String
}

/// frontd's metadata database (SQLite, WAL): pods and containers. A row is written
/// before the work it describes starts, so that after a crash the work can be found
/// and finished or undone.
final class MetadataStore: Sendable {
  private let db: SQLiteDatabase

  init(path: String) throws(CrispError) {
    db = try SQLiteDatabase(path: path, migrations: [("v1", Self.schema)])
  }

  private static let schema = """
          CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
          CREATE TABLE pods (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL, namespace TEXT NOT NULL, uid TEXT NOT NULL, attempt INTEGER NOT NULL,
            state TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            config BLOB NOT NULL,
            runtime_handler TEXT NOT NULL,
            ips TEXT NOT NULL,
            netns TEXT NOT NULL, ipcns TEXT NOT NULL, utsns TEXT NOT NULL
          );
          CREATE UNIQUE INDEX pods_by_name ON pods(name, namespace, uid, attempt);
          CREATE TABLE containers (
            id TEXT PRIMARY KEY,
            pod_id TEXT NOT NULL REFERENCES pods(id),
            name TEXT NOT NULL, attempt INTEGER NOT NULL,
            image TEXT NOT NULL, image_id TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            config BLOB NOT NULL,
            log_path TEXT NOT NULL,
            stop_signal TEXT NOT NULL
          );
          CREATE UNIQUE INDEX containers_by_name ON containers(pod_id, name, attempt);
    """

  private func write<T>(_ what: String, _ body: (Database) throws -> T) throws(CrispError) -> T {
    try db.write(what, body)
  }

  private func read<T>(_ what: String, _ body: (Database) throws -> T) throws(CrispError) -> T {
    try db.read("metadata database: " + what, body)
  }

  // MARK: Meta

  func value(_ key: String) throws(CrispError) -> String? {
    try read("read \(key)") { db in
      try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key])
    }
  }

  func setValue(_ value: String, for key: String) throws(CrispError) {
    try write("write \(key)") { db in
      try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", arguments: [key, value])
    }
  }

  // MARK: Pods

  func insertPod(_ pod: PodRecord) throws(CrispError) {
    try write("pod \(pod.name) in \(pod.namespace) (attempt \(pod.attempt)) already exists") { db in
      try db.execute(
        sql: """
          INSERT INTO pods (id, name, namespace, uid, attempt, state, created_at, config, runtime_handler, ips,
            netns, ipcns, utsns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          """,
        arguments: [
          pod.id, pod.name, pod.namespace, pod.uid, Int64(pod.attempt), pod.state.rawValue, pod.createdAt,
          Data(pod.config), pod.runtimeHandler, pod.ips.joined(separator: ","), pod.netns, pod.ipcns, pod.utsns,
        ])
    }
  }

  func updatePod(_ pod: PodRecord) throws(CrispError) {
    try write("update pod \(pod.id)") { db in
      try db.execute(
        sql: "UPDATE pods SET state = ?, ips = ?, netns = ?, ipcns = ?, utsns = ? WHERE id = ?",
        arguments: [pod.state.rawValue, pod.ips.joined(separator: ","), pod.netns, pod.ipcns, pod.utsns, pod.id])
    }
  }

  func deletePod(_ id: String) throws(CrispError) {
    try write("delete pod \(id)") { db in
      try db.execute(sql: "DELETE FROM containers WHERE pod_id = ?", arguments: [id])
      try db.execute(sql: "DELETE FROM pods WHERE id = ?", arguments: [id])
    }
  }

  func pods() throws(CrispError) -> [PodRecord] {
    try read("list pods") { db in try Row.fetchAll(db, sql: "SELECT * FROM pods ORDER BY created_at").map(Self.pod) }
  }

  func pod(_ id: String) throws(CrispError) -> PodRecord? {
    try read("read pod") { db in
      try Row.fetchOne(db, sql: "SELECT * FROM pods WHERE id = ?", arguments: [id]).map(Self.pod)
    }
  }

  /// IDs starting with `prefix`.
  func podIDs(withPrefix prefix: String) throws(CrispError) -> [String] {
    try read("look up pod ID") { db in
      try String.fetchAll(
        db, sql: "SELECT id FROM pods WHERE substr(id, 1, ?) = ?", arguments: [prefix.utf8.count, prefix])
    }
  }

  // MARK: Containers

  func insertContainer(_ container: ContainerRecord) throws(CrispError) {
    try write("container \(container.name) (attempt \(container.attempt)) already exists in pod \(container.podID)") {
      db in
      try db.execute(
        sql: """
          INSERT INTO containers (id, pod_id, name, attempt, image, image_id, created_at, config, log_path,
            stop_signal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          """,
        arguments: [
          container.id, container.podID, container.name, Int64(container.attempt), container.image,
          container.imageID, container.createdAt, Data(container.config), container.logPath, container.stopSignal,
        ])
    }
  }

  /// The container's config after UpdateContainerResources changed its resources.
  func updateContainerConfig(_ id: String, config: [UInt8]) throws(CrispError) {
    try write("update container \(id)") { db in
      try db.execute(sql: "UPDATE containers SET config = ? WHERE id = ?", arguments: [Data(config), id])
    }
  }

  func deleteContainer(_ id: String) throws(CrispError) {
    try write("delete container \(id)") { db in
      try db.execute(sql: "DELETE FROM containers WHERE id = ?", arguments: [id])
    }
  }

  func containers(podID: String? = nil) throws(CrispError) -> [ContainerRecord] {
    try read("list containers") { db in
      if let podID {
        return try Row.fetchAll(
          db, sql: "SELECT * FROM containers WHERE pod_id = ? ORDER BY created_at", arguments: [podID]
        ).map(Self.container)
      }
      return try Row.fetchAll(db, sql: "SELECT * FROM containers ORDER BY created_at").map(Self.container)
    }
  }

  func container(_ id: String) throws(CrispError) -> ContainerRecord? {
    try read("read container") { db in
      try Row.fetchOne(db, sql: "SELECT * FROM containers WHERE id = ?", arguments: [id]).map(Self.container)
    }
  }

  func containerIDs(withPrefix prefix: String) throws(CrispError) -> [String] {
    try read("look up container ID") { db in
      try String.fetchAll(
        db, sql: "SELECT id FROM containers WHERE substr(id, 1, ?) = ?", arguments: [prefix.utf8.count, prefix])
    }
  }

  // MARK: Rows

  private static func pod(_ row: Row) -> PodRecord {
    let ips: String = row["ips"]
    return PodRecord(
      id: row["id"], name: row["name"], namespace: row["namespace"], uid: row["uid"],
      attempt: UInt32(truncatingIfNeeded: row["attempt"] as Int64),
      state: PodRecord.State(rawValue: row["state"]) ?? .notReady,
      createdAt: row["created_at"], config: [UInt8](row["config"] as Data), runtimeHandler: row["runtime_handler"],
      ips: ips.isEmpty ? [] : ips.split(separator: ",").map(String.init), netns: row["netns"], ipcns: row["ipcns"],
      utsns: row["utsns"])
  }

  private static func container(_ row: Row) -> ContainerRecord {
    ContainerRecord(
      id: row["id"], podID: row["pod_id"], name: row["name"],
      attempt: UInt32(truncatingIfNeeded: row["attempt"] as Int64),
      image: row["image"], imageID: row["image_id"], createdAt: row["created_at"],
      config: [UInt8](row["config"] as Data), logPath: row["log_path"], stopSignal: row["stop_signal"])
  }
}
