import CrispCore
import FoundationEssentials

/// An auth file that cannot be used, naming the file and, for a bad entry, its key.
/// Messages never contain a secret.
public enum AuthFileError: Error, Sendable, Equatable, CustomStringConvertible {
  /// The file exists but cannot be read.
  case unreadable(file: String, reason: String)
  /// The file is not JSON, or not a JSON object.
  case invalidJSON(file: String, reason: String)
  /// An entry of `auths` cannot be used; `key` is the entry's key as written.
  case invalidEntry(file: String, key: String, reason: String)

  public var description: String {
    switch self {
    case .unreadable(let file, let reason): "\(file): cannot read: \(reason)"
    case .invalidJSON(let file, let reason): "\(file): invalid JSON: \(reason)"
    case .invalidEntry(let file, let key, let reason): "\(file): auths entry \(String(reflecting: key)): \(reason)"
    }
  }

  public var crispError: CrispError { CrispError(.failedPrecondition, description) }
}

/// Credentials for one registry endpoint. `description` hides the secrets, so the value
/// can be logged.
public enum RegistryCredentials: Sendable, Equatable, CustomStringConvertible {
  /// HTTP basic authentication, or the username and password sent to a token endpoint.
  case basic(username: String, password: String)
  /// An OAuth2 refresh token for the registry's token endpoint (`identitytoken`).
  case identityToken(String)
  /// A bearer token sent to the registry as it is (`registrytoken`).
  case registryToken(String)

  public var description: String {
    switch self {
    case .basic(let username, _): "basic(username: \(String(reflecting: username)), password: <redacted>)"
    case .identityToken: "identityToken(<redacted>)"
    case .registryToken: "registryToken(<redacted>)"
    }
  }
}

/// Registry credentials in the format of Docker's `config.json` and containers-auth.json(5):
///
/// ```json
/// {"auths": {"registry.example.com": {"auth": "<base64 of user:password>"},
///            "quay.io/team/app":       {"username": "u", "password": "p"},
///            "ghcr.io":                {"identitytoken": "…"},
///            "https://index.docker.io/v1/": {"auth": "…"}}}
/// ```
///
/// A key is `host[:port]` or `host[:port]/namespace[/repo]`; the most specific key that
/// matches a repository wins (`quay.io/team/app`, then `quay.io/team`, then `quay.io`),
/// as containers-auth.json(5) says. Legacy keys that are URLs (`https://index.docker.io/v1/`,
/// `http://host:5000/…`) stand for their host only and are consulted after all the
/// others. `index.docker.io` and `registry-1.docker.io` are `docker.io`.
///
/// In an entry, `registrytoken` wins over `identitytoken`, which wins over `auth`, which
/// wins over `username`/`password`. An entry with none of them (Docker writes `{}` when
/// a credential helper holds the secret) is ignored. Other keys of the file
/// (`credsStore`, `credHelpers`, …) and of entries (`email`) are ignored.
public struct AuthFile: Sendable, Equatable {
  public static let defaultPath = "/etc/crisp/auth.json"

  /// One usable entry.
  public struct Entry: Sendable, Equatable {
    /// Normalised: `docker.io/library/busybox`, `localhost:5000`; the host alone for a legacy URL key.
    public var key: String
    /// The key was a URL (`https://index.docker.io/v1/`).
    public var isLegacy: Bool
    public var credentials: RegistryCredentials

    public init(key: String, isLegacy: Bool = false, credentials: RegistryCredentials) {
      self.key = key
      self.isLegacy = isLegacy
      self.credentials = credentials
    }
  }

  /// The usable entries, sorted by key (legacy entries after the others).
  public var entries: [Entry]

  public init(entries: [Entry] = []) { self.entries = entries }

  public var isEmpty: Bool { entries.isEmpty }

  /// Reads and parses `path`; a missing file has no credentials.
  public static func load(path: String = defaultPath) throws(AuthFileError) -> AuthFile {
    switch RegistryConfigFile.contents(of: path) {
    case .missing: return AuthFile()
    case .failed(let reason): throw .unreadable(file: path, reason: reason)
    case .contents(let bytes): return try parse(bytes, source: path)
    }
  }

