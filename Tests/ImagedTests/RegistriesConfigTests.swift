import CrispCore
import CrispTestSupport
import Foundation
import Testing

@testable import ImagedKit

private let hex64 = String(repeating: "cd", count: 32)

private func config(_ toml: String) throws -> RegistriesConfig {
  try RegistriesConfig.parse(toml, source: "test.conf")
}

private func ref(_ text: String) throws -> ImageReference { try ImageReference.parse(text) }

/// The pull sources as "reference [mirror] [insecure]" strings, for compact expectations.
private func sources(_ config: RegistriesConfig, _ text: String) throws -> [String] {
  try config.pullSources(for: ref(text)).map { source in
    source.reference.description + (source.isMirror ? " mirror" : "") + (source.insecure ? " insecure" : "")
  }
}

/// The repository root, found from this file's path (Tests/ImagedTests/<file>).
private func repositoryRoot(_ file: String = #filePath) -> String {
  var components = file.split(separator: "/", omittingEmptySubsequences: false)
  components.removeLast(3)
  return components.joined(separator: "/")
}

@Suite struct RegistriesConfigTests {
  // MARK: Loading

  @Test func missingFileIsTheDefault() throws {
    let dir = try makeTemporaryDirectory(prefix: "regconf")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let loaded = try RegistriesConfig.load(path: dir + "/registries.conf")
    #expect(loaded == RegistriesConfig())
    #expect(loaded.unqualifiedSearchRegistries.isEmpty)
    #expect(loaded.registries.isEmpty)
    #expect(try loaded.qualify("busybox") == [ref("docker.io/library/busybox:latest")])
  }

  @Test func loadsAFile() throws {
    let dir = try makeTemporaryDirectory(prefix: "regconf")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/registries.conf"
    try "unqualified-search-registries = [\"quay.io\"]\n".write(toFile: path, atomically: true, encoding: .utf8)
    #expect(try RegistriesConfig.load(path: path).unqualifiedSearchRegistries == ["quay.io"])

    try "unqualified-search-registries = [\"quay.io\"\n".write(toFile: path, atomically: true, encoding: .utf8)
    #expect {
      try RegistriesConfig.load(path: path)
    } throws: { error in
      guard case .syntax(let file, let line, _, _) = error as? RegistriesConfigError else { return false }
      return file == path && line >= 1 && "\(error)".hasPrefix(path + ": line ")
    }

