import ArgumentParser
import CrispConfig
import CrispCore
import CrispSingletonDaemon
import NetdKit

/// netd: pod network namespaces and CNI plugins. It never touches images.
@main
struct NetdCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "netd",
    abstract: "crisp's network daemon: pod namespaces and CNI networking.",
    version: CrispVersion.string)

  @OptionGroup var options: DaemonOptions

  func run() async throws {
    try await SingletonDaemon.run(.netd, options: options) { config, logger in
      let handlers = NetworkHandlers(config: config, logger: logger)
      return SingletonDaemon.Service(register: { handlers.register(in: &$0) })
    }
  }
}
