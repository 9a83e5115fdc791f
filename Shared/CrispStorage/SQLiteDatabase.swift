import CrispCore
import Foundation
import GRDB

/// A SQLite database in WAL mode with its schema migrations, and reads and writes
/// whose failures are `CrispError`s naming what was being done. Each write is one
/// transaction, so a SIGKILL at any point leaves the old state or the new one.
public final class SQLiteDatabase: Sendable {
  private let queue: DatabaseQueue

  /// Opens (creating if needed) and migrates; `migrations` run in order, each once.
  public init(path: String, migrations: [(name: String, sql: String)]) throws(CrispError) {
    // Root-only, like everything under root: pods' annotations and containers' specs
    // are in it. SQLite gives the -wal and -shm files the database file's mode.
    // (An older crisp left them 0644: they are made 0600 too.)
    for file in [path, path + "-wal", path + "-shm"] {
      let fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (file == path ? O_CREAT : 0), 0o600)
      if fd >= 0 {
        fchmod(fd, 0o600)
        close(fd)
      } else if file == path {
        throw CrispError(.internal, "cannot create the database \(path): \(Files.errnoText())")
      }
    }
    do {
      var configuration = Configuration()
      configuration.busyMode = .timeout(5)
      queue = try DatabaseQueue(path: path, configuration: configuration)
      try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = WAL") }
      var migrator = DatabaseMigrator()
      for migration in migrations {
        migrator.registerMigration(migration.name) { db in try db.execute(sql: migration.sql) }
      }
      try migrator.migrate(queue)
    } catch {
      throw CrispError(.internal, "cannot open the database \(path): \(error)")
    }
  }

  /// One write transaction. A unique-key clash is `alreadyExists` with `what` as its
  /// message; a `CrispError` thrown by `body` passes through unchanged.
  public func write<T>(_ what: String, _ body: (Database) throws -> T) throws(CrispError) -> T {
    do {
      return try queue.write(body)
    } catch let error as CrispError {
      throw error
    } catch let error as DatabaseError
      where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE
      || error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY
    {
      throw CrispError(.alreadyExists, what)
    } catch {
      throw CrispError(.internal, "database: \(what): \(error)")
    }
  }

  public func read<T>(_ what: String, _ body: (Database) throws -> T) throws(CrispError) -> T {
    do {
      return try queue.read(body)
    } catch {
      throw CrispError(.internal, "database: \(what): \(error)")
    }
  }
}
