import CRIAPI
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// Where imaged sends credentials and how it follows redirects, checked on what the test
/// registries' fronts (imagefixture.py redirector) logged: real docker-registry
/// instances, a real imaged, every server on 127.0.0.1.
@Suite struct RegistrySecurityTests {
  @Test func anHTTPSRegistryRedirectingABlobToHTTPFailsThePull() async throws {
    try await withRegistry(tls: true) { registry, _ in
      let cdn = try await RegistryFront.start(["--storage", registry.storage])
      defer { cdn.stop() }
      let front = try await RegistryFront.start(
        registry.frontArguments + ["--redirect-to", cdn.url, "--redirect-status", "302"], tls: registry)
      defer { front.stop() }
      try await withCrisp { crisp in
        try crisp.trust(registry, at: front.address)
        try await crisp.startAll()

        let refused = await #expect(throws: RPCError.self) {
          try await crisp.pull("\(front.address)/crisp/busybox:latest")
        }
        #expect(refused?.code == .permissionDenied)
        let message = refused?.message ?? ""
        #expect(message.contains("https://\(front.address)/v2/crisp/busybox/blobs/sha256:"), "\(message)")
        #expect(message.contains("http://\(cdn.address)/v2/crisp/busybox/blobs/sha256:"), "\(message)")
        #expect(message.contains("downgrade from HTTPS to plain HTTP"), "\(message)")
        #expect(front.requests.contains { $0.path.contains("/blobs/") }, "the blob was asked for at the registry")
        #expect(cdn.requests.isEmpty, "the plain-HTTP host was contacted: \(cdn.requests)")
        crisp.expectNoPartialPull()
      }
    }
  }

  @Test func aBlobRedirectedToAnotherHostIsFetchedWithoutCredentials() async throws {
    try await withRegistry(tls: true, auth: .basic) { registry, images in
      let cdn = try await RegistryFront.start(["--storage", registry.storage], tls: registry)
      defer { cdn.stop() }
      let front = try await RegistryFront.start(
        registry.frontArguments + ["--redirect-to", cdn.url, "--redirect-status", "307"], tls: registry)
      defer { front.stop() }
      try await withCrisp { crisp in
        try crisp.trust(registry, at: front.address)
        try crisp.trust(registry, at: cdn.address)
        try await crisp.startAll()
        let busybox = try images.image("crisp/busybox:latest")

        let id = try await crisp.pull("\(front.address)/crisp/busybox:latest", auth: try registry.basicAuth())
        #expect(id == busybox.configDigest)
        // The registry got the credentials; the host it sent the blobs to did not.
        #expect(front.requests.contains { $0.authorization == (try? registry.basicHeader()) })
        let blobPaths = ([try #require(busybox.configDigest)] + busybox.layers).map { "/v2/crisp/busybox/blobs/\($0)" }
        #expect(Set(cdn.requests.map(\.path)) == Set(blobPaths))
        #expect(cdn.requests.allSatisfy { $0.authorization == nil }, "\(cdn.requests)")
      }
    }
  }

  @Test func aRedirectTargetThatAsksForCredentialsGetsNone() async throws {
    try await withRegistry(tls: true, auth: .basic) { registry, _ in
      let stranger = try await RegistryFront.start(["--challenge"], tls: registry)
      defer { stranger.stop() }
      let front = try await RegistryFront.start(
        registry.frontArguments + ["--redirect-to", stranger.url], tls: registry)
      defer { front.stop() }
      try await withCrisp { crisp in
        try crisp.trust(registry, at: front.address)
        try crisp.trust(registry, at: stranger.address)
        try await crisp.startAll()

        let refused = await #expect(throws: RPCError.self) {
          try await crisp.pull("\(front.address)/crisp/busybox:latest", auth: try registry.basicAuth())
        }
        #expect(refused?.code == .permissionDenied)
        #expect(refused?.message.contains("https://\(stranger.address)/v2/crisp/busybox/blobs/") == true)
        #expect(refused?.message.contains("which asks for credentials") == true, "\(refused?.message ?? "")")
        // Its challenge names a token service of its own: asking that with the
        // registry's credentials would hand them over.
        #expect(!stranger.requests.isEmpty, "the redirect was followed")
        #expect(stranger.requests.allSatisfy { $0.authorization == nil && $0.path != "/token" }, "\(stranger.requests)")
      }
    }
  }

  @Test func theTokenRequestStaysWithTheRealmTheRegistryNamed() async throws {
    try await withRegistry(auth: .token) { registry, _ in
      let tokenPort = readWholeFile(registry.directory + "/token-server.port").trimmingCharacters(
        in: .whitespacesAndNewlines)
      let elsewhere = try await RegistryFront.start(["--upstream", "http://127.0.0.1:\(tokenPort)"])
      defer { elsewhere.stop() }
      let realm = try await RegistryFront.start(
        ["--redirect-to", elsewhere.url, "--redirect-all", "--redirect-status", "307"])
      defer { realm.stop() }
      let front = try await RegistryFront.start(registry.frontArguments + ["--realm", realm.url + "/token"])
      defer { front.stop() }
      try await withCrisp { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(front.address))
        try await crisp.startAll()
        let image = "\(front.address)/crisp/busybox:latest"

        // An identity token is an OAuth2 refresh token, POSTed in a form: a 307 would
        // have it POSTed again to the other host.
        var identity = Runtime_V1_AuthConfig()
        identity.identityToken = "refresh-" + UUID().uuidString
        let form = await #expect(throws: RPCError.self) { try await crisp.pull(image, auth: identity) }
        #expect(form?.code == .permissionDenied)
        #expect(form?.message.contains("\(realm.url)/token redirected to \(elsewhere.url)/token") == true)
        #expect(form?.message.contains("only to the token realm the registry named") == true, "\(form?.message ?? "")")
        #expect(realm.requests.contains { $0.method == "POST" && $0.body?.contains(identity.identityToken) == true })

        // A username and password go in the GET's Authorization header.
        let basic = await #expect(throws: RPCError.self) { try await crisp.pull(image, auth: try registry.basicAuth()) }
        #expect(basic?.code == .permissionDenied)
        #expect(basic?.message.contains("redirected to \(elsewhere.url)/token?") == true, "\(basic?.message ?? "")")
        #expect(realm.requests.contains { $0.method == "GET" && $0.authorization == (try? registry.basicHeader()) })

        #expect(elsewhere.requests.isEmpty, "the token request went to another host: \(elsewhere.requests)")
      }
    }
  }

  @Test func aMirrorGetsItsOwnCredentialsNeverTheRequests() async throws {
    try await withRegistry(tls: true, auth: .basic) { origin, images in
      try await withRegistry(tls: true, auth: .basic) { mirrored, _ in
        let mirror = try await RegistryFront.start(mirrored.frontArguments, tls: mirrored)
        defer { mirror.stop() }
        try await withCrisp { crisp in
          try crisp.writeRegistriesConf(
            """
            [[registry]]
            location = "\(origin.address)"
            [[registry.mirror]]
            location = "\(mirror.address)"
            """)
          try crisp.trustRegistryCA(origin)
          try crisp.trust(mirrored, at: mirror.address)
          let mirrorCredentials = try #require(mirrored.credentials)
          let encoded = Data("\(mirrorCredentials.user):\(mirrorCredentials.password)".utf8).base64EncodedString()
          try #"{"auths": {"\#(mirror.address)": {"auth": "\#(encoded)"}}}"#
            .write(toFile: crisp.authFile, atomically: true, encoding: .utf8)
          try await crisp.startAll()

          let id = try await crisp.pull("\(origin.address)/crisp/busybox:latest", auth: try origin.basicAuth())
          #expect(id == (try images.image("crisp/busybox:latest").configDigest))
          // The mirror served it, with the auth file's credentials for the mirror.
          let mirrorHeader = try mirrored.basicHeader()
          #expect(mirror.requests.contains { $0.path.contains("/blobs/") && $0.authorization == mirrorHeader })
          #expect(
            mirror.requests.allSatisfy { $0.authorization == nil || $0.authorization == mirrorHeader },
            "the mirror got other credentials: \(mirror.requests.compactMap(\.authorization))")
        }
      }
    }
  }

  @Test func shortNameSearchRegistriesGetTheRequestsCredentialsOnlyWhenServerAddressNamesThem() async throws {
    let empty = try await LocalRegistry.start(tls: true, auth: .basic)
    defer { empty.stop() }
    try await withRegistry(tls: true, auth: .basic) { registry, images in
      let first = try await RegistryFront.start(empty.frontArguments, tls: empty)
      defer { first.stop() }
      let second = try await RegistryFront.start(registry.frontArguments, tls: registry)
      defer { second.stop() }
      try await withCrisp { crisp in
        try crisp.writeRegistriesConf(
          #"unqualified-search-registries = ["\#(first.address)", "\#(second.address)"]"#)
        try crisp.trust(empty, at: first.address)
        try crisp.trust(registry, at: second.address)
        try await crisp.startAll()

        // Without server_address neither guess is known to be the credentials' registry.
        var auth = try registry.basicAuth()
        let refused = await #expect(throws: RPCError.self) { try await crisp.pull("crisp/busybox:latest", auth: auth) }
        #expect(refused?.code == .permissionDenied)
        #expect(second.requests.contains { $0.path.contains("/manifests/") }, "the second registry was tried")
        for front in [first, second] {
          #expect(front.requests.allSatisfy { $0.authorization == nil }, "\(front.address): \(front.requests)")
        }

        auth.serverAddress = second.address
        let id = try await crisp.pull("crisp/busybox:latest", auth: auth)
        #expect(id == (try images.image("crisp/busybox:latest").configDigest))
        #expect(second.requests.contains { $0.authorization == (try? registry.basicHeader()) })
        #expect(first.requests.allSatisfy { $0.authorization == nil }, "\(first.requests)")
      }
    }
  }
}

