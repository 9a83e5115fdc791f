import ArgumentParser
import CrispConfig
import CrispCore
import CrispDaemon
import FrontdKit

/// cri-frontd: the only process kubelet talks to.
@main
struct FrontdCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cri-frontd",
    abstract: "crisp's CRI server: RuntimeService and ImageService for kubelet.",
    version: CrispVersion.string,
    subcommands: [Serve.self, PrintConfig.self],
    defaultSubcommand: Serve.self)
}

struct Serve: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "serve", abstract: "Serve the CRI on its socket (the default).")

  @Option(help: "Configuration file (default \(CrispConfig.defaultPath)).")
  var config: String?

  @Option(help: "Log level, overriding the configuration.")
  var logLevel: String?

  // Tests only: serve debug.syscall on frontd's IPC socket (TestHooks).
  @Flag(name: .customLong(TestHooks.flag), help: .hidden)
  var testHooks = false

  func run() async throws {
    try await FrontDaemon.run(configPath: config, logLevel: logLevel, testHooks: testHooks)
  }
}

struct PrintConfig: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "config",
    abstract: "Print the configuration as commented TOML: the defaults, or --config's file merged over them.")

  @Option(help: "A configuration file to read; without it the defaults are printed.")
  var config: String?

  func run() throws {
    let loaded: CrispConfig
    do {
      loaded = config == nil ? CrispConfig() : try CrispConfig.load(path: config)
    } catch {
      throw ValidationError("invalid configuration: \(error)")
    }
    print(loaded.renderTOML(), terminator: "")
  }
}
