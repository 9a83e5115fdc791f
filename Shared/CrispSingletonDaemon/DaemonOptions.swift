import ArgumentParser
import CrispConfig
import CrispDaemon

/// The command line every singleton daemon takes (cri-frontd's `serve`, imaged, netd).
public struct DaemonOptions: ParsableArguments {
  @Option(help: "Configuration file (default \(CrispConfig.defaultPath)).")
  public var config: String?

  @Option(help: "Log level, overriding the configuration.")
  public var logLevel: String?

  // Tests only: serve debug.syscall on the daemon's IPC socket (TestHooks).
  @Flag(name: .customLong(TestHooks.flag), help: .hidden)
  public var testHooks = false

  public init() {}
}
