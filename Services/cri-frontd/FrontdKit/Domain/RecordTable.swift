import CrispCore
import Synchronization

/// What a record table holds: something with a runtime ID and a creation time.
protocol TableEntry: Sendable {
  var id: String { get }
  var createdAt: Int64 { get }
}

/// frontd's records of one kind (pods, or containers) in memory: loaded from the
/// metadata database at start, and changed only after the database has taken the
/// change (write-through), so that every read-only RPC is answered without SQLite.
/// `kind` names the records in errors ("pod sandbox", "container").
final class RecordTable<Entry: TableEntry>: Sendable {
  private let kind: String
  private let kinds: String
  private let entries: Mutex<[String: Entry]>

  /// `kinds`: the plural, for errors ("pods").
  init(kind: String, kinds: String, loaded: [Entry]) {
    self.kind = kind
    self.kinds = kinds
    entries = Mutex(Dictionary(loaded.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last }))
  }

  func get(_ id: String) -> Entry? { entries.withLock { $0[id] } }

  /// Every entry, oldest first (the order the database listed them in).
  func all(where include: (Entry) -> Bool = { _ in true }) -> [Entry] {
    entries.withLock { $0.values.filter(include) }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
  }

  var count: Int { entries.withLock { $0.count } }

  /// The entry an ID or a unique ID prefix names; nil when none does.
  func resolve(_ text: String) throws(CrispError) -> Entry? {
    guard !text.isEmpty else { throw CrispError(.invalidArgument, "\(kind) ID must not be empty") }
    let matches = entries.withLock { entries -> [Entry] in
      if let exact = entries[text] { return [exact] }
      return entries.values.filter { $0.id.hasPrefix(text) }
    }
    if matches.count > 1 {
      throw CrispError(.invalidArgument, "\(kind) ID prefix \"\(text)\" is ambiguous (\(matches.count) \(kinds))")
    }
    return matches.first
  }

  /// After the database has taken it.
  func put(_ entry: Entry) { entries.withLock { $0[entry.id] = entry } }

  /// After the database has dropped it.
  func remove(_ id: String) { entries.withLock { _ = $0.removeValue(forKey: id) } }

  func removeAll(where drop: (Entry) -> Bool) {
    entries.withLock { entries in
      for (id, entry) in entries where drop(entry) { entries.removeValue(forKey: id) }
    }
  }
}
