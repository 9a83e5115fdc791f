import ArgumentParser
import CrispConfig
import CrispCore
import CrispSingletonDaemon
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

  @OptionGroup var options: DaemonOptions

  func run() async throws {
    try await FrontDaemon.run(configPath: options.config, logLevel: options.logLevel, testHooks: options.testHooks)
  }
}

struct PrintConfig: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "config",
    abstract: "Print the configuration as commented TOML: the defaults, or --config's file merged over them.")

  @Option(help: "A configuration file to read; without it the defaults are printed.")
  var config: String?

  @Flag(help: "Print the README's table of options (key, default, meaning) instead.")
  var markdown = false

  func run() throws {
    if markdown {
      print(CrispConfig.markdownTable(), terminator: "")
      return
    }
    let loaded: CrispConfig
    do {
      loaded = config == nil ? CrispConfig() : try CrispConfig.load(path: config)
    } catch {
      throw ValidationError("invalid configuration: \(error)")
    }
    print(loaded.renderTOML(), terminator: "")
  }
}