  /// Parses JSON text; `source` names it in errors.
  public static func parse(_ text: String, source: String) throws(AuthFileError) -> AuthFile {
    try parse(Array(text.utf8), source: source)
  }

  /// Parses JSON bytes; `source` names it in errors. An empty (or all-blank) file has no
  /// credentials.
  public static func parse(_ bytes: [UInt8], source: String) throws(AuthFileError) -> AuthFile {
    if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) { return AuthFile() }
    let document: Document
    do {
      document = try JSONDecoder().decode(Document.self, from: Data(bytes))
    } catch let error as DecodingError {
      throw describe(error, file: source)
    } catch {
      throw .invalidJSON(file: source, reason: "\(error)")
    }

    var scoped: [String: (original: String, credentials: RegistryCredentials)] = [:]
    var legacy: [String: (original: String, credentials: RegistryCredentials)] = [:]
    for (key, entry) in (document.auths ?? [:]).sorted(by: { $0.key < $1.key }) {
      let (normalised, isLegacy) = try normaliseKey(key, file: source)
      guard let credentials = try credentials(of: entry, key: key, file: source) else { continue }
      // Two keys for one place (`docker.io` and `index.docker.io`, `https://h` and
      // `http://h`): the key written as it is normalised, or the https URL, wins; then
      // the first in sort order, so the choice does not depend on the JSON's order.
      func rank(_ original: String) -> Int {
        isLegacy ? (original.hasPrefix("https://") ? 0 : 1) : (original == normalised ? 0 : 1)
      }
      if isLegacy {
        if let existing = legacy[normalised], rank(existing.original) <= rank(key) { continue }
        legacy[normalised] = (key, credentials)
      } else {
        if let existing = scoped[normalised], rank(existing.original) <= rank(key) { continue }
        scoped[normalised] = (key, credentials)
      }
    }
    var entries = scoped.sorted { $0.key < $1.key }.map { Entry(key: $0.key, credentials: $0.value.credentials) }
    entries += legacy.sorted { $0.key < $1.key }.map {
      Entry(key: $0.key, isLegacy: true, credentials: $0.value.credentials)
    }
    return AuthFile(entries: entries)
  }

  /// The credentials for `repository` on `registry` (`docker.io`, `library/busybox`):
  /// the most specific matching key, then a legacy URL key for the host; nil when none.
  public func credentials(registry: String, repository: String) -> RegistryCredentials? {
    let host = Self.normaliseHost(Substring(registry))
    var candidate = repository.isEmpty ? host : host + "/" + repository
    while true {
      if let entry = entries.first(where: { !$0.isLegacy && $0.key == candidate }) { return entry.credentials }
      guard let slash = candidate.lastIndex(of: "/") else { break }
      candidate = String(candidate[..<slash])
    }
    return entries.first(where: { $0.isLegacy && $0.key == host })?.credentials
  }

  /// The credentials for `reference`'s registry and repository.
  public func credentials(for reference: ImageReference) -> RegistryCredentials? {
    credentials(registry: reference.registry, repository: reference.repository)
  }
}

// MARK: - Parsing

extension AuthFile {
  private struct Document: Decodable {
    var auths: [String: EntryJSON]?
  }

  private struct EntryJSON: Decodable {
    var auth: String?
    var username: String?
    var password: String?
    var identitytoken: String?
    var registrytoken: String?
  }