/// A front started with `imagefixture.py redirector`: it proxies to a registry, redirects,
/// serves blobs from a registry's storage or challenges, as its arguments say, and logs
/// every request it gets.
final class RegistryFront {
  /// "127.0.0.1:PORT".
  let address: String
  let url: String
  private let directory: String
  private let process: Process

  /// One logged request.
  struct Request: Decodable, CustomStringConvertible {
    var method: String
    var host: String?
    var path: String
    var authorization: String?
    var body: String?

    var description: String { "\(method) \(host ?? "") \(path) authorization=\(authorization ?? "none")" }
  }

  private init(address: String, url: String, directory: String, process: Process) {
    self.address = address
    self.url = url
    self.directory = directory
    self.process = process
  }

  deinit { stop() }

  /// Starts a front on a free port; with `tls`, it serves HTTPS with that registry's
  /// certificate (valid for 127.0.0.1 on any port).
  static func start(_ arguments: [String], tls registry: LocalRegistry? = nil) async throws -> RegistryFront {
    let directory = try makeTemporaryDirectory(prefix: "crisp-front")
    let portFile = directory + "/port"
    var fixtureArguments = [
      LocalRegistry.fixtureScript, "redirector", "--port-file", portFile, "--log", directory + "/requests.log",
    ]
    if let registry { fixtureArguments += ["--tls", "--dir", registry.directory] }
    let output = directory + "/output.log"
    _ = FileManager.default.createFile(atPath: output, contents: nil)
    let handle = try #require(FileHandle(forWritingAtPath: output))
    defer { try? handle.close() }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    process.arguments = fixtureArguments + arguments
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    try await waitUntil("the redirector listens", timeout: .seconds(30)) {
      !process.isRunning || FileManager.default.fileExists(atPath: portFile)
    }
    try #require(process.isRunning, "the redirector exited: \(readWholeFile(output))")
    let port = readWholeFile(portFile).trimmingCharacters(in: .whitespacesAndNewlines)
    let address = "127.0.0.1:\(port)"
    return RegistryFront(
      address: address, url: (registry == nil ? "http://" : "https://") + address, directory: directory,
      process: process)
  }

