import Foundation
import Synchronization

/// A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on a free
/// 127.0.0.1 port, with its config, storage and certificates in a temporary directory of its
/// own. `Tests/Fixtures/imagefixture.py` writes its config and pushes the test images (see
/// `Tests/Fixtures/README.md`). Instances are independent: tests may run several at once.
///
///     let registry = try await LocalRegistry.start(tls: true, auth: .basic)
///     defer { registry.stop() }
///     let images = try await registry.pushStandardImages()
///     let busybox = try images.image("crisp/busybox:latest")   // busybox.digest, .configDigest …
///     registry.reference("crisp/busybox:latest")                // "127.0.0.1:PORT/crisp/busybox:latest"
public final class LocalRegistry: Sendable {
  public enum Auth: Sendable {
    /// Anyone may pull and push.
    case none
    /// htpasswd (bcrypt) Basic auth: `credentials` is the one user.
    case basic
    /// Docker token auth: a token server (imagefixture.py token-server) hands out RS256 JWTs
    /// for `credentials` only; the registry challenges with `Bearer realm=…,service=…,scope=…`.
    case token
  }

  /// "127.0.0.1:PORT".
  public let address: String
  /// The registry's own temporary directory: config.yml, storage/, certificates, logs.
  public let directory: String
  /// The CA to trust, for a TLS registry (the token server uses the same certificate).
  public let caFile: String?
  /// For a TLS registry: a containers-certs.d(5) directory holding `127.0.0.1:PORT/ca.crt`.
  public let certsDirectory: String?
  /// The one user, for `.basic` and `.token`.
  public let credentials: (user: String, password: String)?
  public let auth: Auth
  private let processes: Mutex<[Process]>

  /// The registry's filesystem storage (`docker/registry/v2/…`).
  public var storage: String { directory + "/storage" }
  /// Where the registry's output (warnings, errors) goes.
  public var logFile: String { directory + "/registry.log" }
  public var url: String { (caFile == nil ? "http://" : "https://") + address }

  /// `name` ("repo:tag" or "repo@digest") on this registry.
  public func reference(_ name: String) -> String { address + "/" + name }

  /// imagefixture.py: beside this file's directory, or `CRISP_IMAGEFIXTURE`.
  public static let fixtureScript: String = {
    if let path = ProcessInfo.processInfo.environment["CRISP_IMAGEFIXTURE"] { return path }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("Fixtures/imagefixture.py").path
  }()
  public static let registryBinary = "/usr/bin/docker-registry"

  private init(
    address: String, directory: String, caFile: String?, certsDirectory: String?,
    credentials: (user: String, password: String)?, auth: Auth, processes: [Process]
  ) {
    self.address = address
    self.directory = directory
    self.caFile = caFile
    self.certsDirectory = certsDirectory
    self.credentials = credentials
    self.auth = auth
    self.processes = Mutex(processes)
  }

  deinit { stop() }

  /// Starts a registry (and, for `.token`, its token server) and waits until it answers.
  public static func start(tls: Bool = false, auth: Auth = .none) async throws -> LocalRegistry {
    let directory = try makeTemporaryDirectory(prefix: "crisp-registry")
    var started: [Process] = []
    do {
      let credentials: (user: String, password: String)? =
        auth == .none ? nil : ("crisp", String(UInt64.random(in: 1...UInt64.max), radix: 36))
      let userArgument = credentials.map { "\($0.user):\($0.password)" } ?? ""
      let caFile: String? = tls ? directory + "/ca.crt" : nil

      var tokenPort: Int?
      if auth == .token {
        // The token server takes a free port itself and says which; the registry's
        // config names it as the realm.
        let portFile = directory + "/token-server.port"
        var arguments = [
          fixtureScript, "token-server", "--dir", directory, "--port", "0", "--port-file", portFile,
          "--user", userArgument,
        ]
        if tls { arguments.append("--tls") }
        let server = try launch("/usr/bin/env", ["python3"] + arguments, log: directory + "/token-server.log")
        started.append(server)
        try await waitUntil("the token server listens", timeout: .seconds(60)) {
          guard server.isRunning else {
            throw LocalRegistryError("the token server exited: " + tail(directory + "/token-server.log"))
          }
          return FileManager.default.fileExists(atPath: portFile)
        }
        tokenPort = Int(readWholeFile(portFile).trimmingCharacters(in: .whitespacesAndNewlines))
      }

      // A free port can be taken by someone else before the registry binds it: then the
      // registry exits, or another server answers without our marker header; try another.
      var attempt = 0
      while true {
        attempt += 1
        let port = try freePort()
        let address = "127.0.0.1:\(port)"
        let marker = UUID().uuidString
        var arguments = ["registry-config", "--dir", directory, "--port", "\(port)", "--marker", marker]
        if tls { arguments.append("--tls") }
        switch auth {
        case .none: break
        case .basic: arguments += ["--htpasswd", userArgument]
        case .token: arguments += ["--token", "--token-port", "\(tokenPort ?? 0)"]
        }
        _ = try await runFixtureTool(arguments)
        let registry = try launch(
          registryBinary, ["serve", directory + "/config.yml"], log: directory + "/registry.log")
        if try await waitForRegistry(registry, address: address, caFile: caFile, marker: marker) {
          return LocalRegistry(
            address: address, directory: directory, caFile: caFile,
            certsDirectory: tls ? directory + "/certs.d" : nil, credentials: credentials, auth: auth,
            processes: started + [registry])
        }
        registry.killIfRunning()
        if attempt == 5 {
          throw LocalRegistryError("docker-registry did not start: " + tail(directory + "/registry.log"))
        }
      }
    } catch {
      for process in started { process.killIfRunning() }
      try? FileManager.default.removeItem(atPath: directory)
      throw error
    }
  }

