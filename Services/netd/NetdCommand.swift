import ArgumentParser
import CrispConfig
import CrispCore
import CrispDaemon
import CrispIPC
import Logging

/// netd: pod network namespaces and CNI plugins. It never touches images.
@main
struct NetdCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "netd",
    abstract: "crisp's network daemon: pod namespaces and CNI networking.",
    version: CrispVersion.string)

  @Option(help: "Configuration file (default \(CrispConfig.defaultPath)).")
  var config: String?

  @Option(help: "Log level, overriding the configuration.")
  var logLevel: String?

  func run() async throws {
    let signals = TerminationSignals()
    let (config, logger) = try DaemonStartup.load(daemon: .netd, configPath: self.config, logLevel: logLevel)
    let paths = config.paths
    let cniConfigs = CNIConfigDirectory(path: config.netd.cniConfigDir)

    let identity = DaemonIdentity(name: "netd")
    var router = IPCRouter()
    router.register(Health.self) { _ in
      switch cniConfigs.readiness() {
      case .ready:
        identity.health()
      case .notReady(let message):
        identity.health(ready: false, reason: "NetworkPluginNotReady", message: message)
      }
    }

    let address = CrispPaths.ipcAddress(paths.netdSocket)
    let server = try IPCServer(address: address, router: router, workers: config.ipc.serverWorkers, logger: logger)
    logger.info(
      "netd serving",
      metadata: ["socket": "\(address)", "cni_config_dir": "\(config.netd.cniConfigDir)"])
    await serveUntilTerminated(server, signals: signals, logger: logger)
  }
}
