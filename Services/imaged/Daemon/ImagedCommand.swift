import ArgumentParser
import CrispConfig
import CrispCore
import CrispDaemon
import CrispIPC
import CrispLinux
import CrispSingletonDaemon
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

  @OptionGroup var options: DaemonOptions

  func run() async throws {
    try await SingletonDaemon.run(.imaged, options: options) { config, logger in
      try makePrivateDirectory(config.paths.imagesDir)
      let registries = try loadOrExit(logger) { () throws(RegistriesConfigError) in
        try RegistriesConfig.load(path: config.imaged.registriesConf)
      }
      let authFile = try loadOrExit(logger) { () throws(AuthFileError) in
        try AuthFile.load(path: config.imaged.authFile)
      }
      let store = try ImageStore(
        paths: ImageStorePaths(base: config.paths.imagesDir), registries: registries,
        pinnedImages: config.imaged.pinnedImages, logger: logger)
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
      return SingletonDaemon.Service(
        register: { router in
          router.register(Health.self) { _ in identity.health() }
          handlers.register(in: &router)
        },
        stopped: { await client.shutdown() })
    }
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
