import CrispCore
import StrictTOML

#if canImport(Glibc)
  import Glibc
#endif

/// A registries.conf that cannot be used (naming the file, the key and the reason), or
/// a pull the configuration refuses.
public enum RegistriesConfigError: Error, Sendable, Equatable, CustomStringConvertible {
  /// The file exists but cannot be read.
  case unreadable(file: String, reason: String)
  /// The file is not TOML.
  case syntax(file: String, line: Int, column: Int, reason: String)
  /// A key is unknown, has the wrong type or a bad value. `key` is a path such as
  /// `registry[1].mirror[0].pull-from-mirror` (indices count from 0 in file order).
  case invalid(file: String, key: String, reason: String)
  /// The `[[registry]]` table matching the reference has `blocked = true`.
  case blocked(ImageReference)
  /// Replacing the matched prefix by a `location` gives no valid reference.
  case rewriteFailed(reference: ImageReference, location: String, error: ReferenceError)

  public var description: String {
    switch self {
    case .unreadable(let file, let reason): "\(file): cannot read: \(reason)"
    case .syntax(let file, let line, let column, let reason): "\(file): line \(line), column \(column): \(reason)"
    case .invalid(let file, let key, let reason): "\(file): key '\(key)': \(reason)"
    case .blocked(let reference):
      "pulling \"\(reference)\" is blocked by the registries configuration (blocked = true)"
    case .rewriteFailed(let reference, let location, let error):
      "cannot pull \"\(reference)\" from location \"\(location)\": \(error)"
    }
  }

  /// The CRI-facing error.
  public var crispError: CrispError {
    switch self {
    case .blocked: CrispError(.permissionDenied, description)
    case .rewriteFailed: CrispError(.invalidArgument, description)
    case .unreadable, .syntax, .invalid: CrispError(.failedPrecondition, description)
    }
  }
}

/// Where to pull an image from: one endpoint, with the reference as it is fetched there.
public struct PullSource: Sendable, Equatable {
  /// The reference as it is fetched at this endpoint (registry and repository rewritten
  /// by `location`); the image is still named by the reference that was asked for.
  public var reference: ImageReference
  /// Plain HTTP for this endpoint (see `RegistriesConfig.Registry.insecure`).
  public var insecure: Bool
  public var isMirror: Bool

  public init(reference: ImageReference, insecure: Bool, isMirror: Bool) {
    self.reference = reference
    self.insecure = insecure
    self.isMirror = isMirror
  }
}

/// containers-registries.conf(5), version 2: short-name search, per-namespace settings,
/// location rewriting and mirrors.
///
/// ```toml
/// unqualified-search-registries = ["docker.io"]
/// short-name-mode = "permissive"      # accepted and ignored: every search registry is tried in order
///
/// [[registry]]
/// prefix = "registry.k8s.io"          # defaults to location; or "*.example.com"
/// location = "127.0.0.1:5000"         # replaces the matched prefix
/// insecure = true                     # plain HTTP
/// blocked = false
/// mirror-by-digest-only = false
///
/// [[registry.mirror]]
/// location = "mirror.local/k8s"
/// insecure = false
/// pull-from-mirror = "all"            # "digest-only", "tag-only"
///
/// [aliases]
/// "busybox" = "docker.io/library/busybox"
/// ```
///
/// crisp's reading differs from containers/image in these ways:
/// - `insecure = true` means crisp talks **plain HTTP** (`http://`) to that endpoint; it
///   does not try HTTPS first and never turns TLS verification off. A registry on
///   `localhost` or 127.0.0.0/8 is not insecure unless a table says so.
/// - Parsing is strict: an unknown key, a wrong type, the version 1 tables
///   (`[registries.search]`, …), a mirror on a blocked registry, two tables with the same
///   prefix, or mirrors with `pull-from-mirror` under `mirror-by-digest-only = true` are
///   errors naming the file and the key.
/// - A `[[registry]]` with only a (non-wildcard) `prefix` has `location` = `prefix`.
/// - `short-name-mode` is accepted and ignored: crisp never prompts and tries every
///   unqualified-search registry in order (what "permissive" does without a terminal).
/// - `credential-helpers` is accepted only as `["containers-auth.json"]` (crisp reads
///   its own auth file); `registries.conf.d` drop-ins are not read.
public struct RegistriesConfig: Sendable, Equatable {
  public static let defaultPath = "/etc/containers/registries.conf"

  /// `host[:port]` entries tried, in order, for a short name.
  public var unqualifiedSearchRegistries: [String]
  /// The `[[registry]]` tables in file order.
  public var registries: [Registry]
  /// `[aliases]`: short name (no tag or digest) → fully qualified name.
  public var aliases: [String: String]

