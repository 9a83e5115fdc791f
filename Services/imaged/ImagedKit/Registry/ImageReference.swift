import CrispCore

/// An image reference that cannot be used, naming the reference as it was written.
public enum ReferenceError: Error, Sendable, Equatable, CustomStringConvertible {
  /// The reference is the empty string.
  case empty
  /// The text does not follow the reference grammar (whitespace, bad characters, a bad
  /// registry host or path component, …); `reason` says what is wrong.
  case invalidFormat(reference: String, reason: String)
  /// The repository path has upper-case letters (`docker.io/library/BusyBox`).
  case uppercaseRepository(reference: String)
  /// The tag is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
  case invalidTag(reference: String, reason: String)
  /// The digest is not `algorithm:hex` for a supported algorithm.
  case invalidDigest(reference: String, reason: String)
  /// The name (registry and repository) is longer than 255 characters.
  case nameTooLong(reference: String)

  /// The reference as it was written.
  public var reference: String {
    switch self {
    case .empty: ""
    case .invalidFormat(let reference, _), .uppercaseRepository(let reference), .invalidTag(let reference, _),
      .invalidDigest(let reference, _), .nameTooLong(let reference):
      reference
    }
  }

  public var description: String {
    let quoted = quote(reference)
    switch self {
    case .empty: return "invalid image reference \"\": the reference is empty"
    case .invalidFormat(_, let reason): return "invalid image reference \(quoted): \(reason)"
    case .uppercaseRepository:
      return "invalid image reference \(quoted): the repository name must be lowercase"
    case .invalidTag(_, let reason): return "invalid image reference \(quoted): \(reason)"
    case .invalidDigest(_, let reason): return "invalid image reference \(quoted): \(reason)"
    case .nameTooLong:
      return "invalid image reference \(quoted): the name is longer than \(ImageReference.maxNameLength) characters"
    }
  }

  /// The CRI-facing error: the caller named a bad image.
  public var crispError: CrispError { CrispError(.invalidArgument, description) }
}

/// A fully qualified image reference: registry, repository, and a tag, a digest or both.
///
/// Parsing follows the grammar of distribution/reference and Docker's normalisation
/// (`ParseNormalizedNamed`): a name without a registry is on Docker Hub (`docker.io`),
/// a one-component Docker Hub name gets `library/`, `index.docker.io` is `docker.io`,
/// and a reference without tag or digest gets the tag `latest`.
public struct ImageReference: Sendable, Hashable, CustomStringConvertible {
  /// Docker Hub, the registry of names that name none.
  public static let dockerHub = "docker.io"
  /// The longest name (registry and repository) distribution accepts.
  public static let maxNameLength = 255
  /// The longest tag.
  public static let maxTagLength = 128

  /// `docker.io`, `registry.k8s.io`, `127.0.0.1:5000`, `localhost`, `[::1]:5000`.
  public var registry: String
  /// `library/busybox`, `pause`.
  public var repository: String
  /// Nil when only a digest was given.
  public var tag: String?
  /// `sha256:<64 lowercase hex>`.
  public var digest: String?

  /// Builds a reference from parts without checking them; `parse` is the checked way.
  public init(registry: String, repository: String, tag: String? = nil, digest: String? = nil) {
    self.registry = registry
    self.repository = repository
    self.tag = tag
    self.digest = digest
  }

  /// `docker.io/library/busybox`.
  public var name: String { registry + "/" + repository }

  /// `docker.io/library/busybox:latest`, `…@sha256:…` or `…:tag@sha256:…`.
  public var description: String {
    var text = name
    if let tag { text += ":" + tag }
    if let digest { text += "@" + digest }
    return text
  }

  /// `docker.io/library/busybox:latest` when the reference has a tag.
  public var tagged: String? { tag.map { name + ":" + $0 } }

  /// `docker.io/library/busybox@sha256:…` when the reference has a digest (a CRI repo digest).
  public var digested: String? { digest.map { name + "@" + $0 } }

  /// The same name with `digest` set; the tag is kept. `digest` is not checked
  /// (see `isValidDigest`).
  public func withDigest(_ digest: String) -> ImageReference {
    var copy = self
    copy.digest = digest
    return copy
  }

