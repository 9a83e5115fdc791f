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

/// One run of shimd, as its command line asked for it (Services/shimd/Daemon): with a
/// bundle, the monitor of one container; without, the health-only shim.
public struct ShimInvocation: Sendable {
  public var id: String
  public var runRoot: String
  public var logLevel: String
  public var bundle: String?
  public var runtime: String
  public var runtimeRoot: String?
  public var logPath: String
  public var logRoot: String
  public var tty: Bool
  public var stdin: Bool
  public var stdinOnce: Bool
  public var events: String?
  public var daemonize: Bool

  public init(
    id: String, runRoot: String, logLevel: String, bundle: String?, runtime: String, runtimeRoot: String?,
    logPath: String, logRoot: String, tty: Bool, stdin: Bool, stdinOnce: Bool, events: String?, daemonize: Bool
  ) {
    self.id = id
    self.runRoot = runRoot
    self.logLevel = logLevel
    self.bundle = bundle
    self.runtime = runtime
    self.runtimeRoot = runtimeRoot
    self.logPath = logPath
    self.logRoot = logRoot
    self.tty = tty
    self.stdin = stdin
    self.stdinOnce = stdinOnce
    self.events = events
    self.daemonize = daemonize
  }

  /// Runs the shim to its end; answers the process's exit status.
  public func run() throws(CrispError) -> Int32 {
    // Still one thread here: the process-wide settings below hold for every thread.
    crisp_malloc_small()
    signal(SIGPIPE, SIG_IGN)
    let level = Logger.Level(configName: logLevel) ?? .info
    guard let bundle else {
      return blockOn { await runWithoutContainer(level: level) }
    }

    var readyFD: Int32 = -1
    if daemonize {
      guard crisp_daemonize(&readyFD) == 0 else {
        throw CrispError(.internal, "cannot detach: \(Files.errnoText())")
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
    return blockOn { await runShim(options, logger: shimLogger) }
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