  private static func credentials(of entry: EntryJSON, key: String, file: String) throws(AuthFileError)
    -> RegistryCredentials?
  {
    func fail(_ reason: String) -> AuthFileError { .invalidEntry(file: file, key: key, reason: reason) }
    if let token = entry.registrytoken, !token.isEmpty { return .registryToken(token) }
    if let token = entry.identitytoken, !token.isEmpty { return .identityToken(token) }
    if let auth = entry.auth, !auth.isEmpty {
      guard let decoded = decodeBase64(auth) else { throw fail("the \"auth\" field is not valid base64") }
      guard let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else {
        throw fail("the \"auth\" field does not decode to \"username:password\" (no ':')")
      }
      let username = String(decoding: decoded[..<colon], as: UTF8.self)
      var password = decoded[(colon + 1)...]
      while password.last == 0 { password = password.dropLast() }  // as containers/image: NULs padded by some tools
      if username.isEmpty {
        if password.isEmpty { return nil }  // ":" — no credentials
        throw fail("the \"auth\" field has an empty username")
      }
      return .basic(username: username, password: String(decoding: password, as: UTF8.self))
    }
    switch (entry.username, entry.password) {
    case (nil, nil), ("", nil), (nil, ""), ("", ""): return nil
    case (let username?, let password?) where !username.isEmpty: return .basic(username: username, password: password)
    case (let username?, _) where !username.isEmpty: throw fail("\"username\" is set without \"password\"")
    default: throw fail("\"password\" is set without \"username\"")
    }
  }

  /// Standard base64, padding optional.
  private static func decodeBase64(_ text: String) -> [UInt8]? {
    var padded = text
    switch text.utf8.count % 4 {
    case 2: padded += "=="
    case 3: padded += "="
    case 1: return nil
    default: break
    }
    return Data(base64Encoded: padded).map { Array($0) }
  }

  /// `host[:port][/path]` with the host's Docker Hub aliases folded; a URL key becomes its host alone.
  private static func normaliseKey(_ key: String, file: String) throws(AuthFileError) -> (String, isLegacy: Bool) {
    func fail(_ reason: String) -> AuthFileError { .invalidEntry(file: file, key: key, reason: reason) }
    if key.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7f }) { throw fail("the key contains whitespace") }
    var rest = Substring(key)
    var isLegacy = false
    for scheme in ["https://", "http://"] where rest.hasPrefix(scheme) {
      rest = rest.dropFirst(scheme.count)
      isLegacy = true
    }
    while rest.hasSuffix("/") { rest = rest.dropLast() }
    let components = rest.split(separator: "/", omittingEmptySubsequences: false)
    guard let host = components.first, !host.isEmpty else { throw fail("the key names no registry") }
    if isLegacy { return (normaliseHost(host), true) }
    if key.contains("@") { throw fail("a key must not contain a digest") }
    if components.dropFirst().contains(where: \.isEmpty) { throw fail("the key has an empty path component") }
    if components.count > 1, components.last!.contains(":") { throw fail("a key must not contain a tag") }
    return (([normaliseHost(host)] + components.dropFirst().map(String.init)).joined(separator: "/"), false)
  }

  static func normaliseHost(_ host: Substring) -> String {
    switch host {
    case "index.docker.io", "registry-1.docker.io": ImageReference.dockerHub
    default: String(host)
    }
  }

  /// Names the entry (and field) a type mismatch is in, never a value.
  private static func describe(_ error: DecodingError, file: String) -> AuthFileError {
    let path: [any CodingKey]
    let detail: String
    switch error {
    case .typeMismatch(let type, let context):
      path = context.codingPath
      detail = "must be \(type == String.self ? "a string" : "an object")"
    case .valueNotFound(_, let context):
      path = context.codingPath
      detail = "must not be null"
    case .keyNotFound(let key, let context):
      path = context.codingPath + [key]
      detail = "is missing"
    case .dataCorrupted(let context):
      return .invalidJSON(file: file, reason: context.underlyingError.map { "\($0)" } ?? context.debugDescription)
    @unknown default:
      return .invalidJSON(file: file, reason: "\(error)")
    }
    let names = path.map(\.stringValue)
    if names.count >= 2, names[0] == "auths" {
      let field = names.count >= 3 ? "the \"\(names[2])\" field " : "the entry "
      return .invalidEntry(file: file, key: names[1], reason: field + detail)
    }
    if names.isEmpty { return .invalidJSON(file: file, reason: "the document must be a JSON object") }
    return .invalidJSON(file: file, reason: "\"\(names.joined(separator: "."))\" " + detail)
  }
}
