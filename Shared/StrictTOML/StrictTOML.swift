import TOMLKit

/// A configuration file that cannot be used: the file, where in it, and why.
public enum StrictTOMLError: Error, Sendable, Equatable {
  /// Not TOML: the parser's message, at a line and column (0 when it names none).
  case syntax(file: String, line: Int, column: Int, reason: String)
  /// A key is unknown or has a value of the wrong type or a bad value. `key` is its
  /// path from the top, such as `frontd.stream_port` or `registry[1].mirror[0].location`.
  case invalid(file: String, key: String, reason: String)
}

/// The keys of one table of a TOML file, read strictly: every key read is remembered,
/// so that `finish` can refuse the rest by name, and a value of the wrong type is
/// refused naming its key. crisp.toml and registries.conf are read through it.
public struct StrictTOMLTable {
  public let table: TOMLTable
  /// This table's path from the top ("" for the top).
  public let path: String
  public let file: String
  private var used: Set<String> = []

  public init(table: TOMLTable, path: String, file: String) {
    self.table = table
    self.path = path
    self.file = file
  }

  /// The top table of `text`; `file` names it in errors.
  public static func parse(_ text: String, file: String) throws(StrictTOMLError) -> StrictTOMLTable {
    do {
      return StrictTOMLTable(table: try TOMLTable(string: text), path: "", file: file)
    } catch let error as TOMLParseError {
      throw .syntax(
        file: file, line: error.source.begin.line, column: error.source.begin.column, reason: error.description)
    } catch {
      throw .syntax(file: file, line: 0, column: 0, reason: "\(error)")
    }
  }

  /// The keys present, sorted.
  public var keys: [String] { table.keys.sorted() }

  /// `registry[0].mirror[1].location`; keys that are not TOML bare keys are quoted
  /// (`aliases."ubi8/ubi"`).
  public func fullKey(_ key: String) -> String {
    let bare =
      !key.isEmpty
      && key.utf8.allSatisfy { c in
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
          || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
      }
    let name = bare ? key : String(reflecting: key)
    return path.isEmpty ? name : path + "." + name
  }

  public func fail(_ key: String, _ reason: String) -> StrictTOMLError {
    .invalid(file: file, key: fullKey(key), reason: reason)
  }

  private mutating func value(_ key: String) -> TOMLValueConvertible? {
    used.insert(key)
    return table[key]
  }

  public mutating func string(_ key: String) throws(StrictTOMLError) -> String? {
    guard let value = value(key) else { return nil }
    guard let string = value.string else { throw fail(key, "expected a string, found \(value.type)") }
    return string
  }

  public mutating func bool(_ key: String) throws(StrictTOMLError) -> Bool? {
    guard let value = value(key) else { return nil }
    guard let bool = value.bool else { throw fail(key, "expected true or false, found \(value.type)") }
    return bool
  }

  public mutating func int(_ key: String) throws(StrictTOMLError) -> Int? {
    guard let value = value(key) else { return nil }
    guard let int = value.int else { throw fail(key, "expected an integer, found \(value.type)") }
    return int
  }

  /// A number; an integer is taken as one too (`1` for `1.0`).
  public mutating func double(_ key: String) throws(StrictTOMLError) -> Double? {
    guard let value = value(key) else { return nil }
    guard let number = value.double ?? value.int.map(Double.init) else {
      throw fail(key, "expected a number, found \(value.type)")
    }
    return number
  }

  public mutating func strings(_ key: String) throws(StrictTOMLError) -> [String]? {
    guard let value = value(key) else { return nil }
    guard let array = value.array else { throw fail(key, "expected an array of strings, found \(value.type)") }
    var result: [String] = []
    for (index, element) in array.enumerated() {
      guard let string = element.string else {
        throw fail(key, "element \(index) must be a string, found \(element.type)")
      }
      result.append(string)
    }
    return result
  }

  /// A table of string values with free keys (`{ name = "value", ... }`).
  public mutating func stringTable(_ key: String) throws(StrictTOMLError) -> [String: String]? {
    guard let value = value(key) else { return nil }
    guard let table = value.table else { throw fail(key, "expected a table of strings, found \(value.type)") }
    var result: [String: String] = [:]
    for name in table.keys.sorted() {
      guard let string = table[name]?.string else {
        throw fail(key, "\(name) must be a string, found \(table[name]?.type.description ?? "nothing")")
      }
      result[name] = string
    }
    return result
  }

  public mutating func table(_ key: String) throws(StrictTOMLError) -> StrictTOMLTable? {
    guard let value = value(key) else { return nil }
    guard let table = value.table else { throw fail(key, "expected a table [\(fullKey(key))], found \(value.type)") }
    return StrictTOMLTable(table: table, path: fullKey(key), file: file)
  }

  /// An array of tables (`[[key]]`), each named `key[index]`.
  public mutating func tables(_ key: String) throws(StrictTOMLError) -> [StrictTOMLTable]? {
    guard let value = value(key) else { return nil }
    guard let array = value.array else {
      throw fail(key, "expected an array of tables [[\(fullKey(key))]], found \(value.type)")
    }
    var result: [StrictTOMLTable] = []
    for (index, element) in array.enumerated() {
      guard let table = element.table else {
        throw fail(key, "element \(index) must be a table [[\(fullKey(key))]], found \(element.type)")
      }
      result.append(StrictTOMLTable(table: table, path: fullKey(key) + "[\(index)]", file: file))
    }
    return result
  }

  /// Refuses the keys not read, with a specific reason for those in `reasons`.
  public func finish(reasons: [String: String] = [:]) throws(StrictTOMLError) {
    for key in table.keys.sorted() where !used.contains(key) {
      throw fail(key, reasons[key] ?? "unknown key")
    }
  }
}
