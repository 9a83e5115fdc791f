import CrispCore
import Foundation
import Testing

@testable import ImagedKit

/// The rules `RegistryClient` follows redirects by, and `ImagePuller` scopes a request's
/// credentials by; RegistrySecurityTests checks them against real registries.
@Suite struct RegistryRedirectTests {
  let blob = URL(string: "https://registry.example.com:5000/v2/a/blobs/sha256:00")!

  @Test func originsAreSchemeHostAndPort() throws {
    let url = { (text: String) in try #require(URL(string: text)) }
    #expect(RegistryClient.sameOrigin(try url("https://r.example/a"), try url("https://R.example:443/b?c")))
    #expect(RegistryClient.sameOrigin(try url("http://r.example/a"), try url("http://r.example:80/b")))
    #expect(!RegistryClient.sameOrigin(try url("https://127.0.0.1:5000/"), try url("https://127.0.0.1:5001/")))
    #expect(!RegistryClient.sameOrigin(try url("https://r.example/"), try url("http://r.example:443/")))
    #expect(RegistryClient.authority(try url("https://[::1]:5000/v2/")) == "[::1]:5000")
    #expect(RegistryClient.authority(try url("https://quay.io/v2/")) == "quay.io")
  }

  @Test func locationsResolveAgainstTheURLThatSentThem() throws {
    let target = { (location: String) throws(CrispError) in
      try RegistryClient.redirectTarget(location, from: blob, start: blob, scope: .anyHost, what: "blob")
    }
    #expect(try target("/v2/a/blobs/other").absoluteString == "https://registry.example.com:5000/v2/a/blobs/other")
    #expect(try target("//cdn.example.net/x?sig=1").absoluteString == "https://cdn.example.net/x?sig=1")
    #expect(try target("https://cdn.example.net/x").host == "cdn.example.net")
    for unusable in ["ftp://cdn.example.net/x", "file:///etc/passwd", "https://"] {
      #expect(throws: CrispError.self, "\(unusable)") { try target(unusable) }
    }
  }

  @Test func httpsIsNeverDowngradedAndTokenRequestsStayAtTheRealm() throws {
    let downgrade = #expect(throws: CrispError.self) {
      try RegistryClient.redirectTarget(
        "http://cdn.example.net/x", from: blob, start: blob, scope: .anyHost, what: "blob")
    }
    #expect(downgrade?.code == .permissionDenied)
    #expect(downgrade?.message.contains("http://cdn.example.net/x") == true)

    let realm = try #require(URL(string: "https://auth.example.com/token?scope=x"))
    let elsewhere = #expect(throws: CrispError.self) {
      try RegistryClient.redirectTarget(
        "https://other.example.com/token", from: realm, start: realm, scope: .sameOrigin, what: "token")
    }
    #expect(elsewhere?.code == .permissionDenied)
    let moved = try RegistryClient.redirectTarget(
      "/v2/token?scope=x", from: realm, start: realm, scope: .sameOrigin, what: "token")
    #expect(moved.absoluteString == "https://auth.example.com/v2/token?scope=x")
  }

  @Test func requestCredentialsGoOnlyToTheRegistryTheyAreFor() {
    let apply = ImagePuller.requestCredentialsApply
    #expect(apply("", false, "quay.io"))
    #expect(!apply("", true, "docker.io"), "a short name's search registries are guesses")
    #expect(apply("https://index.docker.io/v1/", true, "docker.io"))
    #expect(apply("quay.io", true, "quay.io"))
    #expect(!apply("quay.io", false, "ghcr.io"))
  }
}
