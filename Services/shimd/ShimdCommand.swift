import ArgumentParser
import CrispCore
import CrispDaemon
import CrispIPC
import Logging

/// shimd: the monitor of one container. frontd starts one per container with the
/// container's ID; it depends on no other daemon being up. It links only
/// Foundation-free libraries: a node runs one per container.
@main
struct ShimdCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "shimd",
    abstract: "crisp's per-container monitor.",
    version: CrispVersion.string)

  @Option(help: "The container's ID (64 hex characters).")
  var id: String

  @Option(help: "crisp's run_root; the shim serves on <run-root>/shims/<id>.ipc.")
  var runRoot: String = "/run/crisp"

  @Option(help: "Log level.")
  var logLevel: String = "info"

  func validate() throws {
    guard id.count == 64, id.allSatisfy(\.isHexDigit), id == id.lowercased() else {
      throw ValidationError("--id must be 64 lower-case hex characters, got \"\(id)\"")
    }
    guard runRoot.hasPrefix("/") else { throw ValidationError("--run-root must be an absolute path") }
    guard Logger.Level(configName: logLevel) != nil else {
      throw ValidationError("--log-level: unknown level \"\(logLevel)\"")
    }
  }

  func run() async throws {
    let signals = TerminationSignals()
    var logger = CrispLogging.bootstrap(daemon: "shimd", level: Logger.Level(configName: logLevel) ?? .info)
    logger[metadataKey: "container"] = "\(id.prefix(12))"
    let paths = CrispPaths(root: "", runRoot: runRoot)
    try makeDirectories(paths.shimsDir, mode: 0o700)

    let identity = DaemonIdentity(name: "shimd")
    var router = IPCRouter()
    router.register(Health.self) { _ in identity.health() }

    let address = CrispPaths.ipcAddress(paths.shimSocket(containerID: id))
    // A shim serves one client (frontd) at a time, so a few workers are plenty.
    let server = try IPCServer(address: address, router: router, workers: 4, logger: logger)
    logger.info("shimd serving", metadata: ["socket": "\(address)"])
    await serveUntilTerminated(server, signals: signals, logger: logger)
  }
}
