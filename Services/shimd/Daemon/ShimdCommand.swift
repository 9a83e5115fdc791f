import ArgumentParser
import CrispCore
import Logging
import ShimdKit

#if canImport(Glibc)
  import Glibc
#endif

/// shimd: the monitor of one container (crisp's conmon). frontd starts one per
/// container; it outlives restarts of every other daemon and depends on none of them
/// being up. It links only Foundation-free libraries: a node runs one per container.
///
/// With `--bundle`, shimd mounts the bundle's root filesystem, runs `runc create`,
/// copies the container's output into the CRI log, reaps the container (it is a
/// child subreaper), records its exit in `<bundle>/exit.json` and serves
/// `shim.*` calls on `<run-root>/shims/<id>.ipc` until `shim.delete`.
///
/// Signals: SIGTERM, SIGINT and SIGHUP are ignored (logged) while a container is
/// supervised: stopping a shim must never stop its container. The container is
/// stopped through `shim.stop`; the shim ends after `shim.delete` (or SIGKILL, which
/// leaves the container running without a monitor).
///
/// Without `--bundle`, shimd only answers `health` and `ping` and ends on SIGTERM
/// (the footprint test and the benchmark's per-shim memory figure use that).
///
/// Memory: private memory (RssAnon) stays under 1 MB with a running container when
/// linked as Package.swift's shimd target says (static Swift runtime and C
/// libraries, no PIE); the process keeps one malloc arena, gives freed heap back
/// after start-up and after each exec, and releases its idle main-thread stack.
@main
struct ShimdCommand: ParsableCommand {
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

  @Option(help: "The OCI bundle: config.json, rootfs.json (mounted at the spec's root.path).")
  var bundle: String?

  @Option(help: "The OCI runtime.")
  var runtime: String = "/usr/sbin/runc"

  @Option(help: "The runtime's state directory (runc --root); default <run-root>/runc.")
  var runtimeRoot: String?

  @Option(help: "The container's CRI log file; empty: the output is dropped.")
  var logPath: String = ""

  @Option(
    help: "A directory --log-path is below: nothing between it and the file is followed through a symlink.")
  var logRoot: String = ""

  @Flag(help: "The container has a terminal (config.json process.terminal): its output is one stream.")
  var tty = false

  @Flag(help: "Keep the container's stdin open (a pipe) for attach.")
  var stdin = false

  @Flag(help: "Close the container's stdin when the first attach ends.")
  var stdinOnce = false

  @Option(help: "frontd's event socket (PULL); default ipc://<run-root>/events.ipc; empty: no events.")
  var events: String?

  @Flag(help: "Detach: return (status 0) once the container is created and the shim serves.")
  var daemonize = false

  func validate() throws {
    guard id.count == 64, id.allSatisfy(\.isHexDigit), id == id.lowercased() else {
      throw ValidationError("--id must be 64 lower-case hex characters, got \"\(id)\"")
    }
    guard runRoot.hasPrefix("/") else { throw ValidationError("--run-root must be an absolute path") }
    guard Logger.Level(configName: logLevel) != nil else {
      throw ValidationError("--log-level: unknown level \"\(logLevel)\"")
    }
    guard let bundle else {
      if daemonize || tty || stdin || stdinOnce || !logPath.isEmpty {
        throw ValidationError("--daemonize, --tty, --stdin, --stdin-once and --log-path need --bundle")
      }
      return
    }
    guard bundle.hasPrefix("/") else { throw ValidationError("--bundle must be an absolute path") }
    guard Files.exists(BundleLayout(directory: bundle).config) else {
      throw ValidationError("--bundle: \(bundle)/config.json does not exist")
    }
    guard runtime.hasPrefix("/"), access(runtime, X_OK) == 0 else {
      throw ValidationError("--runtime: \(runtime) is not an executable absolute path")
    }
    if let runtimeRoot, !runtimeRoot.hasPrefix("/") {
      throw ValidationError("--runtime-root must be an absolute path")
    }
    guard logPath.isEmpty || logPath.hasPrefix("/") else {
      throw ValidationError("--log-path must be an absolute path")
    }
    guard logRoot.isEmpty || (logRoot.hasPrefix("/") && logPath.hasPrefix(logRoot + "/")) else {
      throw ValidationError("--log-root must be an absolute directory that --log-path is below")
    }
    guard !stdinOnce || stdin else { throw ValidationError("--stdin-once needs --stdin") }
  }

  func run() throws {
    let invocation = ShimInvocation(
      id: id, runRoot: runRoot, logLevel: logLevel, bundle: bundle, runtime: runtime, runtimeRoot: runtimeRoot,
      logPath: logPath, logRoot: logRoot, tty: tty, stdin: stdin, stdinOnce: stdinOnce, events: events,
      daemonize: daemonize)
    do {
      throw ExitCode(try invocation.run())
    } catch let error as CrispError {
      throw ValidationError(error.message)
    }
  }
}
