import CrispCore
import CrispDaemon
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// The first steps of every singleton daemon: read the config (refusing a bad file
/// with its path, key and reason), set up logging, create the roots.
public enum DaemonStartup {
  nonisolated(unsafe) private static var reload: ReloadSignal?

  /// `fixedLevel` (from --log-level) stays over the file's; SIGHUP is handled either
  /// way, since its default action would end the daemon.
  private static func watchForReload(
    daemon: CrispConfig.Daemon, configPath: String?, fixedLevel: Logger.Level?, logger: Logger
  ) {
    reload = ReloadSignal {
      do {
        let fresh = try CrispConfig.load(path: configPath)
        CrispLogging.level = fixedLevel ?? fresh.logLevel(for: daemon)
        logger.notice(
          "configuration reloaded",
          metadata: ["log_level": "\(CrispLogging.level)\(fixedLevel == nil ? "" : " (--log-level)")"])
      } catch {
        logger.error("configuration not reloaded: \(error)")
      }
    }
  }

  public static func load(
    daemon: CrispConfig.Daemon, configPath: String?, logLevel: String?
  ) throws(CrispError) -> (CrispConfig, Logger) {
    let config: CrispConfig
    do {
      config = try CrispConfig.load(path: configPath)
    } catch {
      throw CrispError(.invalidArgument, "invalid configuration: \(error)")
    }
    var fixedLevel: Logger.Level? = nil
    if let logLevel {
      guard let parsed = Logger.Level(configName: logLevel) else {
        throw CrispError(.invalidArgument, "--log-level: unknown level \"\(logLevel)\"")
      }
      fixedLevel = parsed
    }
    let logger = CrispLogging.bootstrap(daemon: daemon.rawValue, level: fixedLevel ?? config.logLevel(for: daemon))
    // An explicit --log-level stays; otherwise SIGHUP applies the file's level.
    watchForReload(daemon: daemon, configPath: configPath, fixedLevel: fixedLevel, logger: logger)
    try makeDirectories(config.runRoot, mode: 0o711)
    try makeDirectories(config.root, mode: 0o711)
    return (config, logger)
  }
}