  /// Builds and pushes the standard image set (Tests/Fixtures/README.md): about a second.
  public func pushStandardImages() async throws -> FixtureImages {
    try await push(["push-standard", "--storage", storage])
  }

  /// Builds (or takes from imagefixture.py's cache) and pushes `bench/big:latest`: real files
  /// of this machine in `layers` gzip layers of at least `minCompressedMB` MiB in all.
  /// Pushes the benchmark image; with `ociLayout`, also writes it there as an OCI
  /// image layout (for `umoci raw unpack`).
  public func pushBenchImage(
    minCompressedMB: Int = 150, layers: Int = 5, ociLayout: String? = nil
  ) async throws -> FixtureImages {
    var arguments = ["push-bench", "--min-compressed-mb", "\(minCompressedMB)", "--layers", "\(layers)"]
    if let ociLayout { arguments += ["--oci-layout", ociLayout] }
    return try await push(arguments)
  }

  /// Pushes `name`: one layer holding `binary` (a static pause executable) as `/pause`,
  /// its entrypoint: the sandbox image of peers that run an infra container per pod.
  public func pushPauseImage(binary: String, name: String = "crisp/pause:latest") async throws -> FixtureImages {
    try await push(["push-pause", "--binary", binary, "--name", name])
  }

  private func push(_ arguments: [String]) async throws -> FixtureImages {
    let output = directory + "/images-\(UUID().uuidString).json"
    var arguments = arguments + ["--registry", address, "--output", output]
    if let caFile { arguments += ["--cafile", caFile] }
    if let credentials { arguments += ["--user", "\(credentials.user):\(credentials.password)"] }
    _ = try await Self.runFixtureTool(arguments, timeout: 600)
    let data = try Data(contentsOf: URL(fileURLWithPath: output))
    try? FileManager.default.removeItem(atPath: output)
    return try JSONDecoder().decode(FixtureImages.self, from: data)
  }

  /// Kills the registry and the token server and removes `directory`. Idempotent.
  public func stop() {
    let running = processes.withLock { processes in
      let running = processes
      processes = []
      return running
    }
    for process in running { process.killIfRunning() }
    if FileManager.default.fileExists(atPath: directory) {
      try? FileManager.default.removeItem(atPath: directory)
    }
  }

  /// Runs imagefixture.py with `arguments` off the concurrency pool; its combined output.
  @discardableResult
  public static func runFixtureTool(_ arguments: [String], timeout: TimeInterval = 120) async throws -> String {
    let script = fixtureScript
    let (status, output) = try await offPool {
      try runProgram("/usr/bin/env", ["python3", script] + arguments, timeout: timeout)
    }
    guard status == 0 else {
      throw LocalRegistryError("imagefixture.py \(arguments.first ?? "") exited with \(status): \(output)")
    }
    return output
  }

