import CrispCore
import CrispTestSupport
import Foundation
import Testing

@testable import ImagedKit

private func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

private func auth(_ json: String) throws -> AuthFile { try AuthFile.parse(json, source: "/etc/crisp/auth.json") }

/// Parses `json`, which must fail, and returns the error.
private func failure(_ json: String) -> AuthFileError? {
  do {
    let parsed = try AuthFile.parse(json, source: "/etc/crisp/auth.json")
    Issue.record("accepted \(json): \(parsed)")
    return nil
  } catch {
    #expect(error.description.hasPrefix("/etc/crisp/auth.json: "), "\(error)")
    return error
  }
}

@Suite struct AuthFileTests {
  @Test func missingOrEmptyFileHasNoCredentials() throws {
    let dir = try makeTemporaryDirectory(prefix: "authfile")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let missing = try AuthFile.load(path: dir + "/auth.json")
    #expect(missing.isEmpty)
    #expect(missing.credentials(registry: "docker.io", repository: "library/busybox") == nil)
    #expect(try auth("").isEmpty)
    #expect(try auth(" \n").isEmpty)
    #expect(try auth("{}").isEmpty)
    #expect(try auth(#"{"auths": {}}"#).isEmpty)
  }

  @Test func loadsAFile() throws {
    let dir = try makeTemporaryDirectory(prefix: "authfile")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/auth.json"
    try #"{"auths": {"quay.io": {"auth": "\#(base64("u:p"))"}}}"#.write(toFile: path, atomically: true, encoding: .utf8)
    #expect(
      try AuthFile.load(path: path).credentials(registry: "quay.io", repository: "x")
        == .basic(username: "u", password: "p"))

