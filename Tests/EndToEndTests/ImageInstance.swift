import CRIAPI
import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// CRI image calls of one crisp instance, and what its image store holds on disk.
extension CrispInstance {
  /// registries.conf lines that let imaged pull from a test registry over plain HTTP.
  static func insecureRegistry(_ address: String) -> String {
    """
    [[registry]]
    location = "\(address)"
    insecure = true

    """
  }

  func writeRegistriesConf(_ text: String) throws {
    try text.write(toFile: registriesConf, atomically: true, encoding: .utf8)
  }

  /// Trusts a test registry's CA the way an operator would: certs.d/<host:port>/ca.crt.
  func trustRegistryCA(_ registry: LocalRegistry) throws {
    let dir = certsDir + "/" + registry.address
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: try #require(registry.caFile), toPath: dir + "/ca.crt")
  }

  @discardableResult
  func pull(_ image: String, auth: Runtime_V1_AuthConfig? = nil) async throws -> String {
    var request = Runtime_V1_PullImageRequest()
    request.image.image = image
    if let auth { request.auth = auth }
    return try await withImages { try await $0.pullImage(request) }.imageRef
  }

  func imageStatus(_ image: String, verbose: Bool = false) async throws -> Runtime_V1_ImageStatusResponse {
    var request = Runtime_V1_ImageStatusRequest()
    request.image.image = image
    request.verbose = verbose
    return try await withImages { try await $0.imageStatus(request) }
  }

  func listImages(filter: String = "") async throws -> [Runtime_V1_Image] {
    var request = Runtime_V1_ListImagesRequest()
    if !filter.isEmpty { request.filter.image.image = filter }
    return try await withImages { try await $0.listImages(request) }.images
  }

  func removeImage(_ image: String) async throws {
    var request = Runtime_V1_RemoveImageRequest()
    request.image.image = image
    _ = try await withImages { try await $0.removeImage(request) }
  }

  /// A direct IPC client to imaged, for the snapshot calls only cri-frontd makes.
  func imagedClient() throws -> IPCClient {
    try IPCClient(peer: "imaged", address: CrispPaths.ipcAddress(paths.imagedSocket), defaultTimeoutMs: 10_000)
  }

  var imagesDir: String { paths.imagesDir }

  /// Unpacked layer directories in the store.
  func layerDirectories() -> [String] {
    (try? FileManager.default.contentsOfDirectory(atPath: imagesDir + "/layers")) ?? []
  }

  /// What an interrupted or refused pull must not leave behind.
  func expectNoPartialPull(sourceLocation: SourceLocation = #_sourceLocation) {
    let temp = (try? FileManager.default.contentsOfDirectory(atPath: imagesDir + "/tmp")) ?? []
    #expect(temp.isEmpty, "temporary files left: \(temp)", sourceLocation: sourceLocation)
  }
}

/// Runs `body` with a started local registry holding the standard test images, and
/// stops it afterwards, also when `body` throws.
func withRegistry(
  tls: Bool = false, auth: LocalRegistry.Auth = .none, _ body: (LocalRegistry, FixtureImages) async throws -> Void
) async throws {
  let registry = try await LocalRegistry.start(tls: tls, auth: auth)
  do {
    let images = try await registry.pushStandardImages()
    try await body(registry, images)
  } catch {
    registry.stop()
    throw error
  }
  registry.stop()
}
