import CrispCore
import CrispIPC
import CrispOCI
import Crypto
import FoundationEssentials
import Glibc
import Logging

/// What a pull is allowed to do, from imaged's configuration.
public struct PullSettings: Sendable {
  public var maxConcurrentDownloads: Int
  public var progressTimeoutMs: Int64
  public var platform: Platform
  public var limits: UnpackLimits

  public init(
    maxConcurrentDownloads: Int = 3, progressTimeoutMs: Int64 = 60_000, platform: Platform = .host,
    limits: UnpackLimits = UnpackLimits()
  ) {
    self.maxConcurrentDownloads = maxConcurrentDownloads
    self.progressTimeoutMs = progressTimeoutMs
    self.platform = platform
    self.limits = limits
  }
}

extension Platform {
  /// linux/<this machine's architecture in Go's names>.
  public static var host: Platform {
    var name = utsname()
    uname(&name)
    let machine = withUnsafeBytes(of: name.machine) {
      String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self))
    }
    let architecture: String =
      switch machine {
      case "x86_64": "amd64"
      case "aarch64": "arm64"
      case "armv7l": "arm"
      case "s390x", "ppc64le", "riscv64": machine
      default: machine
      }
    return Platform(architecture: architecture, os: "linux", variant: machine == "armv7l" ? "v7" : nil)
  }
}