  public init(unqualifiedSearchRegistries: [String] = [], registries: [Registry] = [], aliases: [String: String] = [:])
  {
    self.unqualifiedSearchRegistries = unqualifiedSearchRegistries
    self.registries = registries
    self.aliases = aliases
  }

  /// One `[[registry]]` table.
  public struct Registry: Sendable, Equatable {
    /// `host[:port]`, `host[:port]/namespace…[/repo[:tag|@digest]]`, or `*.example.com`.
    public var prefix: String
    /// What replaces the matched prefix; empty for a wildcard prefix (no rewriting).
    public var location: String
    /// Plain HTTP to `location` (not to the mirrors, which have their own setting).
    public var insecure: Bool
    public var blocked: Bool
    /// Mirrors are used only for references with a digest.
    public var mirrorByDigestOnly: Bool
    public var mirrors: [Mirror]

    public init(
      prefix: String? = nil, location: String, insecure: Bool = false, blocked: Bool = false,
      mirrorByDigestOnly: Bool = false, mirrors: [Mirror] = []
    ) {
      self.prefix = prefix ?? location
      self.location = location
      self.insecure = insecure
      self.blocked = blocked
      self.mirrorByDigestOnly = mirrorByDigestOnly
      self.mirrors = mirrors
    }

    /// `*.example.com`: matches every registry host under example.com (not example.com itself).
    public var isWildcard: Bool { prefix.hasPrefix("*.") }
  }

  /// One `[[registry.mirror]]` table.
  public struct Mirror: Sendable, Equatable {
    /// Replaces the matched prefix, like `Registry.location`.
    public var location: String
    /// Plain HTTP to this mirror.
    public var insecure: Bool
    public var pullFromMirror: PullFromMirror

    public init(location: String, insecure: Bool = false, pullFromMirror: PullFromMirror = .all) {
      self.location = location
      self.insecure = insecure
      self.pullFromMirror = pullFromMirror
    }
  }

  /// Which references a mirror serves.
  public enum PullFromMirror: String, Sendable, Equatable, CaseIterable {
    case all
    /// Only references with a digest.
    case digestOnly = "digest-only"
    /// Only references without a digest.
    case tagOnly = "tag-only"
  }
}

// MARK: - Resolution

extension RegistriesConfig {
  /// The fully qualified references a user's image name stands for, in the order to try:
  /// a fully qualified name → itself; a short name → its `[aliases]` entry if any, else
  /// one per unqualified-search registry (docker.io gets `library/` for one-component
  /// names), or docker.io alone when the list is empty. Tag and digest are kept.
  public func qualify(_ text: String) throws(ReferenceError) -> [ImageReference] {
    let reference = try ImageReference.parse(text)
    guard ImageReference.isShortName(text) else { return [reference] }
    let parts = ImageReference.splitReference(text)
    var suffix = parts.tag.map { ":" + $0 } ?? ""
    if let digest = parts.digest { suffix += "@" + digest }
    if let alias = aliases[String(parts.name)] { return [try ImageReference.parse(alias + suffix)] }
    if unqualifiedSearchRegistries.isEmpty { return [reference] }
    var result: [ImageReference] = []
    for registry in unqualifiedSearchRegistries {
      let qualified = try ImageReference.parse(registry + "/" + text)
      if !result.contains(qualified) { result.append(qualified) }
    }
    return result
  }

  /// The `[[registry]]` table for `reference`: the one with the longest matching prefix
  /// (see `ImageReference.matches(prefix:)`). A wildcard prefix matches a registry whose
  /// host (port ignored) ends in `.example.com`; any matching non-wildcard prefix beats
  /// it, and among wildcards the longest wins.
  public func registry(for reference: ImageReference) -> Registry? {
    var best: (score: Int, registry: Registry)?
    for registry in registries {
      let score: Int
      if registry.isWildcard {
        let domain = registry.prefix.dropFirst()  // ".example.com"
        let host = Self.hostWithoutPort(reference.registry)
        guard host.hasSuffix(domain), host.count > domain.count else { continue }
        score = domain.count  // shorter than any host it matches, so an exact prefix wins
      } else {
        guard reference.matches(prefix: registry.prefix) else { continue }
        score = registry.prefix.count
      }
      if score > best?.score ?? 0 { best = (score, registry) }
    }
    return best?.registry
  }

