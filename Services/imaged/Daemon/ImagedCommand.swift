import ArgumentParser
import CrispConfig
import CrispCore
import CrispDaemon
import CrispIPC
import CrispLinux
import CrispTracing
import ImagedKit
import Logging

/// imaged: pulls, stores and unpacks images and prepares container root filesystems.
/// It never touches network namespaces, pods or processes.
@main
struct ImagedCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "imaged",
    abstract: "crisp's image daemon: registry pulls, content store, layer unpacking.",
    version: CrispVersion.string)

  @Option(help: "Configuration file (default \(CrispConfig.defaultPath)).")
  var config: String?

  @Option(help: "Log level, overriding the configuration.")
  var logLevel: String?

  // Tests only: serve debug.syscall (TestHooks).
  @Flag(name: .customLong(TestHooks.flag), help: .hidden)
  var testHooks = false

  func run() async throws {
    let signals = TerminationSignals()
    let (config, logger) = try DaemonStartup.load(daemon: .imaged, configPath: self.config, logLevel: logLevel)
    let caps = try DaemonPrivileges.restrictCapabilities(to: CrispConfig.keptCapabilities(config.imaged.capabilities))
    // After the capability drop (a re-execution: the exporter's threads come after it).
    let tracing = try CrispTracing.start(config.tracing, daemon: .imaged, logger: logger)
    let paths = config.paths
    try makePrivateDirectory(paths.imagesDir)

    let registries = try loadOrExit(logger) { () throws(RegistriesConfigError) in
      try RegistriesConfig.load(path: config.imaged.registriesConf)
    }
    let authFile = try loadOrExit(logger) { () throws(AuthFileError) in try AuthFile.load(path: config.imaged.authFile)
    }
    let store = try ImageStore(
      paths: ImageStorePaths(base: paths.imagesDir), registries: registries, pinnedImages: config.imaged.pinnedImages,
      logger: logger)
    try store.cleanUpAfterRestart()
    let client = RegistryClient(certsDir: config.imaged.certsDir, logger: logger)
    let puller = ImagePuller(
      client: client, registries: registries, authFile: authFile, store: store,
      settings: PullSettings(
        maxConcurrentDownloads: config.imaged.maxConcurrentDownloads,
        progressTimeoutMs: Int64(config.imaged.pullProgressTimeoutMs),
        limits: UnpackLimits(
          maxLayerBytes: Int64(config.imaged.maxLayerBytes), maxImageBytes: Int64(config.imaged.maxImageBytes),
          maxLayerEntries: config.imaged.maxLayerEntries, maxPathDepth: config.imaged.maxPathDepth,
          minFreeBytes: Int64(config.imaged.minFreeBytes))),
      logger: logger)
    let pulls = PullGate(maxRunning: config.imaged.maxConcurrentPulls, maxWaiting: config.imaged.maxQueuedPulls)
    let handlers = ImageHandlers(store: store, puller: puller, pulls: pulls, logger: logger)

    let identity = DaemonIdentity(name: "imaged")
    var router = IPCRouter()
    router.register(Health.self) { _ in identity.health() }
    handlers.register(in: &router)
    if testHooks { TestHooks.register(in: &router, logger: logger) }

    let address = CrispPaths.ipcAddress(paths.imagedSocket)
    let server = try IPCServer(address: address, router: router, workers: config.ipc.serverWorkers, logger: logger)
    try confine(seccomp: config.seccomp, action: config.seccompAction, caps: caps, profile: .imaged, logger: logger)
    logger.info("imaged serving", metadata: ["socket": "\(address)", "version": "\(CrispVersion.string)"])
    await CrispTracing.exporting(tracing) { await serveUntilTerminated(server, signals: signals, logger: logger) }
    await client.shutdown()
  }

  /// A configuration file imaged cannot read stops it with the file's own message.
  private func loadOrExit<T, E: Error>(_ logger: Logger, _ body: () throws(E) -> T) throws -> T {
    do {
      return try body()
    } catch {
      logger.critical("\(error)")
      throw ExitCode.failure
    }
  }
}