  /// Every request so far, in order.
  var requests: [Request] {
    readWholeFile(directory + "/requests.log").split(separator: "\n").compactMap {
      try? JSONDecoder().decode(Request.self, from: Data($0.utf8))
    }
  }

  func stop() {
    process.killIfRunning()
    try? FileManager.default.removeItem(atPath: directory)
  }
}

extension LocalRegistry {
  /// The redirector arguments that make it a front of this registry.
  fileprivate var frontArguments: [String] {
    ["--upstream", url] + (caFile.map { ["--upstream-cafile", $0] } ?? [])
  }

  /// A PullImage request's credentials for this registry.
  fileprivate func basicAuth() throws -> Runtime_V1_AuthConfig {
    let credentials = try #require(credentials)
    var auth = Runtime_V1_AuthConfig()
    auth.username = credentials.user
    auth.password = credentials.password
    return auth
  }

  /// The Authorization header that carries this registry's credentials.
  fileprivate func basicHeader() throws -> String {
    let credentials = try #require(credentials)
    return "Basic " + Data("\(credentials.user):\(credentials.password)".utf8).base64EncodedString()
  }
}

extension CrispInstance {
  /// Trusts `registry`'s CA for `address`: the fronts serve with its certificate.
  fileprivate func trust(_ registry: LocalRegistry, at address: String) throws {
    let dir = certsDir + "/" + address
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: try #require(registry.caFile), toPath: dir + "/ca.crt")
  }
}