  /// Where to pull `reference` from: its mirrors in file order (those that
  /// `pull-from-mirror` / `mirror-by-digest-only` allow for it), then the origin
  /// (location-rewritten). Throws `.blocked(reference)` when the matching registry is blocked.
  public func pullSources(for reference: ImageReference) throws(RegistriesConfigError) -> [PullSource] {
    guard let registry = registry(for: reference) else {
      return [PullSource(reference: reference, insecure: false, isMirror: false)]
    }
    if registry.blocked { throw .blocked(reference) }
    let digested = reference.digest != nil
    var sources: [PullSource] = []
    for mirror in registry.mirrors {
      let allowed: Bool
      if registry.mirrorByDigestOnly {
        allowed = digested
      } else {
        switch mirror.pullFromMirror {
        case .all: allowed = true
        case .digestOnly: allowed = digested
        case .tagOnly: allowed = !digested
        }
      }
      guard allowed else { continue }
      let rewritten = try Self.rewrite(reference, registry: registry, location: mirror.location)
      sources.append(PullSource(reference: rewritten, insecure: mirror.insecure, isMirror: true))
    }
    let origin =
      registry.isWildcard ? reference : try Self.rewrite(reference, registry: registry, location: registry.location)
    sources.append(PullSource(reference: origin, insecure: registry.insecure, isMirror: false))
    return sources
  }

  /// Replaces the matched prefix (for a wildcard: the registry) by `location`.
  private static func rewrite(_ reference: ImageReference, registry: Registry, location: String)
    throws(RegistriesConfigError) -> ImageReference
  {
    let prefix = registry.isWildcard ? reference.registry : registry.prefix
    do {
      return try reference.replacingRegistryPrefix(prefix, with: location)
    } catch {
      throw .rewriteFailed(reference: reference, location: location, error: error)
    }
  }

  private static func hostWithoutPort(_ registry: String) -> Substring {
    if registry.hasPrefix("[") {
      guard let close = registry.firstIndex(of: "]") else { return Substring(registry) }
      return registry[...close]
    }
    return registry.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)[0]
  }
}

// MARK: - Loading

extension RegistriesConfig {
  /// Reads and parses `path`; a missing file is the default configuration (no
  /// registries, no unqualified-search registries).
  public static func load(path: String = defaultPath) throws(RegistriesConfigError) -> RegistriesConfig {
    switch RegistryConfigFile.contents(of: path) {
    case .missing: return RegistriesConfig()
    case .failed(let reason): throw .unreadable(file: path, reason: reason)
    case .contents(let bytes): return try parse(String(decoding: bytes, as: UTF8.self), source: path)
    }
  }

  /// Parses registries.conf text; `source` names it in errors.
  public static func parse(_ toml: String, source: String) throws(RegistriesConfigError) -> RegistriesConfig {
    var top: TOMLKeys
    do {
      top = TOMLKeys(keys: try StrictTOMLTable.parse(toml, file: source))
    } catch {
      throw RegistriesConfigError(error)
    }

    var config = RegistriesConfig()
    if let entries = try top.strings("unqualified-search-registries") {
      for (index, entry) in entries.enumerated() {
        let registry = trimTrailingSlashes(entry)
        if registry.contains("/") {
          throw top.fail(
            "unqualified-search-registries",
            "element \(index): \(quote(entry)) is not a registry host[:port] (it has a path)")
        }
        if let problem = ImageReference.hostProblem(Substring(registry)) {
          throw top.fail("unqualified-search-registries", "element \(index): \(problem) (expected host[:port])")
        }
        if !config.unqualifiedSearchRegistries.contains(registry) {
          config.unqualifiedSearchRegistries.append(registry)
        }
      }
    }
    if let mode = try top.string("short-name-mode"), !["", "enforcing", "permissive", "disabled"].contains(mode) {
      throw top.fail("short-name-mode", "must be \"enforcing\", \"permissive\" or \"disabled\", got \(quote(mode))")
    }
    if let helpers = try top.strings("credential-helpers"), helpers.contains(where: { $0 != "containers-auth.json" }) {
      throw top.fail(
        "credential-helpers",
        "credential helpers are not supported; crisp reads credentials from its auth file (only \"containers-auth.json\" is accepted)"
      )
    }
    if let tables = try top.tables("registry") {
      for var keys in tables {
        config.registries.append(try parseRegistry(&keys))
      }
    }
    try checkConflicts(config.registries, file: source)
    if var aliases = try top.table("aliases") {
      config.aliases = try parseAliases(&aliases)
    }
    try top.finish(reasons: [
      "registries":
        "the version 1 format ([registries.search], [registries.insecure], [registries.block]) is not supported; "
        + "use unqualified-search-registries and [[registry]] tables (containers-registries.conf(5))",
      "additional-layer-store-auth-helper": "not supported by crisp",
    ])
    return config
  }

