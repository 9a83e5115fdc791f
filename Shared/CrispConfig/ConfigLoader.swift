import CrispCore
import CrispLinux
import Logging
import StrictTOML

#if canImport(Glibc)
  import Glibc
#endif

/// A configuration file that cannot be used, with the file, the key and the reason.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
  public let file: String
  public let key: String?
  public let reason: String

  public var description: String {
    if let key { return "\(file): key '\(key)': \(reason)" }
    return "\(file): \(reason)"
  }
}

extension CrispConfig {
  /// Loads a file. A missing file at the default path means defaults; a missing file
  /// named explicitly is an error.
  public static func load(path: String?) throws(ConfigError) -> CrispConfig {
    let file = path ?? defaultPath
    guard let text = readFile(file) else {
      if path == nil && errno == ENOENT { return CrispConfig() }
      throw ConfigError(file: file, key: nil, reason: "cannot read: \(Files.errnoText())")
    }
    return try parse(text, file: file)
  }

  /// Parses TOML text strictly: unknown keys, wrong types and invalid values are refused.
  public static func parse(_ text: String, file: String = "<config>") throws(ConfigError) -> CrispConfig {
    let top: StrictTOMLTable
    do {
      top = try StrictTOMLTable.parse(text, file: file)
    } catch {
      throw ConfigError(error)
    }
    var config = CrispConfig()
    var reader = TableReader(keys: top)
    for section in sections {
      if section.name.isEmpty {
        for option in section.options { try option.read(&reader, &config) }
        continue
      }
      guard var table = try reader.subtable(section.name) else { continue }
      for option in section.options { try option.read(&table, &config) }
      try table.finish()
    }
    try reader.finish()
    try config.checkTogether(file: file)
    return config
  }

  /// What no single option can check alone.
  private func checkTogether(file: String) throws(ConfigError) {
    if frontd.streamTLSCert.isEmpty != frontd.streamTLSKey.isEmpty {
      throw ConfigError(
        file: file, key: "frontd.stream_tls_key", reason: "stream_tls_cert and stream_tls_key go together")
    }
    // Each waiting or running pull holds one of imaged's IPC contexts (ipc.server_workers).
    let reserved = 4
    let pulls = imaged.maxConcurrentPulls + imaged.maxQueuedPulls
    if pulls > ipc.serverWorkers - reserved {
      throw ConfigError(
        file: file, key: "imaged.max_queued_pulls",
        reason: "max_concurrent_pulls + max_queued_pulls (\(pulls)) must leave \(reserved) of ipc.server_workers "
          + "(\(ipc.serverWorkers)) free for health and status calls")
    }
  }

  private static func readFile(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
      let n = fread(&buffer, 1, buffer.count, file)
      if n > 0 { bytes += buffer[0..<n] }
      if n < buffer.count {
        if ferror(file) != 0 { return nil }
        break
      }
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}

/// Reads the keys of one table of crisp.toml (`StrictTOMLTable`), checking each value and
/// naming the key in `ConfigError`.
struct TableReader {
  var keys: StrictTOMLTable

  func fail(_ key: String, _ reason: String) -> ConfigError { ConfigError(keys.fail(key, reason)) }

  /// `read`'s failure as a ConfigError.
  private mutating func reading<T>(_ read: (inout StrictTOMLTable) throws(StrictTOMLError) -> T)
    throws(ConfigError) -> T
  {
    do {
      return try read(&keys)
    } catch {
      throw ConfigError(error)
    }
  }

  mutating func string(_ key: String, into target: inout String, check: (String) -> String?) throws(ConfigError) {
    guard let string = try reading({ keys throws(StrictTOMLError) in try keys.string(key) }) else { return }
    if let reason = check(string) { throw fail(key, reason) }
    target = string
  }

  mutating func strings(_ key: String, into target: inout [String], check: (String) -> String?) throws(ConfigError) {
    guard let strings = try reading({ keys throws(StrictTOMLError) in try keys.strings(key) }) else { return }
    for (index, string) in strings.enumerated() {
      if let reason = check(string) { throw fail(key, "element \(index): \(reason)") }
    }
    target = strings
  }

  /// A table of string values with free keys (`{ name = "value", ... }`).
  mutating func stringTable(
    _ key: String, into target: inout [String: String], check: (String, String) -> String?
  ) throws(ConfigError) {
    guard let table = try reading({ keys throws(StrictTOMLError) in try keys.stringTable(key) }) else { return }
    for name in table.keys.sorted() {
      if let reason = check(name, table[name]!) { throw fail(key, reason) }
    }
    target = table
  }

  /// One of a fixed set of names (an enum's raw values).
  mutating func choice<Choice: RawRepresentable & CaseIterable>(
    _ key: String, into target: inout Choice
  ) throws(ConfigError) where Choice.RawValue == String {
    var name = target.rawValue
    try string(key, into: &name) { value in
      Choice(rawValue: value) != nil
        ? nil
        : "must be " + Choice.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ") + ", got \"\(value)\""
    }
    target = Choice(rawValue: name) ?? target
  }

  mutating func level(_ key: String, into target: inout Logger.Level) throws(ConfigError) {
    var level: Logger.Level? = target
    try optionalLevel(key, into: &level, emptyMeans: false)
    target = level ?? target
  }

  /// A log level, or "" for none (the daemon's table then follows the global one).
  mutating func optionalLevel(_ key: String, into target: inout Logger.Level?, emptyMeans: Bool = true)
    throws(ConfigError)
  {
    var name = target?.rawValue ?? ""
    try string(key, into: &name) { value in
      if value.isEmpty && emptyMeans { return nil }
      return Logger.Level(configName: value) == nil
        ? "unknown log level \"\(value)\" (trace, debug, info, notice, warning, error, critical)" : nil
    }
    target = name.isEmpty ? nil : Logger.Level(configName: name)
  }

  mutating func bool(_ key: String, into target: inout Bool) throws(ConfigError) {
    guard let bool = try reading({ keys throws(StrictTOMLError) in try keys.bool(key) }) else { return }
    target = bool
  }

  mutating func int(_ key: String, into target: inout Int, range: ClosedRange<Int>) throws(ConfigError) {
    guard let int = try reading({ keys throws(StrictTOMLError) in try keys.int(key) }) else { return }
    guard range.contains(int) else {
      throw fail(key, "\(int) is out of range \(range.lowerBound)...\(range.upperBound)")
    }
    target = int
  }

  mutating func double(_ key: String, into target: inout Double, range: ClosedRange<Double>) throws(ConfigError) {
    guard let number = try reading({ keys throws(StrictTOMLError) in try keys.double(key) }) else { return }
    guard range.contains(number) else {
      throw fail(key, "\(number) is out of range \(range.lowerBound)...\(range.upperBound)")
    }
    target = number
  }

  mutating func subtable(_ key: String) throws(ConfigError) -> TableReader? {
    try reading({ keys throws(StrictTOMLError) in try keys.table(key) }).map { TableReader(keys: $0) }
  }

  func finish() throws(ConfigError) {
    do {
      try keys.finish()
    } catch {
      throw ConfigError(error)
    }
  }
}

extension ConfigError {
  init(_ error: StrictTOMLError) {
    switch error {
    case .syntax(let file, let line, let column, let reason):
      self.init(file: file, key: nil, reason: "line \(line), column \(column): \(reason)")
    case .invalid(let file, let key, let reason):
      self.init(file: file, key: key, reason: reason)
    }
  }
}
