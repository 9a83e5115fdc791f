import ArgumentParser
import CCrispSys
import CrispCore
import CrispDaemon
import CrispIPC
import CrispLinux
import Dispatch
import Logging

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
    // Still one thread here: the process-wide settings below hold for every thread.
    crisp_malloc_small()
    signal(SIGPIPE, SIG_IGN)
    let level = Logger.Level(configName: logLevel) ?? .info
    guard let bundle else {
      let code = blockOn { await runWithoutContainer(level: level) }
      throw ExitCode(code)
    }

    var readyFD: Int32 = -1
    if daemonize {
      guard crisp_daemonize(&readyFD) == 0 else {
        throw ValidationError("cannot detach: \(Files.errnoText())")
      }
    } else {
      // Descriptors inherited from the launcher stay open here (a launcher may watch
      // one to learn when the shim exits) but must not reach runc or the container.
      closeInheritedOnExec()
    }
    // SIGCHLD comes through the monitor thread's signalfd; the others are ignored.
    let signals: [Int32] = [SIGCHLD, SIGTERM, SIGINT, SIGHUP]
    let signalFD = signals.withUnsafeBufferPointer { crisp_signal_fd($0.baseAddress, Int32($0.count)) }

    var logFD: Int32 = 2
    if daemonize {
      logFD = open(bundle + "/shimd.log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
      if logFD < 0 { logFD = 2 }
    }
    var logger = ShimLogHandler.bootstrap(level: level, fd: logFD)
    logger[metadataKey: "container"] = "\(id.prefix(12))"

    let options = ShimOptions(
      settings: ContainerShim.Settings(
        id: id, runRoot: runRoot, logPath: logPath, logRoot: logRoot, tty: tty, stdin: stdin,
        stdinOnce: stdinOnce),
      bundle: bundle, runtime: runtime, runtimeRoot: runtimeRoot ?? runRoot + "/runc",
      events: events ?? CrispPaths.ipcAddress(CrispPaths(root: "", runRoot: runRoot).eventsSocket),
      readyFD: readyFD, signalFD: signalFD)
    let shimLogger = logger
    let code = blockOn { await runShim(options, logger: shimLogger) }
    throw ExitCode(code)
  }

  /// The health-only shim of earlier versions: serves until SIGTERM or SIGINT.
  private func runWithoutContainer(level: Logger.Level) async -> Int32 {
    let signals = TerminationSignals()
    var logger = CrispLogging.bootstrap(daemon: "shimd", level: level)
    logger[metadataKey: "container"] = "\(id.prefix(12))"
    let paths = CrispPaths(root: "", runRoot: runRoot)
    do {
      try makeDirectories(paths.shimsDir, mode: 0o700)
      var router = IPCRouter()
      let identity = DaemonIdentity(name: "shimd")
      router.register(Health.self) { _ in identity.health() }
      let address = CrispPaths.ipcAddress(paths.shimSocket(containerID: id))
      let server = try IPCServer(address: address, router: router, workers: 2, logger: logger)
      logger.info("shimd serving (no container)", metadata: ["socket": "\(address)"])
      await serveUntilTerminated(server, signals: signals, logger: logger)
      return 0
    } catch {
      logger.error("shimd cannot start", metadata: ["error": "\(error)"])
      return 1
    }
  }
}

/// Sets close-on-exec on every descriptor above stderr.
func closeInheritedOnExec() {
  guard let dir = opendir("/proc/self/fd") else { return }
  var fds: [Int32] = []
  while let entry = readdir(dir) {
    let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    if let fd = Int32(name), fd > 2, fd != dirfd(dir) { fds.append(fd) }
  }
  closedir(dir)
  for fd in fds { _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC) }
}

struct ShimOptions: Sendable {
  var settings: ContainerShim.Settings
  var bundle: String
  var runtime: String
  var runtimeRoot: String
  var events: String
  var readyFD: Int32
  var signalFD: Int32
}