    // A directory cannot be read as a file.
    #expect {
      try RegistriesConfig.load(path: dir)
    } throws: { error in
      guard case .unreadable(let file, _) = error as? RegistriesConfigError else { return false }
      return file == dir && "\(error)".hasPrefix(dir + ": cannot read")
    }
  }

  @Test func shippedFileParses() throws {
    let path = repositoryRoot() + "/deploy/registries.conf"
    let shipped = try RegistriesConfig.load(path: path)
    #expect(shipped.unqualifiedSearchRegistries == ["docker.io"])
    #expect(shipped.registries.isEmpty)
    #expect(try shipped.qualify("busybox") == [ref("docker.io/library/busybox:latest")])
    #expect(try shipped.qualify("user/app:v1") == [ref("docker.io/user/app:v1")])

    // The commented examples are valid too, and do what they say.
    let text = readWholeFile(path)
    #expect(!text.isEmpty)
    let examples = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
      guard line.hasPrefix("# ") else { return line }
      let body = line.dropFirst(2)
      if body.hasPrefix("[[registry") { return body }
      if let space = body.firstIndex(of: " "), body[space...].hasPrefix(" = "),
        body[..<space].allSatisfy({ $0.isLowercase || $0 == "-" })
      {
        return body
      }
      return line
    }.joined(separator: "\n")
    let uncommented = try RegistriesConfig.parse(examples, source: path)
    #expect(uncommented.registries.count == 4)
    #expect(
      try sources(uncommented, "busybox") == [
        "mirror.example.com:5000/library/busybox:latest mirror", "docker.io/library/busybox:latest",
      ])
    #expect(try sources(uncommented, "registry.local:5000/app") == ["registry.local:5000/app:latest insecure"])
    #expect(try sources(uncommented, "registry.k8s.io/pause:3.10") == ["127.0.0.1:5000/pause:3.10 insecure"])
    #expect(throws: RegistriesConfigError.self) { try sources(uncommented, "untrusted.example.com/x") }
  }

  @Test func compatibilityKeysAreAccepted() throws {
    #expect(try config("") == RegistriesConfig())
    for mode in ["enforcing", "permissive", "disabled", ""] {
      #expect(try config("short-name-mode = \"\(mode)\"") == RegistriesConfig())
    }
    #expect(try config("credential-helpers = [\"containers-auth.json\"]") == RegistriesConfig())
    #expect(try config("credential-helpers = []") == RegistriesConfig())
  }

  // MARK: Short names

  @Test func shortNamesExpandOverTheSearchRegistries() throws {
    let conf = try config(
      """
      unqualified-search-registries = ["quay.io", "docker.io", "localhost:5000/", "quay.io"]
      short-name-mode = "enforcing"
      """)
    #expect(conf.unqualifiedSearchRegistries == ["quay.io", "docker.io", "localhost:5000"])
    #expect(
      try conf.qualify("busybox") == [
        ref("quay.io/busybox:latest"), ref("docker.io/library/busybox:latest"), ref("localhost:5000/busybox:latest"),
      ])
    #expect(
      try conf.qualify("user/app:v1") == [
        ref("quay.io/user/app:v1"), ref("docker.io/user/app:v1"), ref("localhost:5000/user/app:v1"),
      ])
    #expect(
      try conf.qualify("busybox:1@sha256:\(hex64)").map(\.description) == [
        "quay.io/busybox:1@sha256:\(hex64)", "docker.io/library/busybox:1@sha256:\(hex64)",
        "localhost:5000/busybox:1@sha256:\(hex64)",
      ])
    // Fully qualified names are themselves, normalised.
    #expect(try conf.qualify("docker.io/busybox") == [ref("docker.io/library/busybox:latest")])
    #expect(try conf.qualify("index.docker.io/busybox") == [ref("docker.io/library/busybox:latest")])
    #expect(try conf.qualify("localhost/app") == [ref("localhost/app:latest")])
    #expect(try conf.qualify("registry.k8s.io/pause:3.10") == [ref("registry.k8s.io/pause:3.10")])
    // A bad name is refused by name.
    #expect(throws: ReferenceError.uppercaseRepository(reference: "BusyBox")) { try conf.qualify("BusyBox") }
    #expect(throws: ReferenceError.empty) { try conf.qualify("") }
  }

  @Test func emptySearchListMeansDockerHub() throws {
    let conf = try config("unqualified-search-registries = []")
    #expect(try conf.qualify("busybox:1.36") == [ref("docker.io/library/busybox:1.36")])
    #expect(try conf.qualify("user/app") == [ref("docker.io/user/app:latest")])
  }

  @Test func aliases() throws {
    let conf = try config(
      """
      unqualified-search-registries = ["quay.io"]
      [aliases]
      busybox = "docker.io/library/busybox"
      "ubi8/ubi" = "registry.access.redhat.com/ubi8/ubi"
      erased = ""
      """)
    #expect(
      conf.aliases == [
        "busybox": "docker.io/library/busybox", "ubi8/ubi": "registry.access.redhat.com/ubi8/ubi",
      ])
    #expect(try conf.qualify("busybox") == [ref("docker.io/library/busybox:latest")])
    #expect(try conf.qualify("busybox:1.36") == [ref("docker.io/library/busybox:1.36")])
    #expect(
      try conf.qualify("ubi8/ubi@sha256:\(hex64)") == [ref("registry.access.redhat.com/ubi8/ubi@sha256:\(hex64)")])
    #expect(try conf.qualify("erased") == [ref("quay.io/erased:latest")])
    #expect(try conf.qualify("alpine") == [ref("quay.io/alpine:latest")])
  }

  // MARK: Matching

  @Test func longestPrefixWins() throws {
    let conf = try config(
      """
      [[registry]]
      location = "example.com"
      [[registry]]
      prefix = "example.com/foo/bar"
      location = "bar.internal/x"
      [[registry]]
      prefix = "example.com/foo"
      location = "foo.internal"
      """)
    #expect(try conf.registry(for: ref("example.com/foo/bar/baz:1"))?.location == "bar.internal/x")
    #expect(try conf.registry(for: ref("example.com/foo/bar"))?.location == "bar.internal/x")
    #expect(try conf.registry(for: ref("example.com/foo/barx"))?.location == "foo.internal")
    #expect(try conf.registry(for: ref("example.com/foo/x"))?.location == "foo.internal")
    #expect(try conf.registry(for: ref("example.com/foobar"))?.location == "example.com")
    #expect(try conf.registry(for: ref("example.com/x"))?.location == "example.com")
    #expect(try conf.registry(for: ref("example.com:5000/foo")) == nil)
    #expect(try conf.registry(for: ref("other.com/foo")) == nil)

    #expect(try sources(conf, "example.com/foo/bar/baz:1") == ["bar.internal/x/baz:1"])
    #expect(try sources(conf, "example.com/foo/bar") == ["bar.internal/x:latest"])
    #expect(try sources(conf, "example.com/foo/x@sha256:\(hex64)") == ["foo.internal/x@sha256:\(hex64)"])
    #expect(try sources(conf, "example.com/foobar") == ["example.com/foobar:latest"])
    #expect(try sources(conf, "other.com/foo") == ["other.com/foo:latest"])
  }

  @Test func tagPrefix() throws {
    let conf = try config(
      """
      [[registry]]
      prefix = "quay.io/app:v1"
      location = "pinned.internal/app:v1-patched"
      """)
    #expect(try sources(conf, "quay.io/app:v1") == ["pinned.internal/app:v1-patched"])
    #expect(try sources(conf, "quay.io/app:v2") == ["quay.io/app:v2"])
  }

  @Test func wildcardPrefixes() throws {
    let conf = try config(
      """
      [[registry]]
      prefix = "*.example.com"
      insecure = true
      [[registry.mirror]]
      location = "mirror.local/cache"
      [[registry]]
      prefix = "*.b.example.com"
      blocked = true
      [[registry]]
      location = "exact.example.com"
      """)
    #expect(conf.registries[0].isWildcard)
    #expect(conf.registries[0].location == "")
    #expect(try conf.registry(for: ref("a.example.com/x"))?.prefix == "*.example.com")
    #expect(try conf.registry(for: ref("a.example.com:5000/x"))?.prefix == "*.example.com")
    #expect(try conf.registry(for: ref("x.b.example.com/y"))?.prefix == "*.b.example.com")
    #expect(try conf.registry(for: ref("b.example.com/y"))?.prefix == "*.example.com")
    #expect(try conf.registry(for: ref("exact.example.com/y"))?.prefix == "exact.example.com")
    #expect(try conf.registry(for: ref("example.com/x")) == nil)
    #expect(try conf.registry(for: ref("badexample.com/x")) == nil)

    // The origin is used as it is; a mirror replaces the registry.
    #expect(
      try sources(conf, "a.example.com/team/app:1") == [
        "mirror.local/cache/team/app:1 mirror", "a.example.com/team/app:1 insecure",
      ])
    #expect(throws: RegistriesConfigError.blocked(try ref("x.b.example.com/y"))) {
      try conf.pullSources(for: ref("x.b.example.com/y"))
    }
  }

  // MARK: Rewriting and mirrors

  @Test func locationRewritingAndMirrors() throws {
    let conf = try config(
      """
      [[registry]]
      prefix = "registry.k8s.io"
      location = "registry.k8s.io"
      [[registry.mirror]]
      location = "127.0.0.1:5000"
      insecure = true

      [[registry]]
      prefix = "docker.io"
      location = "mirror.gcr.io"

      [[registry]]
      prefix = "docker.io/library/alpine"
      location = "quay.io/mirrors/alpine"

      [[registry]]
      prefix = "example.com/foo"
      location = "internal-registry-for-example.com/bar/"
      [[registry.mirror]]
      location = "example-mirror-0.local/mirror-for-foo"
      [[registry.mirror]]
      location = "example-mirror-1.local/mirrors/foo"
      insecure = true
      """)
    #expect(conf.registries[3].location == "internal-registry-for-example.com/bar")
    #expect(
      try sources(conf, "registry.k8s.io/pause:3.10") == [
        "127.0.0.1:5000/pause:3.10 mirror insecure", "registry.k8s.io/pause:3.10",
      ])
    #expect(try sources(conf, "busybox:1.36") == ["mirror.gcr.io/library/busybox:1.36"])
    #expect(try sources(conf, "user/app") == ["mirror.gcr.io/user/app:latest"])
    #expect(try sources(conf, "alpine:3.20") == ["quay.io/mirrors/alpine:3.20"])
    #expect(
      try sources(conf, "example.com/foo/image:latest") == [
        "example-mirror-0.local/mirror-for-foo/image:latest mirror",
        "example-mirror-1.local/mirrors/foo/image:latest mirror insecure",
        "internal-registry-for-example.com/bar/image:latest",
      ])

    // The reference asked for is unchanged: callers name the image by it.
    let pause = try ref("registry.k8s.io/pause:3.10")
    #expect(try conf.pullSources(for: pause).allSatisfy { $0.reference.repository == "pause" })
  }

  @Test func rewritingIntoDockerHubNormalises() throws {
    let conf = try config(
      """
      [[registry]]
      prefix = "internal.example.com"
      location = "docker.io"
      """)
    #expect(try sources(conf, "internal.example.com/busybox:1") == ["docker.io/library/busybox:1"])
  }

  @Test func rewritingThatLeavesNoRepositoryFails() throws {
    let conf = try config(
      """
      [[registry]]
      prefix = "quay.io/app"
      location = "other.io"
      """)
    #expect(try sources(conf, "quay.io/app/x:1") == ["other.io/x:1"])
    do {
      _ = try sources(conf, "quay.io/app:1")
      Issue.record("rewrote quay.io/app:1 to other.io:1")
    } catch {
      guard case .rewriteFailed(let reference, let location, _) = error as? RegistriesConfigError else {
        Issue.record("wrong error \(error)")
        return
      }
      #expect(reference == (try ref("quay.io/app:1")))
      #expect(location == "other.io")
      #expect("\(error)".contains("\"quay.io/app:1\""))
    }
  }

  @Test func pullFromMirror() throws {
    let conf = try config(
      """
      [[registry]]
      location = "quay.io"
      [[registry.mirror]]
      location = "all.local"
      pull-from-mirror = "all"
      [[registry.mirror]]
      location = "digest.local"
      pull-from-mirror = "digest-only"
      [[registry.mirror]]
      location = "tag.local"
      pull-from-mirror = "tag-only"
      [[registry.mirror]]
      location = "default.local"
      """)
    #expect(conf.registries[0].mirrors.map(\.pullFromMirror) == [.all, .digestOnly, .tagOnly, .all])
    #expect(
      try sources(conf, "quay.io/app:1") == [
        "all.local/app:1 mirror", "tag.local/app:1 mirror", "default.local/app:1 mirror", "quay.io/app:1",
      ])
    #expect(
      try sources(conf, "quay.io/app@sha256:\(hex64)") == [
        "all.local/app@sha256:\(hex64) mirror", "digest.local/app@sha256:\(hex64) mirror",
        "default.local/app@sha256:\(hex64) mirror", "quay.io/app@sha256:\(hex64)",
      ])
    // A tag and a digest: a pull by digest.
    #expect(
      try sources(conf, "quay.io/app:1@sha256:\(hex64)").map { $0.split(separator: "/")[0] } == [
        "all.local", "digest.local", "default.local", "quay.io",
      ])
  }

  @Test func mirrorByDigestOnly() throws {
    let conf = try config(
      """
      [[registry]]
      location = "quay.io"
      mirror-by-digest-only = true
      [[registry.mirror]]
      location = "m1.local"
      [[registry.mirror]]
      location = "m2.local"
      """)
    #expect(try sources(conf, "quay.io/app:1") == ["quay.io/app:1"])
    #expect(
      try sources(conf, "quay.io/app@sha256:\(hex64)") == [
        "m1.local/app@sha256:\(hex64) mirror", "m2.local/app@sha256:\(hex64) mirror", "quay.io/app@sha256:\(hex64)",
      ])
  }

  @Test func blocked() throws {
    let conf = try config(
      """
      [[registry]]
      location = "example.com"
      blocked = true
      [[registry]]
      location = "example.com/allowed"
      """)
    let reference = try ref("example.com/app:1")
    #expect(throws: RegistriesConfigError.blocked(reference)) { try conf.pullSources(for: reference) }
    let error = RegistriesConfigError.blocked(reference)
    #expect(error.description.contains("\"example.com/app:1\""))
    #expect(error.description.contains("blocked"))
    #expect(error.crispError.code == .permissionDenied)
    // A more specific table that is not blocked wins.
    #expect(try sources(conf, "example.com/allowed/app") == ["example.com/allowed/app:latest"])
  }

  @Test func insecure() throws {
    let conf = try config(
      """
      [[registry]]
      location = "registry.local:5000"
      insecure = true
      [[registry.mirror]]
      location = "tls-mirror.local"
      [[registry]]
      prefix = "secure.local"
      """)
    #expect(
      try sources(conf, "registry.local:5000/app") == [
        "tls-mirror.local/app:latest mirror", "registry.local:5000/app:latest insecure",
      ])
    #expect(try sources(conf, "secure.local/app") == ["secure.local/app:latest"])
    #expect(conf.registries[1].location == "secure.local")
    // Loopback registries are not insecure unless a table says so.
    #expect(try sources(conf, "localhost:5000/app") == ["localhost:5000/app:latest"])
    #expect(try sources(conf, "127.0.0.1:5000/app") == ["127.0.0.1:5000/app:latest"])
  }

  // MARK: Errors

  @Test(arguments: [
    ("unknown = 1", "unknown", "unknown key"),
    ("[registries.search]\nregistries = [\"quay.io\"]", "registries", "version 1"),
    ("[registries.insecure]\nregistries = []", "registries", "version 1"),
    ("unqualified-search-registries = \"docker.io\"", "unqualified-search-registries", "expected an array"),
    ("unqualified-search-registries = [1]", "unqualified-search-registries", "element 0 must be a string"),
    (
      "unqualified-search-registries = [\"docker.io\", \"https://quay.io\"]", "unqualified-search-registries",
      "element 1"
    ),
    ("unqualified-search-registries = [\"docker.io/library\"]", "unqualified-search-registries", "element 0"),
    ("short-name-mode = \"sometimes\"", "short-name-mode", "\"enforcing\", \"permissive\" or \"disabled\""),
    ("short-name-mode = 1", "short-name-mode", "expected a string"),
    ("credential-helpers = [\"secretservice\"]", "credential-helpers", "not supported"),
    ("additional-layer-store-auth-helper = \"x\"", "additional-layer-store-auth-helper", "not supported"),
    ("registry = 1", "registry", "expected an array of tables"),
    ("[registry]\nlocation = \"a.com\"", "registry", "expected an array of tables"),
    ("[[registry]]\nlocation = 5", "registry[0].location", "expected a string, found integer"),
    ("[[registry]]\ninsecure = true", "registry[0].location", "needs a location or a prefix"),
    ("[[registry]]\nlocation = \"\"", "registry[0].location", "must not be empty"),
    ("[[registry]]\nlocation = \"https://example.com\"", "registry[0].location", "URI scheme"),
    ("[[registry]]\nlocation = \"example.com/Foo\"", "registry[0].location", "lowercase"),
    ("[[registry]]\nlocation = \"foo/bar\"", "registry[0].location", "registry host"),
    ("[[registry]]\nlocation = \"exa_mple.com\"", "registry[0].location", "not a valid host name"),
    ("[[registry]]\nprefix = \"example.com/a..b\"\nlocation = \"x.com\"", "registry[0].prefix", "is invalid"),
    ("[[registry]]\nprefix = \"\"\nlocation = \"x.com\"", "registry[0].prefix", "must not be empty"),
    ("[[registry]]\nprefix = \"*.example.com\"\nlocation = \"x.com\"", "registry[0].location", "wildcard"),
    ("[[registry]]\nprefix = \"*.example.com/foo\"", "registry[0].prefix", "*.example.com"),
    ("[[registry]]\nprefix = \"*.example.com:5000\"", "registry[0].prefix", "*.example.com"),
    ("[[registry]]\nprefix = \"foo.*.com\"\nlocation = \"x.com\"", "registry[0].prefix", "wildcard"),
    ("[[registry]]\nlocation = \"a.com\"\ninsecure = \"yes\"", "registry[0].insecure", "expected true or false"),
    ("[[registry]]\nlocation = \"a.com\"\nblocked = 1", "registry[0].blocked", "expected true or false"),
    (
      "[[registry]]\nlocation = \"a.com\"\nmirror-by-digest-only = \"no\"", "registry[0].mirror-by-digest-only",
      "expected true or false"
    ),
    (
      "[[registry]]\nlocation = \"a.com\"\nblocked = true\n[[registry.mirror]]\nlocation = \"m.com\"",
      "registry[0].mirror", "blocked"
    ),
    (
      "[[registry]]\nlocation = \"a.com\"\npull-from-mirror = \"all\"", "registry[0].pull-from-mirror",
      "only in a [[registry.mirror]]"
    ),
    ("[[registry]]\nlocation = \"a.com\"\nurl = \"b.com\"", "registry[0].url", "renamed to location"),
    ("[[registry]]\nlocation = \"a.com\"\nsearch = true", "registry[0].search", "unknown key"),
    ("[[registry]]\nlocation = \"a.com\"\nmirror = \"m.com\"", "registry[0].mirror", "expected an array of tables"),
    (
      "[[registry]]\nlocation = \"a.com\"\n[[registry.mirror]]\ninsecure = true", "registry[0].mirror[0].location",
      "needs a location"
    ),
    (
      "[[registry]]\nlocation = \"a.com\"\n[[registry.mirror]]\nlocation = \"http://m.com\"",
      "registry[0].mirror[0].location", "URI scheme"
    ),
    (
      "[[registry]]\nlocation = \"a.com\"\n[[registry.mirror]]\nlocation = \"m.com\"\npull-from-mirror = \"some\"",
      "registry[0].mirror[0].pull-from-mirror", "\"all\", \"digest-only\" or \"tag-only\""
    ),
    (
      "[[registry]]\nlocation = \"a.com\"\n[[registry.mirror]]\nlocation = \"m.com\"\nblocked = true",
      "registry[0].mirror[0].blocked", "unknown key"
    ),
    (
      "[[registry]]\nlocation = \"a.com\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.com\"\n"
        + "pull-from-mirror = \"tag-only\"", "registry[0].mirror[0].pull-from-mirror", "mirror-by-digest-only"
    ),
    (
      "[[registry]]\nlocation = \"a.com\"\n[[registry]]\nprefix = \"a.com\"\nlocation = \"b.com\"",
      "registry[1].prefix", "already used by registry[0]"
    ),
    (
      "[[registry]]\nprefix = \"a.com/x\"\nlocation = \"b.com\"\n[[registry]]\nprefix = \"a.com/y\"\n"
        + "location = \"b.com\"\ninsecure = true", "registry[1].insecure", "same location \"b.com\""
    ),
    (
      "[[registry]]\nprefix = \"a.com/x\"\nlocation = \"b.com\"\nblocked = true\n[[registry]]\nprefix = \"a.com/y\"\n"
        + "location = \"b.com\"", "registry[1].blocked", "same location"
    ),
    (
      "[aliases]\n\"docker.io/busybox\" = \"docker.io/library/busybox\"", "aliases.\"docker.io/busybox\"",
      "short name"
    ),
    ("[aliases]\n\"busybox:1\" = \"docker.io/library/busybox\"", "aliases.\"busybox:1\"", "short name"),
    ("[aliases]\nbusybox = \"busybox\"", "aliases.busybox", "fully qualified"),
    ("[aliases]\nbusybox = \"docker.io/library/busybox:1\"", "aliases.busybox", "without tag or digest"),
    ("[aliases]\nbusybox = 3", "aliases.busybox", "expected a string"),
    ("aliases = 3", "aliases", "expected a table"),
  ])
  func errorsNameTheFileAndKey(toml: String, key: String, reason: String) {
    do {
      let parsed = try RegistriesConfig.parse(toml, source: "/etc/containers/registries.conf")
      Issue.record("accepted \(String(reflecting: toml)): \(parsed)")
    } catch {
      guard case .invalid(let file, let errorKey, _) = error else {
        Issue.record("wrong error \(error)")
        return
      }
      #expect(file == "/etc/containers/registries.conf")
      #expect(errorKey == key)
      #expect(error.description.hasPrefix("/etc/containers/registries.conf: key '\(key)': "), "\(error)")
      #expect(error.description.contains(reason), "\(error)")
      #expect(error.crispError.code == .failedPrecondition)
    }
  }

  @Test func syntaxErrorsNameTheLine() {
    #expect {
      try config("unqualified-search-registries = [\"docker.io\"]\n[[registry]\nlocation = \"a.com\"\n")
    } throws: { error in
      guard case .syntax(let file, let line, _, _) = error as? RegistriesConfigError else { return false }
      return file == "test.conf" && line == 2 && "\(error)".hasPrefix("test.conf: line 2, column ")
    }
    // toml++ refuses a key given twice.
    #expect(throws: RegistriesConfigError.self) {
      try config("[[registry]]\nlocation = \"a.com\"\nlocation = \"b.com\"")
    }
  }

  @Test func manPageExampleParses() throws {
    let conf = try config(
      """
      unqualified-search-registries = ["example.com"]

      [[registry]]
      prefix = "example.com/foo"
      insecure = false
      blocked = false
      location = "internal-registry-for-example.com/bar"

      [[registry.mirror]]
      location = "example-mirror-0.local/mirror-for-foo"

      [[registry.mirror]]
      location = "example-mirror-1.local/mirrors/foo"
      insecure = true
      """)
    #expect(
      conf
        == RegistriesConfig(
          unqualifiedSearchRegistries: ["example.com"],
          registries: [
            .init(
              prefix: "example.com/foo", location: "internal-registry-for-example.com/bar",
              mirrors: [
                .init(location: "example-mirror-0.local/mirror-for-foo"),
                .init(location: "example-mirror-1.local/mirrors/foo", insecure: true),
              ])
          ]))
  }
}