    try #"{"auths": {"quay.io": {"auth": "%%%"}}}"#.write(toFile: path, atomically: true, encoding: .utf8)
    #expect(
      throws: AuthFileError.invalidEntry(file: path, key: "quay.io", reason: "the \"auth\" field is not valid base64")
    ) {
      try AuthFile.load(path: path)
    }
    #expect {
      try AuthFile.load(path: dir)
    } throws: { error in
      guard case .unreadable(let file, _) = error as? AuthFileError else { return false }
      return file == dir && "\(error)".hasPrefix(dir + ": cannot read")
    }
  }

  @Test func credentialKinds() throws {
    let file = try auth(
      """
      {"auths": {
        "basic.io": {"auth": "\(base64("alice:s3cr:et"))"},
        "fields.io": {"username": "bob", "password": "pw"},
        "identity.io": {"auth": "\(base64("<token>:"))", "identitytoken": "refresh"},
        "bearer.io": {"registrytoken": "bearer", "identitytoken": "refresh", "auth": "\(base64("a:b"))"},
        "both.io": {"auth": "\(base64("from:auth"))", "username": "from", "password": "fields"},
        "unpadded.io": {"auth": "\(base64("ab:c").replacingOccurrences(of: "=", with: ""))"},
        "nul.io": {"auth": "\(Data("user:pass\0\0".utf8).base64EncodedString())"},
        "email.io": {"auth": "\(base64("e:f"))", "email": "e@example.com"}
      }}
      """)
    func creds(_ registry: String) -> RegistryCredentials? { file.credentials(registry: registry, repository: "app") }
    #expect(creds("basic.io") == .basic(username: "alice", password: "s3cr:et"))
    #expect(creds("fields.io") == .basic(username: "bob", password: "pw"))
    #expect(creds("identity.io") == .identityToken("refresh"))
    #expect(creds("bearer.io") == .registryToken("bearer"))
    #expect(creds("both.io") == .basic(username: "from", password: "auth"))
    #expect(creds("unpadded.io") == .basic(username: "ab", password: "c"))
    #expect(creds("nul.io") == .basic(username: "user", password: "pass"))
    #expect(creds("email.io") == .basic(username: "e", password: "f"))
    #expect(creds("other.io") == nil)
  }

  @Test func dockerConfigJSONWithOtherKeys() throws {
    let file = try auth(
      """
      {
        "auths": {
          "https://index.docker.io/v1/": {"auth": "\(base64("hub:pw"))"},
          "ghcr.io": {}
        },
        "credsStore": "desktop",
        "credHelpers": {"gcr.io": "gcloud"},
        "HttpHeaders": {"User-Agent": "Docker-Client"},
        "psFormat": "table {{.ID}}"
      }
      """)
    #expect(
      file.entries == [.init(key: "docker.io", isLegacy: true, credentials: .basic(username: "hub", password: "pw"))])
    #expect(
      file.credentials(registry: "docker.io", repository: "library/busybox") == .basic(username: "hub", password: "pw"))
    #expect(file.credentials(for: try ImageReference.parse("busybox")) == .basic(username: "hub", password: "pw"))
    #expect(file.credentials(registry: "ghcr.io", repository: "x/y") == nil)
  }

  @Test func mostSpecificKeyWins() throws {
    let file = try auth(
      """
      {"auths": {
        "quay.io": {"auth": "\(base64("registry:1"))"},
        "quay.io/team": {"auth": "\(base64("namespace:2"))"},
        "quay.io/team/app": {"auth": "\(base64("repo:3"))"},
        "quay.io/team/sub/": {"auth": "\(base64("slash:4"))"},
        "https://quay.io/v1/": {"auth": "\(base64("legacy:5"))"},
        "quay.io/empty": {},
        "https://legacy.io/v2/": {"auth": "\(base64("legacy:6"))"},
        "http://localhost:5000": {"auth": "\(base64("local:7"))"}
      }}
      """)
    func user(_ registry: String, _ repository: String) -> String? {
      guard case .basic(let username, _) = file.credentials(registry: registry, repository: repository) else {
        return nil
      }
      return username
    }
    #expect(user("quay.io", "team/app") == "repo")
    #expect(user("quay.io", "team/app/sub") == "repo")
    #expect(user("quay.io", "team/other") == "namespace")
    #expect(user("quay.io", "team/sub/x") == "slash")
    #expect(user("quay.io", "teamx/app") == "registry")
    #expect(user("quay.io", "team") == "namespace")
    #expect(user("quay.io", "other") == "registry")
    // An empty entry is skipped: the registry's entry applies.
    #expect(user("quay.io", "empty/app") == "registry")
    // A legacy URL key stands for its host, after every other key.
    #expect(user("legacy.io", "any/thing") == "legacy")
    #expect(user("localhost:5000", "app") == "local")
    #expect(user("localhost", "app") == nil)
    #expect(user("quay.io:443", "team/app") == nil)
  }

  @Test func dockerHubAliases() throws {
    let file = try auth(
      """
      {"auths": {
        "index.docker.io": {"auth": "\(base64("alias:1"))"},
        "docker.io": {"auth": "\(base64("canonical:2"))"},
        "registry-1.docker.io/user": {"auth": "\(base64("user:3"))"},
        "http://index.docker.io/v1/": {"auth": "\(base64("http:4"))"},
        "https://index.docker.io/v1/": {"auth": "\(base64("https:5"))"}
      }}
      """)
    #expect(
      file.credentials(registry: "docker.io", repository: "library/busybox")
        == .basic(username: "canonical", password: "2"))
    #expect(
      file.credentials(registry: "index.docker.io", repository: "library/busybox")
        == .basic(username: "canonical", password: "2"))
    #expect(file.credentials(registry: "docker.io", repository: "user/app") == .basic(username: "user", password: "3"))
    #expect(
      file.entries.filter(\.isLegacy) == [
        .init(key: "docker.io", isLegacy: true, credentials: .basic(username: "https", password: "5"))
      ])

    let onlyAlias = try auth(#"{"auths": {"index.docker.io": {"auth": "\#(base64("alias:1"))"}}}"#)
    #expect(
      onlyAlias.credentials(registry: "docker.io", repository: "library/busybox")
        == .basic(username: "alias", password: "1"))
  }

  @Test func errorsNameTheFileAndKey() {
    #expect(
      failure(#"{"auths": {"quay.io": {"auth": "not base64!"}}}"#)
        == .invalidEntry(file: "/etc/crisp/auth.json", key: "quay.io", reason: "the \"auth\" field is not valid base64")
    )

    let noColon = failure(#"{"auths": {"quay.io/team": {"auth": "\#(base64("secretwithoutcolon"))"}}}"#)
    #expect(noColon?.description.contains("auths entry \"quay.io/team\"") == true)
    #expect(noColon?.description.contains("username:password") == true)
    #expect(noColon?.description.contains("secretwithoutcolon") == false)

    #expect(failure(#"{"auths": {"a.io": {"username": "u"}}}"#)?.description.contains("without \"password\"") == true)
    #expect(failure(#"{"auths": {"a.io": {"password": "p"}}}"#)?.description.contains("without \"username\"") == true)
    #expect(
      failure(#"{"auths": {"a.io": {"auth": "\#(base64(":p"))"}}}"#)?.description.contains("empty username") == true)

    #expect(
      failure(#"{"auths": {"a.io": {"auth": 5}}}"#)
        == .invalidEntry(file: "/etc/crisp/auth.json", key: "a.io", reason: "the \"auth\" field must be a string"))
    #expect(
      failure(#"{"auths": {"a.io": "x"}}"#)
        == .invalidEntry(file: "/etc/crisp/auth.json", key: "a.io", reason: "the entry must be an object"))
    #expect(
      failure(#"{"auths": []}"#)?.description == "/etc/crisp/auth.json: invalid JSON: \"auths\" must be an object")
    #expect(failure(#"[]"#)?.description == "/etc/crisp/auth.json: invalid JSON: the document must be a JSON object")
    if case .invalidJSON(let file, _)? = failure(#"{"auths": {"#) {
      #expect(file == "/etc/crisp/auth.json")
    } else {
      Issue.record("truncated JSON was not .invalidJSON")
    }

    #expect(
      failure(#"{"auths": {"": {"auth": "\#(base64("a:b"))"}}}"#)?.description.contains("names no registry") == true)
    #expect(failure(#"{"auths": {"a.io/x:tag": {"auth": "\#(base64("a:b"))"}}}"#)?.description.contains("tag") == true)
    #expect(
      failure(#"{"auths": {"a.io//x": {"auth": "\#(base64("a:b"))"}}}"#)?.description.contains("empty path") == true)
    #expect(
      failure(#"{"auths": {"a .io": {"auth": "\#(base64("a:b"))"}}}"#)?.description.contains("whitespace") == true)
  }

  @Test func credentialsAreRedacted() {
    let basic = RegistryCredentials.basic(username: "alice", password: "hunter2")
    #expect("\(basic)" == "basic(username: \"alice\", password: <redacted>)")
    #expect(!String(reflecting: basic).contains("hunter2"))
    #expect(!"\(RegistryCredentials.identityToken("tok"))".contains("tok"))
    #expect(!"\(RegistryCredentials.registryToken("tok"))".contains("tok"))
  }
}