/// Pulls images: resolves the name (short names, registries.conf mirrors), fetches the
/// manifest (picking this platform from an index) and config, fetches the missing
/// layers in parallel through `LayerFetcher`, and records the image. Concurrent pulls
/// of one reference share one pull, and concurrent pulls of images sharing a layer
/// share that layer's download.
public actor ImagePuller {
  private let client: RegistryClient
  private let registries: RegistriesConfig
  private let authFile: AuthFile
  private let paths: ImageStorePaths
  private let database: ImageDatabase
  private let layerStore: LayerStore
  private let settings: PullSettings
  private let logger: Logger
  /// Pulls and layer downloads in flight, with how many callers wait for each: shared
  /// work is cancelled only when its last waiter goes away.
  private var pulls: [String: (task: Task<ImageRecord, any Error>, waiters: Int)] = [:]
  private var layers: [String: (task: Task<LayerRecord, any Error>, progress: LayerProgress, waiters: Int)] = [:]

  /// Images with more layers are refused (overlayfs and the kernel's mount options
  /// could not stack them anyway).
  static let maxLayers = 128

  public init(
    client: RegistryClient, registries: RegistriesConfig, authFile: AuthFile, store: ImageStore,
    settings: PullSettings, logger: Logger
  ) {
    // A stage that stops reading its pipe must not kill the daemon.
    signal(SIGPIPE, SIG_IGN)
    self.client = client
    self.registries = registries
    self.authFile = authFile
    self.paths = store.paths
    self.database = store.database
    self.layerStore = store.layers
    self.settings = settings
    self.logger = logger
  }

  /// Pulls `image` (anything `RegistriesConfig.qualify` accepts). Credentials from the
  /// request win over the auth file, for the registry they are meant for only (see
  /// `requestCredentialsApply`); mirrors get their own from the auth file.
  public func pull(
    _ image: String, credentials: RegistryCredentials?, serverAddress: String = ""
  ) async throws(CrispError) -> ImageRecord {
    let candidates: [ImageReference]
    do {
      candidates = try registries.qualify(image)
    } catch {
      throw error.crispError
    }
    let isShortName = ImageReference.isShortName(image)
    var failures: [CrispError] = []
    for reference in candidates {
      do throws(CrispError) {
        let applies = Self.requestCredentialsApply(
          serverAddress: serverAddress, isShortName: isShortName, registry: reference.registry)
        return try await pullShared(reference, credentials: applies ? credentials : nil)
      } catch {
        // A short name tries the next search registry; anything else was the only try.
        failures.append(error)
        if candidates.count == 1 || error.code == .invalidArgument { throw error }
      }
    }
    let last = failures.last ?? CrispError(.notFound, "image \"\(image)\" not found")
    throw CrispError(
      last.code,
      "image \"\(image)\" could not be pulled from any search registry: "
        + zip(candidates, failures).map { "\($0.0): \($0.1.message)" }.joined(separator: "; "))
  }

  private func pullShared(
    _ reference: ImageReference, credentials: RegistryCredentials?
  ) async throws(CrispError) -> ImageRecord {
    // Callers with different credentials never share a pull.
    let key = reference.description + " " + (credentials.map { Self.fingerprint($0) } ?? "")
    let task: Task<ImageRecord, any Error>
    if let running = pulls[key] {
      task = running.task
      pulls[key]!.waiters += 1
    } else {
      task = Task { try await self.pullWithWatchdog(reference, credentials: credentials) }
      pulls[key] = (task, 1)
    }
    defer { leavePull(key, task) }
    do {
      return try await withTaskCancellationHandler {
        try await task.value
      } onCancel: {
        Task { await self.abandonPull(key, task) }
      }
    } catch let error as CrispError {
      throw error
    } catch {
      throw CrispError(.internal, "pull of \(reference) failed: \(error)")
    }
  }

  private func leavePull(_ key: String, _ task: Task<ImageRecord, any Error>) {
    guard let entry = pulls[key], entry.task == task else { return }
    if entry.waiters <= 1 { pulls[key] = nil } else { pulls[key]!.waiters -= 1 }
  }

  /// A waiter went away: the shared pull stops only when nobody else waits for it.
  private func abandonPull(_ key: String, _ task: Task<ImageRecord, any Error>) {
    if let entry = pulls[key], entry.task == task, entry.waiters > 1 { return }
    task.cancel()
  }

  /// Whether a PullImage request's credentials may go to `registry`: the one
  /// server_address names, or without one the registry a fully qualified image names.
  /// The registries a short name is tried on are guesses, and one of them must not get
  /// the credentials of another.
  static func requestCredentialsApply(serverAddress: String, isShortName: Bool, registry: String) -> Bool {
    serverAddress.isEmpty ? !isShortName : sameRegistry(serverAddress, registry)
  }

  static func sameRegistry(_ serverAddress: String, _ registry: String) -> Bool {
    var host = serverAddress
    for scheme in ["https://", "http://"] where host.hasPrefix(scheme) { host = String(host.dropFirst(scheme.count)) }
    host = String(host.prefix { $0 != "/" })
    let aliases = ["index.docker.io", "registry-1.docker.io", "docker.io"]
    return host == registry || (aliases.contains(host) && registry == "docker.io")
  }

  /// Distinguishes credentials without keeping them in a key in the clear.
  static func fingerprint(_ credentials: RegistryCredentials) -> String {
    var hasher = SHA256()
    hasher.update(data: Array(String(reflecting: credentials).utf8))
    switch credentials {
    case .basic(let user, let password): hasher.update(data: Array((user + "\u{0}" + password).utf8))
    case .identityToken(let token), .registryToken(let token): hasher.update(data: Array(token.utf8))
    }
    return Digest.hexString(hasher.finalize().prefix(8))
  }

  private func pullWithWatchdog(
    _ reference: ImageReference, credentials: RegistryCredentials?
  ) async throws -> ImageRecord {
    let progress = PullProgress()
    let timeout = settings.progressTimeoutMs
    let started = MonotonicClock.milliseconds()
    return try await withThrowingTaskGroup(of: ImageRecord?.self) { group in
      group.addTask { try await self.pullOne(reference, credentials: credentials, progress: progress) }
      group.addTask {
        await progress.waitUntilStalled(timeoutMs: timeout)
        if Task.isCancelled { return nil }
        throw CrispError(
          .deadlineExceeded, "pull of \(reference) made no progress for \(timeout) ms (pull_progress_timeout_ms)")
      }
      defer { group.cancelAll() }
      while let result = try await group.next() {
        if let image = result {
          self.logger.info(
            "image pulled",
            metadata: [
              "image": "\(reference)", "id": "\(image.id)", "bytes": "\(progress.bytes)",
              "ms": "\(MonotonicClock.milliseconds() - started)",
            ])
          return image
        }
      }
      throw CrispError(.internal, "pull of \(reference) ended without a result")
    }
  }

  private func pullOne(
    _ reference: ImageReference, credentials: RegistryCredentials?, progress: PullProgress
  ) async throws(CrispError) -> ImageRecord {
    let sources: [PullSource]
    do {
      sources = try registries.pullSources(for: reference)
    } catch {
      throw error.crispError
    }
    // The manifest decides the endpoint: the first mirror that has it serves the blobs too.
    var failures: [String] = []
    for source in sources {
      // A mirror is another party than the registry the request's credentials are for.
      let fromAuthFile = authFile.credentials(
        registry: source.reference.registry, repository: source.reference.repository)
      let creds = source.isMirror ? fromAuthFile : credentials ?? fromAuthFile
      let top: RegistryClient.FetchedManifest
      do throws(CrispError) {
        top = try await client.manifest(
          source, reference: source.reference.digest ?? source.reference.tag ?? "latest", credentials: creds)
      } catch {
        failures.append("\(source.reference.registry): \(error.message)")
        if source == sources.last {
          throw CrispError(
            error.code,
            sources.count == 1 ? error.message : "cannot pull \(reference): " + failures.joined(separator: "; "))
        }
        logger.info("mirror failed, trying the next source", metadata: ["image": "\(reference)", "error": "\(error)"])
        continue
      }
      progress.advance(bytes: top.bytes.count)
      return try await pullFrom(source, reference: reference, top: top, credentials: creds, progress: progress)
    }
    throw CrispError(.notFound, "no source to pull \(reference) from")
  }

  private func pullFrom(
    _ source: PullSource, reference: ImageReference, top: RegistryClient.FetchedManifest,
    credentials: RegistryCredentials?, progress: PullProgress
  ) async throws(CrispError) -> ImageRecord {
    var documents: [(digest: String, bytes: [UInt8])] = [(top.digest, top.bytes)]
    var manifestBytes = top.bytes
    var manifestDigest = top.digest
    if MediaType.isIndex(top.mediaType) {
      let index: ImageIndex = try decode(top.bytes, what: "image index of \(reference)")
      guard let chosen = index.manifest(for: settings.platform) else {
        let offered = index.manifests.compactMap { $0.platform }.map {
          "\($0.os)/\($0.architecture)" + (($0.variant ?? "").isEmpty ? "" : "/" + $0.variant!)
        }
        throw CrispError(
          .notFound,
          "image \(reference) has no manifest for \(settings.platform.os)/\(settings.platform.architecture); "
            + "it offers \(offered.joined(separator: ", "))")
      }
      guard Digest(chosen.digest) != nil else {
        throw CrispError(.invalidArgument, "image index of \(reference) names a manifest by a non-sha256 digest")
      }
      let child = try await client.manifest(source, reference: chosen.digest, credentials: credentials)
      guard MediaType.isManifest(child.mediaType) else {
        throw CrispError(
          .invalidArgument, "image \(reference): \(chosen.digest) is a \(child.mediaType), not a manifest")
      }
      manifestBytes = child.bytes
      manifestDigest = child.digest
      documents.append((child.digest, child.bytes))
    } else if !MediaType.isManifest(top.mediaType) {
      throw CrispError(.invalidArgument, "image \(reference) has an unsupported manifest type \(top.mediaType)")
    }
    let manifest: ImageManifest = try decode(manifestBytes, what: "manifest \(manifestDigest) of \(reference)")
    guard manifest.schemaVersion == 2 else {
      throw CrispError(.invalidArgument, "manifest of \(reference) has schemaVersion \(manifest.schemaVersion), not 2")
    }
    guard manifest.config.mediaType == MediaType.ociConfig || manifest.config.mediaType == MediaType.dockerConfig else {
      throw CrispError(
        .invalidArgument, "image \(reference) is not a container image (config type \(manifest.config.mediaType))")
    }
    for layer in manifest.layers where !MediaType.isLayer(layer.mediaType) {
      throw CrispError(.invalidArgument, "image \(reference) has a layer of unsupported type \(layer.mediaType)")
    }
    guard Digest(manifest.config.digest) != nil, manifest.layers.allSatisfy({ Digest($0.digest) != nil }) else {
      throw CrispError(.invalidArgument, "manifest of \(reference) names a digest that is not sha256")
    }
    guard manifest.layers.count <= Self.maxLayers else {
      throw CrispError(
        .invalidArgument,
        "image \(reference) has \(manifest.layers.count) layers; crisp stacks at most \(Self.maxLayers)")
    }
    var size = UInt64(0)
    for descriptor in [manifest.config] + manifest.layers {
      guard descriptor.size >= 0 else {
        throw CrispError(.invalidArgument, "manifest of \(reference) gives \(descriptor.digest) a negative size")
      }
      let (sum, overflow) = size.addingReportingOverflow(UInt64(descriptor.size))
      guard !overflow else { throw CrispError(.invalidArgument, "manifest of \(reference) has impossible sizes") }
      size = sum
    }
    let configBytes = try await client.smallBlob(source, descriptor: manifest.config, credentials: credentials)
    progress.advance(bytes: configBytes.count)
    let config: ImageConfigFile = try decode(configBytes, what: "config \(manifest.config.digest) of \(reference)")
    let diffIDs = config.rootfs.diffIDs
    guard diffIDs.count == manifest.layers.count, diffIDs.allSatisfy({ Digest($0) != nil }) else {
      throw CrispError(
        .invalidArgument,
        "image \(reference): its config lists \(diffIDs.count) diff IDs for \(manifest.layers.count) layers")
    }
    let chain = chainIDs(diffIDs: diffIDs)
    // Pinned until the image is recorded: removal of another image leaves them alone.
    let missing = try layerStore.pinAndFindMissing(chain)
    var pinned = true
    defer { if pinned { layerStore.unpin(chain) } }
    var jobs: [LayerJob] = []
    let budget = ImageByteBudget(limit: settings.limits.maxImageBytes)
    for (index, layer) in manifest.layers.enumerated() where missing.contains(chain[index]) {
      jobs.append(
        LayerJob(
          source: source, descriptor: layer, diffID: diffIDs[index], chainID: chain[index], credentials: credentials,
          limits: settings.limits, budget: budget))
    }
    do {
      try await fetchLayers(jobs, progress: progress)
    } catch {
      // The layers this pull stored before another failed belong to no image: gone now,
      // not at the next removal (a refused image leaves nothing behind).
      layerStore.unpin(chain)
      pinned = false
      try? layerStore.collectUnused()
      throw error
    }

    for document in documents + [(manifest.config.digest, configBytes)] {
      let hex = String(document.digest.dropFirst(7))
      if !Files.exists(paths.blob(hex), followingLinks: false) {
        try Files.writeAtomically(paths.blob(hex), document.bytes, mode: 0o600, temporaryDirectory: paths.tempDir)
      }
    }
    let record = ImageRecord(
      id: manifest.config.digest, manifestDigest: manifestDigest,
      configJSON: String(decoding: configBytes, as: UTF8.self), size: size, repoTags: [], repoDigests: [],
      chainIDs: chain)
    // Names are the user's reference, not the mirror it came from.
    let tags = reference.tag != nil ? [reference.name + ":" + reference.tag!] : []
    try database.recordImage(record, names: tags, digests: [reference.name + "@" + top.digest])
    // A tag that moved here may have left another image, and its layers, unused.
    try layerStore.collectUnused()
    return try database.image(id: record.id) ?? record
  }

  /// Fetches layers, at most `maxConcurrentDownloads` at once; a layer another pull is
  /// already fetching is waited for, not fetched twice.
  private func fetchLayers(_ jobs: [LayerJob], progress: PullProgress) async throws(CrispError) {
    let fetcher = LayerFetcher(client: client, layers: layerStore, logger: logger)
    do {
      try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        func startNext() {
          guard next < jobs.count else { return }
          let job = jobs[next]
          next += 1
          let task = self.layerTask(job, fetcher: fetcher, progress: progress)
          group.addTask {
            defer { Task { await self.leaveLayer(job.chainID, task) } }
            _ = try await withTaskCancellationHandler {
              try await task.value
            } onCancel: {
              Task { await self.abandonLayer(job.chainID, task) }
            }
          }
        }
        for _ in 0..<min(settings.maxConcurrentDownloads, jobs.count) { startNext() }
        while try await group.next() != nil { startNext() }
      }
    } catch let error as CrispError {
      throw error
    } catch is CancellationError {
      throw CrispError(.deadlineExceeded, "layer download was cancelled")
    } catch {
      throw CrispError(.internal, "layer download failed: \(error)")
    }
  }

  private func layerTask(_ job: LayerJob, fetcher: LayerFetcher, progress: PullProgress) -> Task<LayerRecord, any Error>
  {
    if let running = layers[job.chainID] {
      running.progress.join(progress)
      layers[job.chainID]!.waiters += 1
      return running.task
    }
    let layerProgress = LayerProgress(progress)
    let task = Task<LayerRecord, any Error> { try await fetcher.fetch(job, progress: layerProgress) }
    layers[job.chainID] = (task, layerProgress, 1)
    return task
  }

  private func leaveLayer(_ chainID: String, _ task: Task<LayerRecord, any Error>) {
    guard let entry = layers[chainID], entry.task == task else { return }
    if entry.waiters <= 1 { layers[chainID] = nil } else { layers[chainID]!.waiters -= 1 }
  }

  private func abandonLayer(_ chainID: String, _ task: Task<LayerRecord, any Error>) {
    if let entry = layers[chainID], entry.task == task, entry.waiters > 1 { return }
    task.cancel()
  }

  private func decode<T: Decodable>(_ bytes: [UInt8], what: String) throws(CrispError) -> T {
    do {
      return try JSONDecoder().decode(T.self, from: Data(bytes))
    } catch {
      throw CrispError(.invalidArgument, "\(what) is not valid: \(error)")
    }
  }
}