  /// Whether the registry we started answers on `address`; false when it exited first.
  private static func waitForRegistry(_ registry: Process, address: String, caFile: String?, marker: String)
    async throws -> Bool
  {
    let caArguments = caFile.map { ["--cafile", $0] } ?? []
    let arguments =
      ["python3", fixtureScript, "wait", "--registry", address, "--expect-header", "X-Crisp-Registry=\(marker)"]
      + ["--timeout", "2"] + caArguments
    let deadline = ContinuousClock.now + .seconds(60)
    while ContinuousClock.now < deadline {
      guard registry.isRunning else { return false }
      let (status, _) = try await offPool { try runProgram("/usr/bin/env", arguments) }
      if status == 0 { return registry.isRunning }
    }
    return false
  }

  private static func launch(_ path: String, _ arguments: [String], log: String) throws -> Process {
    _ = FileManager.default.createFile(atPath: log, contents: nil)
    guard let handle = FileHandle(forWritingAtPath: log) else {
      throw LocalRegistryError("cannot open \(log)")
    }
    defer { try? handle.close() }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    return process
  }

  /// A port nobody listens on now: bind port 0 on 127.0.0.1, read it, close.
  private static func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    let named = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard bound == 0, named == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    return Int(UInt16(bigEndian: address.sin_port))
  }
}

/// Blocking work (waiting for a child process) on a Dispatch thread, not the concurrency pool.
private func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
  try await withCheckedThrowingContinuation { continuation in
    DispatchQueue.global().async {
      continuation.resume(with: Result { try work() })
    }
  }
}

private func tail(_ path: String, lines: Int = 20) -> String {
  readWholeFile(path).split(separator: "\n").suffix(lines).joined(separator: "\n")
}

public struct LocalRegistryError: Error, CustomStringConvertible {
  public let description: String
  init(_ description: String) { self.description = description }
}

/// What `imagefixture.py push-standard` (or `push-bench`) printed: each image name
/// ("crisp/busybox:latest") and what it was pushed as.
public struct FixtureImages: Decodable, Sendable {
  public let images: [String: FixtureImage]

  public init(from decoder: any Decoder) throws {
    images = try decoder.singleValueContainer().decode([String: FixtureImage].self)
  }

  public subscript(name: String) -> FixtureImage? { images[name] }

  /// The image called `name`; throws when the set has no such image.
  public func image(_ name: String) throws -> FixtureImage {
    guard let image = images[name] else {
      throw LocalRegistryError("no fixture image \(name); there are \(names.joined(separator: ", "))")
    }
    return image
  }

  public var names: [String] { images.keys.sorted() }
}

public struct FixturePlatform: Decodable, Sendable, Equatable {
  public let architecture: String
  public let os: String
  public let variant: String?
}

/// One pushed image, an image manifest or an index. For an index, `configDigest`, `layers`,
/// `diffIDs` are those of its linux/amd64 entry (what a pull on this machine resolves to), or
/// nil/empty when it has none; `manifests` lists every entry.
public struct FixtureImage: Decodable, Sendable, Equatable {
  public let repository: String
  public let tag: String
  /// Of the manifest or index the tag points at.
  public let mediaType: String
  /// The manifest (or index) digest: `repository@digest` pulls it.
  public let digest: String
  public let size: Int
  /// The config digest, i.e. the image ID.
  public let configDigest: String?
  public let platform: FixturePlatform?
  /// Compressed layer digests, as in the manifest.
  public let layers: [String]
  public let layerMediaTypes: [String]
  public let layerSizes: [Int64]
  /// Uncompressed layer digests, as in the config's rootfs.
  public let diffIDs: [String]
  /// An index's entries, in order; empty for an image manifest.
  public let manifests: [FixtureManifest]
  /// A pull (or unpack) of it must fail; `failure` says why.
  public let expectFailure: Bool
  public let failure: String?
  /// For the crisp/evil images: the host path that a pull must leave untouched.
  public let escapePath: String?

  public var name: String { repository + ":" + tag }
  /// The image ID (config digest).
  public var imageID: String? { configDigest }
}

/// An entry of an index: one platform's image manifest.
public struct FixtureManifest: Decodable, Sendable, Equatable {
  public let mediaType: String
  public let digest: String
  public let size: Int
  public let configDigest: String
  public let platform: FixturePlatform
  public let layers: [String]
  public let layerMediaTypes: [String]
  public let layerSizes: [Int64]
  public let diffIDs: [String]
}