  private static func parseRegistry(_ keys: inout TOMLKeys) throws(RegistriesConfigError) -> Registry {
    let prefixValue = try keys.string("prefix").map(trimTrailingSlashes)
    let locationValue = try keys.string("location").map(trimTrailingSlashes)
    var registry: Registry
    if let prefix = prefixValue, prefix.hasPrefix("*.") {
      let domain = prefix.dropFirst(2)
      if domain.contains(":") || domain.contains("/") || domain.contains("*")
        || ImageReference.hostProblem(domain) != nil
      {
        throw keys.fail(
          "prefix", "a wildcard prefix must have the form *.example.com (no port or path), got \(quote(prefix))")
      }
      if let location = locationValue, !location.isEmpty {
        throw keys.fail(
          "location",
          "must not be set with the wildcard prefix \(quote(prefix)) (matching references are used as they are)")
      }
      registry = Registry(prefix: prefix, location: "")
    } else {
      if let prefix = prefixValue {
        if prefix.isEmpty { throw keys.fail("prefix", "must not be empty") }
        if prefix.contains("*") {
          throw keys.fail("prefix", "a wildcard is allowed only as *.example.com, got \(quote(prefix))")
        }
        if let problem = ImageReference.registryPathProblem(prefix) { throw keys.fail("prefix", problem) }
      }
      if let location = locationValue {
        if location.isEmpty { throw keys.fail("location", "must not be empty") }
        if let problem = ImageReference.registryPathProblem(location) { throw keys.fail("location", problem) }
      }
      guard let location = locationValue ?? prefixValue else {
        throw keys.fail("location", "a [[registry]] table needs a location or a prefix")
      }
      registry = Registry(prefix: prefixValue, location: location)
    }
    registry.insecure = try keys.bool("insecure") ?? false
    registry.blocked = try keys.bool("blocked") ?? false
    registry.mirrorByDigestOnly = try keys.bool("mirror-by-digest-only") ?? false

    if let mirrors = try keys.tables("mirror") {
      if registry.blocked && !mirrors.isEmpty {
        throw keys.fail("mirror", "the registry \(quote(registry.prefix)) is blocked, so it cannot have mirrors")
      }
      for var mirrorKeys in mirrors {
        guard let location = try mirrorKeys.string("location").map(trimTrailingSlashes) else {
          throw mirrorKeys.fail("location", "a [[registry.mirror]] table needs a location")
        }
        if location.isEmpty { throw mirrorKeys.fail("location", "must not be empty") }
        if let problem = ImageReference.registryPathProblem(location) { throw mirrorKeys.fail("location", problem) }
        var mirror = Mirror(location: location)
        mirror.insecure = try mirrorKeys.bool("insecure") ?? false
        if let value = try mirrorKeys.string("pull-from-mirror"), !value.isEmpty {
          guard let pull = PullFromMirror(rawValue: value) else {
            throw mirrorKeys.fail(
              "pull-from-mirror", "must be \"all\", \"digest-only\" or \"tag-only\", got \(quote(value))")
          }
          if registry.mirrorByDigestOnly {
            throw mirrorKeys.fail(
              "pull-from-mirror", "cannot be combined with mirror-by-digest-only = true on its [[registry]]")
          }
          mirror.pullFromMirror = pull
        }
        try mirrorKeys.finish(reasons: [:])
        registry.mirrors.append(mirror)
      }
    }
    try keys.finish(reasons: [
      "pull-from-mirror": "is allowed only in a [[registry.mirror]] table",
      "url": "was renamed to location",
      "unqualified-search": "is not a [[registry]] key; use the top-level unqualified-search-registries",
    ])
    return registry
  }

  /// Two tables with one prefix are ambiguous; two with one location must agree on
  /// `insecure` and `blocked` (as containers/image requires).
  private static func checkConflicts(_ registries: [Registry], file: String) throws(RegistriesConfigError) {
    for (j, registry) in registries.enumerated() {
      for i in 0..<j {
        let other = registries[i]
        if other.prefix == registry.prefix {
          throw .invalid(
            file: file, key: "registry[\(j)].prefix",
            reason: "the prefix \(quote(registry.prefix)) is already used by registry[\(i)]")
        }
        guard !registry.location.isEmpty, other.location == registry.location else { continue }
        if other.insecure != registry.insecure {
          throw .invalid(
            file: file, key: "registry[\(j)].insecure",
            reason: "conflicts with registry[\(i)], which has the same location \(quote(registry.location))")
        }
        if other.blocked != registry.blocked {
          throw .invalid(
            file: file, key: "registry[\(j)].blocked",
            reason: "conflicts with registry[\(i)], which has the same location \(quote(registry.location))")
        }
      }
    }
  }

