import Testing

@testable import ImagedKit

private let hex64 = String(repeating: "ab", count: 32)
private let hex128 = String(repeating: "0f", count: 64)

@Suite struct ImageReferenceTests {
  @Test(arguments: [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("user/app", "docker.io/user/app:latest"),
    ("user/app:v1.2-rc_3", "docker.io/user/app:v1.2-rc_3"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
    ("docker.io/user/app", "docker.io/user/app:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/user/app:v1", "docker.io/user/app:v1"),
    ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
    ("registry.k8s.io/coredns/coredns:v1.11.3", "registry.k8s.io/coredns/coredns:v1.11.3"),
    ("gcr.io/distroless/static-debian12:nonroot", "gcr.io/distroless/static-debian12:nonroot"),
    ("quay.io/a/b/c/d:tag", "quay.io/a/b/c/d:tag"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app:v1", "localhost:5000/app:v1"),
    ("127.0.0.1:5000/ns/app", "127.0.0.1:5000/ns/app:latest"),
    ("[::1]:5000/app", "[::1]:5000/app:latest"),
    ("[fe80::1]/app:x", "[fe80::1]/app:x"),
    ("my-registry.example.com:443/team/app", "my-registry.example.com:443/team/app:latest"),
    ("Registry.Example.com/app", "Registry.Example.com/app:latest"),
    // Docker's rule: an upper-case first component names a registry.
    ("Foo/bar", "Foo/bar:latest"),
    // No '/': always a Docker Hub name, so the ':' starts a tag.
    ("localhost:5000", "docker.io/library/localhost:5000"),
    ("example.com", "docker.io/library/example.com:latest"),
    ("my_ns/app", "docker.io/my_ns/app:latest"),
    ("a/b__c/d---e/f.g/h_i", "docker.io/a/b__c/d---e/f.g/h_i:latest"),
    ("busybox:_x", "docker.io/library/busybox:_x"),
    ("busybox@sha256:\(hex64)", "docker.io/library/busybox@sha256:\(hex64)"),
    ("busybox:1.36@sha256:\(hex64)", "docker.io/library/busybox:1.36@sha256:\(hex64)"),
    ("localhost:5000/app@sha256:\(hex64)", "localhost:5000/app@sha256:\(hex64)"),
    ("quay.io/app@sha512:\(hex128)", "quay.io/app@sha512:\(hex128)"),
  ])
  func normalises(input: String, expected: String) throws {
    #expect(try ImageReference.parse(input).description == expected)
  }

  @Test func parts() throws {
    let plain = try ImageReference.parse("busybox")
    #expect(plain == ImageReference(registry: "docker.io", repository: "library/busybox", tag: "latest"))
    #expect(plain.name == "docker.io/library/busybox")
    #expect(plain.tagged == "docker.io/library/busybox:latest")
    #expect(plain.digested == nil)

    let digestOnly = try ImageReference.parse("localhost:5000/app@sha256:\(hex64)")
    #expect(digestOnly.registry == "localhost:5000")
    #expect(digestOnly.repository == "app")
    #expect(digestOnly.tag == nil)
    #expect(digestOnly.digest == "sha256:\(hex64)")
    #expect(digestOnly.tagged == nil)
    #expect(digestOnly.digested == "localhost:5000/app@sha256:\(hex64)")

    let both = try ImageReference.parse("registry.k8s.io/pause:3.10@sha256:\(hex64)")
    #expect(both.tag == "3.10")
    #expect(both.digest == "sha256:\(hex64)")
    #expect(both.tagged == "registry.k8s.io/pause:3.10")
  }

  @Test func withDigestKeepsNameAndTag() throws {
    let reference = try ImageReference.parse("registry.k8s.io/pause:3.10")
    let pinned = reference.withDigest("sha256:\(hex64)")
    #expect(pinned.description == "registry.k8s.io/pause:3.10@sha256:\(hex64)")
    #expect(pinned.name == reference.name)
    #expect(pinned.tag == "3.10")
    #expect(try ImageReference.parse(pinned.description) == pinned)
  }

  @Test func tagLength() throws {
    let longest = String(repeating: "t", count: 128)
    #expect(try ImageReference.parse("busybox:" + longest).tag == longest)
    #expect(throws: ReferenceError.self) { try ImageReference.parse("busybox:" + longest + "t") }
    do {
      _ = try ImageReference.parse("busybox:" + longest + "t")
      Issue.record("a 129-character tag was accepted")
    } catch {
      guard case .invalidTag = error else {
        Issue.record("wrong error \(error)")
        return
      }
      #expect(error.description.contains("129 characters"))
      #expect(error.description.contains("busybox:ttt"))
    }
  }

  @Test func nameLength() throws {
    let repository = String(repeating: "a", count: 255 - "quay.io/".count)
    #expect(try ImageReference.parse("quay.io/" + repository).repository == repository)
    #expect(throws: ReferenceError.nameTooLong(reference: "quay.io/" + repository + "a")) {
      try ImageReference.parse("quay.io/" + repository + "a")
    }
  }

  @Test func uppercaseRepositoryIsRefused() {
    for text in ["BusyBox", "docker.io/Library/busybox", "quay.io/team/App:v1", "user/App"] {
      #expect(throws: ReferenceError.uppercaseRepository(reference: text)) { try ImageReference.parse(text) }
      #expect(ReferenceError.uppercaseRepository(reference: text).description.contains("\"\(text)\""))
      #expect(ReferenceError.uppercaseRepository(reference: text).description.contains("lowercase"))
    }
  }

  @Test(arguments: [
    // whitespace and characters
    " busybox", "busybox ", "busy box", "busybox\n", "busybox\t:1", "büsybox",
    // image IDs
    hex64,
    // registries
    "localhost:/app", "localhost:abc/app", "exa_mple.com/app", "-example.com/app", "example-.com/app",
    "example..com/app", "[::1/app", "[]:5000/app", "[zz::1]/app",
    // repositories
    "docker.io/", "docker.io//busybox", "/busybox", "quay.io/app/", "foo..bar", "foo___bar", "-foo", "foo-",
    "foo_", ".foo", "a/b/.c", "quay.io/a%b",
    // tags
    "busybox:", "busybox:.1", "busybox:-1", "busybox:a+b", "busybox:1:2",
    // digests
    "busybox@", "busybox@sha256", "busybox@sha256:", "busybox@sha256:abc", "busybox@sha256:\(hex64.uppercased())",
    "busybox@sha256:\(hex64)0", "busybox@md5:d41d8cd98f00b204e9800998ecf8427e", "busybox@:\(hex64)",
    "busybox@sha256:\(hex64)@sha256:\(hex64)", "busybox@sha512:\(hex64)",
  ])
  func refuses(text: String) {
    do {
      let reference = try ImageReference.parse(text)
      Issue.record("\(String(reflecting: text)) parsed as \(reference)")
    } catch {
      // Every message names the reference as written.
      #expect(error.description.contains(String(reflecting: text)), "\(error)")
      #expect(error.crispError.code == .invalidArgument)
    }
  }

  @Test func emptyIsRefused() {
    #expect(throws: ReferenceError.empty) { try ImageReference.parse("") }
    #expect(ReferenceError.empty.description.contains("empty"))
  }

  @Test func errorsSayWhatIsWrong() {
    func message(_ text: String) -> String {
      do {
        _ = try ImageReference.parse(text)
        return ""
      } catch { return error.description }
    }
    #expect(message("busy box").contains("whitespace"))
    #expect(message(hex64).contains("image ID"))
    #expect(message("busybox@sha256:abc").contains("64 lowercase hexadecimal digits"))
    #expect(message("busybox@md5:d41d8cd98f00b204e9800998ecf8427e").contains("\"md5\" is not supported"))
    #expect(message("localhost:abc/app").contains("invalid port"))
    #expect(message("foo..bar").contains("\"foo..bar\" is invalid"))
    #expect(message("docker.io/").contains("empty"))
  }

  @Test(arguments: [
    ("busybox", true), ("busybox:1.36", true), ("busybox@sha256:\(hex64)", true), ("user/app", true),
    ("user/app:v1", true), ("a/b/c", true), ("localhost:5000", true), ("example.com", true),
    ("docker.io/busybox", false), ("index.docker.io/user/app", false), ("localhost/app", false),
    ("localhost:5000/app", false), ("registry.k8s.io/pause:3.10", false), ("127.0.0.1:5000/x", false),
    ("[::1]:5000/x", false), ("Foo/bar", false),
  ])
  func shortNames(text: String, isShort: Bool) {
    #expect(ImageReference.isShortName(text) == isShort)
  }

  @Test func digestValidation() {
    #expect(ImageReference.isValidDigest("sha256:\(hex64)"))
    #expect(ImageReference.isValidDigest("sha512:\(hex128)"))
    #expect(!ImageReference.isValidDigest("sha256:\(hex64.uppercased())"))
    #expect(!ImageReference.isValidDigest(hex64))
  }

  @Test func prefixMatching() throws {
    let reference = try ImageReference.parse("example.com/foo/bar:1")
    for prefix in ["example.com", "example.com/foo", "example.com/foo/bar", "example.com/foo/bar:1"] {
      #expect(reference.matches(prefix: prefix), "\(prefix)")
    }
    for prefix in [
      "example.co", "example.com/fo", "example.com/foo/ba", "example.com/foo/bar:", "example.com/foo/bar:2",
      "example.com/foo/bar/baz", "other.com", "example.com/foo/",
    ] {
      #expect(!reference.matches(prefix: prefix), "\(prefix)")
    }
    #expect(!(try ImageReference.parse("example.com/foobar")).matches(prefix: "example.com/foo"))
    // A host prefix is the whole registry: no match with another port.
    #expect(!(try ImageReference.parse("example.com:5000/foo")).matches(prefix: "example.com"))
    #expect((try ImageReference.parse("example.com:5000/foo")).matches(prefix: "example.com:5000"))

    let pinned = try ImageReference.parse("example.com/foo:1@sha256:\(hex64)")
    #expect(pinned.matches(prefix: "example.com/foo"))
    #expect(pinned.matches(prefix: "example.com/foo:1"))
    #expect(pinned.matches(prefix: "example.com/foo:1@sha256:\(hex64)"))
    #expect(!pinned.matches(prefix: "example.com/foo:1@sha256:ab"))
  }

  @Test func prefixReplacement() throws {
    let pause = try ImageReference.parse("registry.k8s.io/pause:3.10")
    #expect(
      try pause.replacingRegistryPrefix("registry.k8s.io", with: "127.0.0.1:5000").description
        == "127.0.0.1:5000/pause:3.10")
    #expect(
      try pause.replacingRegistryPrefix("registry.k8s.io/pause", with: "mirror.local/k8s/pause").description
        == "mirror.local/k8s/pause:3.10")
    #expect(try pause.replacingRegistryPrefix("registry.k8s.io", with: "registry.k8s.io") == pause)

    // Docker Hub gets its normalisation after rewriting.
    let app = try ImageReference.parse("internal.example.com/busybox@sha256:\(hex64)")
    #expect(
      try app.replacingRegistryPrefix("internal.example.com", with: "docker.io").description
        == "docker.io/library/busybox@sha256:\(hex64)")

    let hub = try ImageReference.parse("busybox:1")
    #expect(
      try hub.replacingRegistryPrefix("docker.io", with: "mirror.gcr.io").description
        == "mirror.gcr.io/library/busybox:1")

    // A prefix that does not match, and a location that leaves no repository.
    #expect(throws: ReferenceError.self) { try pause.replacingRegistryPrefix("quay.io", with: "x.io") }
    #expect(throws: ReferenceError.self) { try pause.replacingRegistryPrefix("registry.k8s.io/pause", with: "x.io") }
  }
}
