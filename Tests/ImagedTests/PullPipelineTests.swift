import Testing

@testable import ImagedKit

@Suite struct PullPipelineTests {
  @Test func chainIDsFollowTheImageSpec() {
    let a = "sha256:" + String(repeating: "a", count: 64)
    let b = "sha256:" + String(repeating: "b", count: 64)
    let chain = chainIDs(diffIDs: [a, b])
    #expect(chain.count == 2)
    #expect(chain[0] == a)
    // printf '%s' "sha256:aaa… sha256:bbb…" | sha256sum
    #expect(chain[1] == "sha256:" + "ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c")
  }

  @Test func bearerChallengeIsParsed() {
    let challenge = AuthChallenge(
      header:
        #"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#
    )
    #expect(challenge.scheme == "bearer")
    #expect(challenge.parameters["realm"] == "https://auth.example.com/token")
    #expect(challenge.parameters["service"] == "registry.example.com")
    #expect(challenge.parameters["scope"] == "repository:a/b:pull,push")
    #expect(AuthChallenge(header: #"Basic realm="Registry Realm""#).scheme == "basic")
  }
}