  private static func parseAliases(_ keys: inout TOMLKeys) throws(RegistriesConfigError) -> [String: String] {
    var aliases: [String: String] = [:]
    for name in keys.names {
      guard let value = try keys.string(name) else { continue }
      let key = name
      if !ImageReference.isShortName(name) || name.contains(":") || name.contains("@")
        || (try? ImageReference.parse(name)) == nil
      {
        throw keys.fail(key, "an alias name must be a short name without tag or digest, got \(quote(name))")
      }
      if value.isEmpty { continue }  // "" erases an alias
      if ImageReference.isShortName(value) || value.contains("@")
        || ImageReference.splitReference(value).tag != nil || (try? ImageReference.parse(value)) == nil
      {
        throw keys.fail(key, "the alias must be a fully qualified name without tag or digest, got \(quote(value))")
      }
      aliases[name] = value
    }
    return aliases
  }

  private static func trimTrailingSlashes(_ text: String) -> String {
    var result = Substring(text)
    while result.hasSuffix("/") { result = result.dropLast() }
    return String(result)
  }
}

/// The keys of one table of registries.conf (`StrictTOMLTable`, the strict reader
/// crisp.toml is read with too), failing with `RegistriesConfigError`.
private struct TOMLKeys {
  var keys: StrictTOMLTable

  /// The keys present, sorted.
  var names: [String] { keys.keys }

  func fail(_ key: String, _ reason: String) -> RegistriesConfigError { RegistriesConfigError(keys.fail(key, reason)) }

  private mutating func reading<T>(_ read: (inout StrictTOMLTable) throws(StrictTOMLError) -> T)
    throws(RegistriesConfigError) -> T
  {
    do {
      return try read(&keys)
    } catch {
      throw RegistriesConfigError(error)
    }
  }

  mutating func string(_ key: String) throws(RegistriesConfigError) -> String? {
    try reading { keys throws(StrictTOMLError) in try keys.string(key) }
  }

  mutating func bool(_ key: String) throws(RegistriesConfigError) -> Bool? {
    try reading { keys throws(StrictTOMLError) in try keys.bool(key) }
  }

  mutating func strings(_ key: String) throws(RegistriesConfigError) -> [String]? {
    try reading { keys throws(StrictTOMLError) in try keys.strings(key) }
  }

  mutating func table(_ key: String) throws(RegistriesConfigError) -> TOMLKeys? {
    try reading { keys throws(StrictTOMLError) in try keys.table(key) }.map { TOMLKeys(keys: $0) }
  }

  /// An array of tables (`[[key]]`), each named `key[index]`.
  mutating func tables(_ key: String) throws(RegistriesConfigError) -> [TOMLKeys]? {
    try reading { keys throws(StrictTOMLError) in try keys.tables(key) }?.map { TOMLKeys(keys: $0) }
  }

  /// Refuses the keys not read, with a specific reason for those in `reasons`.
  func finish(reasons: [String: String]) throws(RegistriesConfigError) {
    do {
      try keys.finish(reasons: reasons)
    } catch {
      throw RegistriesConfigError(error)
    }
  }
}

extension RegistriesConfigError {
  fileprivate init(_ error: StrictTOMLError) {
    switch error {
    case .syntax(let file, let line, let column, let reason):
      self = .syntax(file: file, line: line, column: column, reason: reason)
    case .invalid(let file, let key, let reason):
      self = .invalid(file: file, key: key, reason: reason)
    }
  }
}

/// Reads a small configuration file without Foundation, telling a missing file apart.
enum RegistryConfigFile {
  enum Outcome {
    case missing
    case failed(String)
    case contents([UInt8])
  }

  static let sizeLimit = 4 << 20

  static func contents(of path: String) -> Outcome {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
      return errno == ENOENT ? .missing : .failed(Files.errnoText())
    }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n < 0 {
        if errno == EINTR { continue }
        return .failed(Files.errnoText())
      }
      if n == 0 { return .contents(bytes) }
      bytes += buffer[0..<n]
      if bytes.count > sizeLimit { return .failed("larger than \(sizeLimit) bytes") }
    }
  }
}

private func quote(_ text: String) -> String { String(reflecting: text) }