  /// Parses a fully qualified or Docker-normalisable reference:
  /// `busybox` → `docker.io/library/busybox:latest`, `user/app` → `docker.io/user/app:latest`,
  /// `docker.io/busybox` → `docker.io/library/busybox:latest`, `index.docker.io/x` → `docker.io/library/x:latest`,
  /// `localhost:5000/x` → `localhost:5000/x:latest`, `name@sha256:…` (no tag), `name:tag@sha256:…` (both kept).
  ///
  /// The first path component names the registry when it contains `.` or `:`, is
  /// `localhost`, or has upper-case letters (Docker's rule); otherwise, and always when
  /// the text has no `/`, the image is on Docker Hub (so `localhost:5000` alone is
  /// `docker.io/library/localhost:5000`, as in Docker).
  public static func parse(_ text: String) throws(ReferenceError) -> ImageReference {
    let bytes = Array(text.utf8)
    guard !bytes.isEmpty else { throw .empty }
    if bytes.contains(where: { $0 == 0x20 || ($0 >= 0x09 && $0 <= 0x0d) }) {
      throw .invalidFormat(reference: text, reason: "it contains whitespace")
    }
    if bytes.contains(where: { $0 < 0x20 || $0 >= 0x7f }) {
      throw .invalidFormat(reference: text, reason: "it contains a character that is not printable ASCII")
    }
    if bytes.count == 64 && bytes.allSatisfy(isLowerHex) {
      throw .invalidFormat(
        reference: text, reason: "a 64-character hexadecimal string is an image ID, not a reference")
    }

    let parts = splitReference(text)
    if let tag = parts.tag, let reason = tagProblem(tag) {
      throw .invalidTag(reference: text, reason: reason)
    }
    if let digest = parts.digest, let reason = digestProblem(digest) {
      throw .invalidDigest(reference: text, reason: reason)
    }

    var registry: String
    var repository: String
    if let slash = parts.name.firstIndex(of: "/"), namesRegistry(parts.name[..<slash]) {
      registry = String(parts.name[..<slash])
      repository = String(parts.name[parts.name.index(after: slash)...])
    } else {
      registry = dockerHub
      repository = String(parts.name)
    }
    if registry == "index.docker.io" { registry = dockerHub }
    if let reason = hostProblem(Substring(registry)) {
      throw .invalidFormat(reference: text, reason: reason)
    }
    if repository.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) {
      throw .uppercaseRepository(reference: text)
    }
    if let reason = repositoryProblem(Substring(repository)) {
      throw .invalidFormat(reference: text, reason: reason)
    }
    if registry == dockerHub && !repository.contains("/") { repository = "library/" + repository }
    guard registry.utf8.count + 1 + repository.utf8.count <= maxNameLength else {
      throw .nameTooLong(reference: text)
    }
    let tag = parts.tag.map(String.init) ?? (parts.digest == nil ? "latest" : nil)
    return ImageReference(registry: registry, repository: repository, tag: tag, digest: parts.digest.map(String.init))
  }

  /// True when the text names no registry, so that registries.conf's
  /// `unqualified-search-registries` apply: it has no `/`, or its first component has no
  /// `.` or `:`, is not `localhost` and is all lower case. Says nothing about validity.
  public static func isShortName(_ text: String) -> Bool {
    let name = splitReference(text).name
    guard let slash = name.firstIndex(of: "/") else { return true }
    return !namesRegistry(name[..<slash])
  }

  /// Whether `digest` is `sha256:<64>`, `sha384:<96>` or `sha512:<128>` lowercase hex.
  public static func isValidDigest(_ digest: String) -> Bool { digestProblem(Substring(digest)) == nil }

  /// Whether a registries.conf `prefix` (without wildcard) matches this reference, as
  /// containers-registries.conf(5) says: the reference (`description`) starts with it and
  /// the match ends at a component boundary. `host[:port]` matches exactly that registry
  /// (`example.com` does not match `example.com:5000`), `host/ns` matches `host/ns` and
  /// `host/ns/…` but not `host/nsx`, `host/ns/repo:tag` or `…@digest` match that tag or digest.
  public func matches(prefix: String) -> Bool {
    let text = description
    guard text.hasPrefix(prefix) else { return false }
    let utf8 = Array(text.utf8)
    let length = prefix.utf8.count
    let nameLength = name.utf8.count
    if length == utf8.count || length == nameLength { return true }
    if length < nameLength { return utf8[length] == UInt8(ascii: "/") }
    // Inside the tag: only the whole `name:tag` followed by `@digest` matches.
    if let tag, digest != nil { return length == nameLength + 1 + tag.utf8.count }
    return false
  }

  /// The reference with `prefix` (which must match, see `matches(prefix:)`) replaced by
  /// `location`, parsed again (so `docker.io` locations get Docker's normalisation):
  /// `registry.k8s.io/pause:3.10` with prefix `registry.k8s.io` and location
  /// `127.0.0.1:5000` is `127.0.0.1:5000/pause:3.10`. Throws when the prefix does not
  /// match or the result is not a valid reference.
  public func replacingRegistryPrefix(_ prefix: String, with location: String) throws(ReferenceError)
    -> ImageReference
  {
    guard matches(prefix: prefix) else {
      throw .invalidFormat(reference: description, reason: "it does not start with the prefix \(quote(prefix))")
    }
    if prefix == location { return self }
    let rest = description.dropFirst(prefix.count)
    let rewritten = location + rest
    // A registry without a repository ("quay.io" + ":latest") would otherwise parse as
    // a Docker Hub short name.
    guard let slash = rewritten.firstIndex(of: "/"), Self.namesRegistry(rewritten[..<slash]) else {
      throw .invalidFormat(
        reference: rewritten,
        reason: "rewriting \(quote(description)) with location \(quote(location)) leaves no registry and repository")
    }
    return try ImageReference.parse(rewritten)
  }
}

