import CrispCore
import CrispLinux
import Logging
import TOMLKit

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
      throw ConfigError(file: file, key: nil, reason: "cannot read: \(String(cString: strerror(errno)))")
    }
    return try parse(text, file: file)
  }

  /// Parses TOML text strictly: unknown keys, wrong types and invalid values are refused.
  public static func parse(_ text: String, file: String = "<config>") throws(ConfigError) -> CrispConfig {
    let table: TOMLTable
    do {
      table = try TOMLTable(string: text)
    } catch let error as TOMLParseError {
      throw ConfigError(
        file: file, key: nil,
        reason: "line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
    } catch {
      throw ConfigError(file: file, key: nil, reason: "\(error)")
    }
    var config = CrispConfig()
    var top = TableReader(table: table, prefix: "", file: file)
    for section in sections {
      if section.name.isEmpty {
        for option in section.options { try option.read(&top, &config) }
        continue
      }
      guard var reader = try top.subtable(section.name) else { continue }
      for option in section.options { try option.read(&reader, &config) }
      try reader.finish()
    }
    try top.finish()
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

/// Reads the keys of one TOML table, remembering which were used so that `finish()`
/// can refuse the rest by name.
struct TableReader {
  let table: TOMLTable
  let prefix: String
  let file: String
  var used: Set<String> = []

  init(table: TOMLTable, prefix: String, file: String) {
    self.table = table
    self.prefix = prefix
    self.file = file
  }

  func fullKey(_ key: String) -> String { prefix.isEmpty ? key : prefix + "." + key }

  func fail(_ key: String, _ reason: String) -> ConfigError {
    ConfigError(file: file, key: fullKey(key), reason: reason)
  }

  mutating func value(_ key: String) -> TOMLValueConvertible? {
    used.insert(key)
    return table[key]
  }

  mutating func string(_ key: String, into target: inout String, check: (String) -> String?) throws(ConfigError) {
    guard let value = value(key) else { return }
    guard let string = value.string else { throw fail(key, "expected a string, found \(value.type)") }
    if let reason = check(string) { throw fail(key, reason) }
    target = string
  }

  mutating func strings(_ key: String, into target: inout [String], check: (String) -> String?) throws(ConfigError) {
    guard let value = value(key) else { return }
    guard let array = value.array else { throw fail(key, "expected an array of strings, found \(value.type)") }
    var result: [String] = []
    for (index, element) in array.enumerated() {
      guard let string = element.string else {
        throw fail(key, "element \(index) must be a string, found \(element.type)")
      }
      if let reason = check(string) { throw fail(key, "element \(index): \(reason)") }
      result.append(string)
    }
    target = result
  }

  /// A table of string values with free keys (`{ name = "value", ... }`).
  mutating func stringTable(
    _ key: String, into target: inout [String: String], check: (String, String) -> String?
  ) throws(ConfigError) {
    guard let value = value(key) else { return }
    guard let table = value.table else { throw fail(key, "expected a table of strings, found \(value.type)") }
    var result: [String: String] = [:]
    for name in table.keys.sorted() {
      guard let string = table[name]?.string else {
        throw fail(key, "\(name) must be a string, found \(table[name]?.type.description ?? "nothing")")
      }
      if let reason = check(name, string) { throw fail(key, reason) }
      result[name] = string
    }
    target = result
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
    guard let value = value(key) else { return }
    guard let bool = value.bool else { throw fail(key, "expected true or false, found \(value.type)") }
    target = bool
  }

  mutating func int(_ key: String, into target: inout Int, range: ClosedRange<Int>) throws(ConfigError) {
    guard let value = value(key) else { return }
    guard let int = value.int else { throw fail(key, "expected an integer, found \(value.type)") }
    guard range.contains(int) else {
      throw fail(key, "\(int) is out of range \(range.lowerBound)...\(range.upperBound)")
    }
    target = int
  }

  /// A number; an integer is taken as one too (`1` for `1.0`).
  mutating func double(_ key: String, into target: inout Double, range: ClosedRange<Double>) throws(ConfigError) {
    guard let value = value(key) else { return }
    guard let number = value.double ?? value.int.map(Double.init) else {
      throw fail(key, "expected a number, found \(value.type)")
    }
    guard range.contains(number) else {
      throw fail(key, "\(number) is out of range \(range.lowerBound)...\(range.upperBound)")
    }
    target = number
  }

  mutating func subtable(_ key: String) throws(ConfigError) -> TableReader? {
    guard let value = value(key) else { return nil }
    guard let table = value.table else { throw fail(key, "expected a table [\(fullKey(key))], found \(value.type)") }
    return TableReader(table: table, prefix: fullKey(key), file: file)
  }

  func finish() throws(ConfigError) {
    for key in table.keys.sorted() where !used.contains(key) {
      throw fail(key, "unknown key")
    }
  }
}