/// Creates the container, reports readiness (to the launcher waiting on `readyFD`
/// with --daemonize) and serves until `shim.delete` ends the process.
func runShim(_ options: ShimOptions, logger: Logger) async -> Int32 {
  let settings = options.settings
  func report(_ text: String) {
    guard options.readyFD >= 0 else { return }
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { Files.writeAll(options.readyFD, $0) }
    close(options.readyFD)
  }
  do {
    guard options.signalFD >= 0 else {
      throw CrispError(.internal, "cannot receive signals (signalfd): \(Files.errnoText())")
    }
    try ProcessControl.setChildSubreaper()
    let paths = CrispPaths(root: "", runRoot: settings.runRoot)
    try makeDirectories(paths.shimsDir, mode: 0o700)
    try makeDirectories(options.runtimeRoot, mode: 0o700)
    let bundle = try ContainerBundle(path: options.bundle)
    guard bundle.wantsTerminal == settings.tty else {
      throw CrispError(
        .invalidArgument,
        "--tty \(settings.tty ? "is set" : "is not set") but config.json's process.terminal is \(bundle.wantsTerminal)")
    }
    let supervisor = try Supervisor(signalFD: options.signalFD, logger: logger)
    try supervisor.start()
    let runc = Runc(
      path: options.runtime, root: options.runtimeRoot, containerID: settings.id,
      systemdCgroup: bundle.usesSystemdCgroup, supervisor: supervisor)
    if runc.hasState {
      throw CrispError(.alreadyExists, "container \(settings.id) already exists in runc state (\(options.runtimeRoot))")
    }
    let log = try CRILogWriter(path: settings.logPath, root: settings.logRoot)
    var events: IPCEventSender? = nil
    if !options.events.isEmpty {
      do {
        events = try IPCEventSender(address: options.events)
      } catch {
        logger.warning("no events: cannot dial \(options.events)", metadata: ["error": "\(error)"])
      }
    }
    let shim = ContainerShim(
      settings: settings, bundle: bundle, supervisor: supervisor, runc: runc, log: log, events: events,
      logger: logger)
    supervisor.onContainerExit { status in shim.containerExited(status: status) }

    let identity = DaemonIdentity(name: "shimd")
    var router = IPCRouter()
    router.register(Health.self) { _ in identity.health() }
    router.register(ShimState.self) { _ in shim.snapshot }
    router.register(ShimStart.self) { _ in try await shim.start() }
    router.register(ShimStop.self) { request in try await shim.stop(request) }
    router.register(ShimExecSync.self) { request in try await shim.execSync(request) }
    router.register(ShimStreamExec.self) { request in try shim.streamExec(request) }
    router.register(ShimStreamAttach.self) { request in try shim.streamAttach(request) }
    router.register(ShimReopenLog.self) { _ in
      try shim.reopenLog()
      return Empty()
    }
    router.register(ShimDelete.self) { _ in try await shim.delete() }
    router.register(ShimUpdateResources.self) { request in try await shim.updateResources(request) }

    let address = CrispPaths.ipcAddress(paths.shimSocket(containerID: settings.id))
    let server: IPCServer
    do {
      // Bound before anything is mounted or created: a second shim for the same
      // container stops here.
      server = try IPCServer(address: address, router: router, workers: 4, logger: logger)
    } catch  where error.isAddressInUse {
      throw CrispError(
        .alreadyExists, "another shim already serves container \(settings.id): cannot listen on \(address): \(error)")
    } catch {
      throw CrispError(.internal, "shimd cannot listen on \(address): \(error)")
    }
    shim.whenDeleted {
      // Let the worker send the reply, then go: the socket file goes with the server.
      Task.detached {
        try? await Task.sleep(for: .milliseconds(200))
        await server.closeAndWait(timeoutMs: 2_000)
        // _exit: no atexit handlers or static destructors while other threads run.
        _exit(0)
      }
    }
    do {
      try await shim.create()
    } catch {
      server.close()
      throw error
    }
    logger.info("shimd serving", metadata: ["socket": "\(address)", "pid": "\(shim.snapshot.pid)"])
    report("ok\n")
    // Start-up decoded JSON and ran runc; give the freed pages back before idling.
    crisp_malloc_trim()
    await server.run()
    return 0
  } catch {
    let message = (error as? CrispError)?.message ?? "\(error)"
    logger.error("shimd cannot supervise the container", metadata: ["error": "\(message)"])
    report("shimd: \(message)\n")
    return 1
  }
}

/// Runs async work from the synchronous main (which must stay single-threaded until
/// it has detached) and returns its exit code.
func blockOn(_ body: @escaping @Sendable () async -> Int32) -> Int32 {
  final class Box: @unchecked Sendable { var code: Int32 = 0 }
  let box = Box()
  let done = DispatchSemaphore(value: 0)
  Task.detached {
    box.code = await body()
    done.signal()
  }
  // The main thread only waits from here; parsing and set-up touched its stack.
  crisp_release_unused_stack()
  done.wait()
  return box.code
}