// MARK: - Grammar (distribution/reference)

extension ImageReference {
  /// Splits `name[:tag][@digest]`: the digest follows the first `@`, the tag the last `:`
  /// that comes after the last `/`.
  static func splitReference(_ text: String) -> (name: Substring, tag: Substring?, digest: Substring?) {
    var name = Substring(text)
    var digest: Substring?
    if let at = name.firstIndex(of: "@") {
      digest = name[name.index(after: at)...]
      name = name[..<at]
    }
    var tag: Substring?
    if let colon = name.lastIndex(of: ":"), !name[colon...].contains("/") {
      tag = name[name.index(after: colon)...]
      name = name[..<colon]
    }
    return (name, tag, digest)
  }

  /// Docker's rule for the first path component: it names a registry when it contains
  /// `.` or `:`, is `localhost`, or is not all lower case.
  static func namesRegistry(_ component: Substring) -> Bool {
    component.contains(".") || component.contains(":") || component == "localhost"
      || component.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") })
  }

  /// `host[:port]` where host is a domain name, an IPv4 address or `[IPv6]`.
  static func hostProblem(_ domain: Substring) -> String? {
    guard !domain.isEmpty else { return "the registry host is empty" }
    var host = domain
    var port: Substring?
    if domain.hasPrefix("[") {
      guard let close = domain.firstIndex(of: "]") else {
        return "the registry host \(quote(domain)) has no closing ']'"
      }
      let inner = domain[domain.index(after: domain.startIndex)..<close]
      let after = domain[domain.index(after: close)...]
      guard !inner.isEmpty, inner.contains(":"),
        inner.utf8.allSatisfy({ isHex($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") })
      else { return "the registry host \(quote(domain)) is not a valid [IPv6] address" }
      if !after.isEmpty {
        guard after.hasPrefix(":") else { return "the registry host \(quote(domain)) is not host[:port]" }
        port = after.dropFirst()
      }
      host = ""
    } else if let colon = domain.firstIndex(of: ":") {
      host = domain[..<colon]
      port = domain[domain.index(after: colon)...]
    }
    if let port, port.isEmpty || !port.utf8.allSatisfy(isDigit) {
      return "the registry \(quote(domain)) has an invalid port \(quote(port))"
    }
    if !domain.hasPrefix("[") {
      let components = host.split(separator: ".", omittingEmptySubsequences: false)
      for component in components {
        let b = Array(component.utf8)
        guard let first = b.first, let last = b.last, isAlnum(first), isAlnum(last),
          b.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") })
        else { return "the registry host \(quote(domain)) is not a valid host name" }
      }
    }
    return nil
  }

  /// `component(/component)*`, each `[a-z0-9]+` joined by `.`, `_`, `__` or `-+`.
  static func repositoryProblem(_ repository: Substring) -> String? {
    guard !repository.isEmpty else { return "the repository name is empty" }
    for component in repository.split(separator: "/", omittingEmptySubsequences: false) {
      guard isPathComponent(Array(component.utf8)) else {
        return component.isEmpty
          ? "the repository \(quote(repository)) has an empty path component"
          : "the repository path component \(quote(component)) is invalid "
            + "(lowercase letters and digits, joined by '.', '_', '__' or '-')"
      }
    }
    return nil
  }

  static func isPathComponent(_ b: [UInt8]) -> Bool {
    func isLowerAlnum(_ c: UInt8) -> Bool { isDigit(c) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) }
    var i = 0
    while true {
      // An alphanumeric run…
      let start = i
      while i < b.count && isLowerAlnum(b[i]) { i += 1 }
      if i == start { return false }
      if i == b.count { return true }
      // …then a separator, which must be followed by another run.
      let separatorStart = i
      while i < b.count && !isLowerAlnum(b[i]) { i += 1 }
      let separator = b[separatorStart..<i]
      let dash = UInt8(ascii: "-")
      let valid =
        separator.elementsEqual([UInt8(ascii: ".")]) || separator.elementsEqual([UInt8(ascii: "_")])
        || separator.elementsEqual([UInt8(ascii: "_"), UInt8(ascii: "_")]) || separator.allSatisfy({ $0 == dash })
      if !valid { return false }
    }
  }

  /// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
  static func tagProblem(_ tag: Substring) -> String? {
    let b = Array(tag.utf8)
    guard let first = b.first else { return "the tag is empty" }
    guard b.count <= maxTagLength else {
      return "the tag is \(b.count) characters long, longer than \(maxTagLength)"
    }
    let word: (UInt8) -> Bool = { isAlnum($0) || $0 == UInt8(ascii: "_") }
    guard word(first), b.allSatisfy({ word($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }) else {
      return "the tag \(quote(tag)) is invalid (letters, digits, '_', '.' and '-', not starting with '.' or '-')"
    }
    return nil
  }

  /// `algorithm:hex` where the algorithm is sha256, sha384 or sha512 and the hex is the
  /// lowercase encoding of its output (as go-digest validates it).
  static func digestProblem(_ digest: Substring) -> String? {
    guard let colon = digest.firstIndex(of: ":") else {
      return "the digest \(quote(digest)) is not algorithm:hex"
    }
    let algorithm = digest[..<colon]
    let hex = Array(digest[digest.index(after: colon)...].utf8)
    let lengths: [Substring: Int] = ["sha256": 64, "sha384": 96, "sha512": 128]
    guard let length = lengths[algorithm] else {
      return algorithm.isEmpty
        ? "the digest \(quote(digest)) has no algorithm"
        : "the digest algorithm \(quote(algorithm)) is not supported (sha256, sha384, sha512)"
    }
    guard hex.count == length, hex.allSatisfy(isLowerHex) else {
      return "the \(algorithm) digest \(quote(digest)) must have \(length) lowercase hexadecimal digits"
    }
    return nil
  }

  /// Checks a registries.conf `prefix` or `location` (not a wildcard):
  /// `host[:port]`, `host[:port]/path…`, optionally ending in `:tag` and/or `@digest`.
  /// No Docker normalisation applies: the first component is always the registry.
  static func registryPathProblem(_ text: String) -> String? {
    if text.hasPrefix("http://") || text.hasPrefix("https://") {
      return "\(quote(text)) must not have a URI scheme (http:// or https://); set insecure = true for plain HTTP"
    }
    guard let slash = text.firstIndex(of: "/") else {
      if text.contains("@") { return "\(quote(text)) is not host[:port] or host[:port]/path" }
      return hostProblem(Substring(text)).map { $0 + " (expected host[:port] or host[:port]/path)" }
    }
    let host = text[..<slash]
    if let problem = hostProblem(host) { return problem }
    guard namesRegistry(host) else {
      return "\(quote(text)) does not start with a registry host (one with '.' or ':', or localhost)"
    }
    let parts = splitReference(String(text[text.index(after: slash)...]))
    if let problem = repositoryProblem(parts.name) { return problem }
    if parts.name.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) {
      return "the repository path of \(quote(text)) must be lowercase"
    }
    if let tag = parts.tag, let problem = tagProblem(tag) { return problem }
    if let digest = parts.digest, let problem = digestProblem(digest) { return problem }
    return nil
  }
}

private func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
private func isAlnum(_ c: UInt8) -> Bool {
  isDigit(c) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
}
private func isHex(_ c: UInt8) -> Bool {
  isDigit(c) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "F"))
}
private func isLowerHex(_ c: UInt8) -> Bool { isDigit(c) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f")) }

/// A string in double quotes with control characters escaped, for error messages.
private func quote<S: StringProtocol>(_ text: S) -> String { String(reflecting: String(text)) }
