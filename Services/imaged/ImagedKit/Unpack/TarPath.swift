/// Names inside a layer, as raw bytes: tar names need not be UTF-8, and a name must reach
/// the file system byte for byte.
enum TarPath {
  static let slash = UInt8(ascii: "/")
  static let dot = UInt8(ascii: ".")
  static let whiteoutPrefix: [UInt8] = Array(".wh.".utf8)
  static let opaqueMarker: [UInt8] = Array(".wh..wh..opq".utf8)
  static let auFSMetadataPrefix: [UInt8] = Array(".wh..wh.".utf8)

  static func isDot(_ name: some Collection<UInt8>) -> Bool {
    name.count == 1 && name.first == dot
  }

  static func isDotDot(_ name: some Collection<UInt8>) -> Bool {
    name.count == 2 && name.allSatisfy { $0 == dot }
  }

  /// The components of `raw` below the layer root, as tar reads a member name: leading
  /// `/` and `./` dropped, empty and `.` components dropped, `..` applied lexically.
  /// `[]` is the layer root itself; nil means a `..` climbs above the root.
  static func components(_ raw: [UInt8]) -> [[UInt8]]? {
    var result: [[UInt8]] = []
    for part in raw.split(separator: slash, omittingEmptySubsequences: true) {
      if isDot(part) { continue }
      if isDotDot(part) {
        if result.popLast() == nil { return nil }
        continue
      }
      result.append(Array(part))
    }
    return result
  }

  /// The components of a symlink target, to resolve from the link's directory (or from
  /// the layer root when `absolute`). `.` and `..` are kept: they are resolved physically.
  static func linkComponents(_ target: [UInt8]) -> (absolute: Bool, components: [[UInt8]]) {
    let parts = target.split(separator: slash, omittingEmptySubsequences: true).map { Array($0) }
    return (target.first == slash, parts)
  }

  /// The length of the path `components` name, joined with `/`.
  static func length(_ components: [[UInt8]]) -> Int {
    components.reduce(0) { $0 + $1.count } + max(components.count - 1, 0)
  }

  static func joined(_ components: some Collection<[UInt8]>) -> [UInt8] {
    var bytes: [UInt8] = []
    for (index, component) in components.enumerated() {
      if index > 0 { bytes.append(slash) }
      bytes += component
    }
    return bytes
  }

  /// What a base name means under OCI whiteout rules.
  enum Whiteout: Equatable {
    case none
    /// `.wh..wh..opq`: the directory holding it is opaque.
    case opaque
    /// `.wh.<name>`: `<name>` is deleted (the name is not checked here).
    case delete([UInt8])
    /// Other `.wh..wh.*` names: aufs metadata, ignored.
    case aufsMetadata
  }

  static func whiteout(_ base: [UInt8]) -> Whiteout {
    guard base.starts(with: whiteoutPrefix) else { return .none }
    if base == opaqueMarker { return .opaque }
    if base.starts(with: auFSMetadataPrefix) { return .aufsMetadata }
    return .delete(Array(base.dropFirst(whiteoutPrefix.count)))
  }

  /// `raw` as text for error messages and logs: invalid UTF-8 replaced, control characters
  /// escaped, at most `limit` characters kept.
  static func display(_ raw: some Collection<UInt8>, limit: Int = 1024) -> String {
    var text = ""
    var count = 0
    for scalar in String(decoding: Array(raw), as: UTF8.self).unicodeScalars {
      if count == limit {
        text += "…"
        break
      }
      count += 1
      if scalar.value < 0x20 || scalar.value == 0x7f || (0x80...0x9f).contains(scalar.value) {
        text += "\\u{" + String(scalar.value, radix: 16) + "}"
      } else {
        text.unicodeScalars.append(scalar)
      }
    }
    return text
  }
}
