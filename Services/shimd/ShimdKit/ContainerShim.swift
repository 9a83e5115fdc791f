import CCrispSys
import CrispCore
import CrispIPC
import CrispLinux
import Logging
import Synchronization

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif
#if canImport(Glibc)
  import Glibc
#endif

/// One container's life as its shim sees it: created by `create`, started, stopped,
/// exec'd into and deleted through IPC, its exit recorded by the monitor thread.
final class ContainerShim: Sendable {
  struct Settings: Sendable {
    var id: String
    var runRoot: String
    var logPath: String
    /// The directory `logPath` must stay below (see `CRILogWriter`); empty: none.
    var logRoot: String = ""
    var tty: Bool
    var stdin: Bool
    var stdinOnce: Bool
  }

  /// Where the container is in its life. Finer than the wire's `ShimContainerPhase`:
  /// `creating` answers no IPC yet, and `starting` (reported as `created`) keeps a
  /// second start out while `runc start` runs. Each case carries what is known by then,
  /// so that no field outlives or precedes its phase.
  private enum Phase {
    /// `create` runs: the init's pid is not known yet.
    case creating
    case created(pid: Int32)
    /// `runc start` runs. `startedAt` is taken before it: an init that exits at once
    /// must not finish before it started.
    case starting(pid: Int32, startedAt: Int64)
    case running(pid: Int32, startedAt: Int64)
    /// The init's exit is recorded. It may come while `create` runs (pid 0 until
    /// `create` ends and fills it in) or while `runc start` runs (`startPending`: that
    /// start has yet to end, a second one is refused as "being started" until it does,
    /// and startedAt goes back to 0 if it fails).
    case exited(pid: Int32, startedAt: Int64, ContainerExitRecord, startPending: Bool)

    /// What the wire says; nil while creating.
    var reported: ShimContainerPhase? {
      switch self {
      case .creating: nil
      case .created, .starting: .created
      case .running: .running
      case .exited: .exited
      }
    }

    var hasExited: Bool {
      if case .exited = self { true } else { false }
    }

    /// The init's pid while it may still be signalled: known (`create` ended) and its
    /// exit not recorded.
    var liveInitPid: Int32? {
      switch self {
      case .created(let pid), .starting(let pid, _), .running(let pid, _): pid > 0 ? pid : nil
      case .creating, .exited: nil
      }
    }

    /// The phase once the pending `runc start` has ended. A failed one takes its
    /// startedAt back, even when the init has exited meanwhile.
    func startEnded(succeeded: Bool) -> Phase {
      switch self {
      case .starting(let pid, let startedAt): succeeded ? .running(pid: pid, startedAt: startedAt) : .created(pid: pid)
      case .exited(let pid, let startedAt, let exit, startPending: true):
        .exited(pid: pid, startedAt: succeeded ? startedAt : 0, exit, startPending: false)
      case .creating, .created, .running, .exited: self  // No start pending.
      }
    }

    /// The phase once the init exited with `exit`.
    func exited(_ exit: ContainerExitRecord) -> Phase {
      switch self {
      case .creating: .exited(pid: 0, startedAt: 0, exit, startPending: false)
      case .created(let pid): .exited(pid: pid, startedAt: 0, exit, startPending: false)
      case .starting(let pid, let startedAt): .exited(pid: pid, startedAt: startedAt, exit, startPending: true)
      case .running(let pid, let startedAt): .exited(pid: pid, startedAt: startedAt, exit, startPending: false)
      case .exited(let pid, let startedAt, _, let startPending):
        .exited(pid: pid, startedAt: startedAt, exit, startPending: startPending)
      }
    }
  }

  private struct Record {
    var phase = Phase.creating
    /// Set as `create` ends, whatever the phase then (an init may have exited already).
    var createdAt: Int64 = 0
    var memory: CgroupMemory?
    var oomBaseline: UInt64 = 0
    var execCount = 0
  }

  let settings: Settings
  let bundle: ContainerBundle
  let supervisor: Supervisor
  let runc: Runc
  let log: CRILogWriter
  let events: IPCEventSender?
  let logger: Logger
  private let record = Mutex(Record())
  /// Tasks waiting for the init's exit, each by a key of its own (its timeout is its own).
  private let exitWaiters = Waiters<UInt64, Bool>()
  /// The container's stdin (its pipe's write end, or its pty master), kept open so
  /// that the container does not read EOF; attach sessions write to it.
  let input = ContainerInput()
  private let onDeleted = Mutex<(@Sendable () -> Void)?>(nil)

  /// How long `stop` and `delete` wait for the init to die after SIGKILL.
  static let killWaitMs: Int64 = 10_000
  /// How long `runc create` may take before it is killed.
  static let createTimeoutSeconds = 120

  init(
    settings: Settings, bundle: ContainerBundle, supervisor: Supervisor, runc: Runc, log: CRILogWriter,
    events: IPCEventSender?, logger: Logger
  ) {
    self.settings = settings
    self.bundle = bundle
    self.supervisor = supervisor
    self.runc = runc
    self.log = log
    self.events = events
    self.logger = logger
  }

  /// What runs once `shim.delete` has answered (closing the server, exiting).
  func whenDeleted(_ action: @escaping @Sendable () -> Void) {
    onDeleted.withLock { $0 = action }
  }

  var snapshot: ShimContainerState {
    record.withLock { Self.snapshot($0) }
  }

  private static func snapshot(_ r: Record) -> ShimContainerState {
    switch r.phase {
    case .creating:
      ShimContainerState(state: .created, pid: 0, createdAt: r.createdAt)
    case .created(let pid):
      ShimContainerState(state: .created, pid: pid, createdAt: r.createdAt)
    case .starting(let pid, let startedAt):
      ShimContainerState(state: .created, pid: pid, createdAt: r.createdAt, startedAt: startedAt)
    case .running(let pid, let startedAt):
      ShimContainerState(state: .running, pid: pid, createdAt: r.createdAt, startedAt: startedAt)
    case .exited(let pid, let startedAt, let exit, _):
      ShimContainerState(
        state: .exited, pid: pid, createdAt: r.createdAt, startedAt: startedAt, finishedAt: exit.finishedAt,
        exitCode: exit.exitCode, oomKilled: exit.oomKilled, signal: exit.signal)
    }
  }

  func currentPhase() throws(CrispError) -> ShimContainerPhase {
    guard let phase = record.withLock({ $0.phase.reported }) else {
      throw CrispError(.unavailable, "container \(settings.id) is still being created")
    }
    return phase
  }

  /// Streaming sessions (exec, attach) at once, each a thread and its buffers; more
  /// are refused with `resourceExhausted`.
  static let maxSessions = 32
  private let openSessions = Atomic<Int>(0)

  /// Counts a session in; `endSession` counts it out when its thread ends.
  func beginSession() throws(CrispError) {
    let count = openSessions.add(1, ordering: .relaxed).newValue
    guard count <= Self.maxSessions else {
      openSessions.subtract(1, ordering: .relaxed)
      throw CrispError(
        .resourceExhausted, "container \(settings.id) has \(Self.maxSessions) streaming sessions open already")
    }
  }

  func endSession() { openSessions.subtract(1, ordering: .relaxed) }

  /// Numbers exec-sync runs and streaming sessions (their files in the bundle).
  func nextExecNumber() -> Int {
    record.withLock { r -> Int in
      r.execCount += 1
      return r.execCount
    }
  }

  // MARK: create

  /// Mounts the root filesystem, wires the container's stdio, runs `runc create`
  /// and reads the init's pid. On failure nothing is left behind (no mount, no runc
  /// state).
  func create() async throws(CrispError) {
    try bundle.mountRootfs()
    var toClose: [Int32] = []
    defer { toClose.forEach { close($0) } }
    do throws(CrispError) {
      let null = try Files.openDevNull()
      toClose.append(null)
      var containerStdin = null
      var stdout = null
      var stderr = null
      var console: ConsoleSocket? = nil
      var readEnds: [(Int32, CRILogWriter.Stream)] = []

      if settings.tty {
        console = try ConsoleSocket(path: settings.runRoot + "/shims/.console-\(getpid()).sock")
      } else {
        let out = try ProcessControl.pipe()
        toClose.append(out.write)
        readEnds.append((out.read, .stdout))
        let err = try ProcessControl.pipe()
        toClose.append(err.write)
        readEnds.append((err.read, .stderr))
        stdout = out.write
        stderr = err.write
        if settings.stdin {
          let input = try ProcessControl.pipe()
          toClose.append(input.read)
          containerStdin = input.read
          self.input.usePipe(input.write)
        }
      }
      // From here the read ends belong to the monitor thread (it closes them at EOF).
      for (fd, stream) in readEnds { supervisor.attach(fd, as: stream, log: log) }

      _ = unlink(bundle.runcLog)
      _ = unlink(bundle.pidFile)
      var arguments =
        runc.globalArguments + [
          "--log", bundle.runcLog, "--log-format", "json", "create", "--bundle", bundle.path, "--pid-file",
          bundle.pidFile,
        ]
      if let console { arguments += ["--console-socket", console.path] }
      arguments.append(settings.id)
      // runc's stdio becomes the container's (without a tty); runc's own errors go to its log.
      let pid = try supervisor.spawn(
        runc.path, arguments, environment: Runc.environment, stdin: containerStdin, stdout: stdout, stderr: stderr)
      toClose.forEach { close($0) }
      toClose = []
      // A runc that hangs must not keep the launcher (and frontd) waiting for ever.
      let watchdog = Task { [supervisor] in
        try? await Task.sleep(for: .seconds(Self.createTimeoutSeconds))
        if !Task.isCancelled { supervisor.kill(pid, SIGKILL, group: true) }
      }
      let status = await supervisor.wait(pid)
      watchdog.cancel()
      guard status == 0 else {
        let reason = Runc.errors(inLog: bundle.runcLog)
        throw CrispError(
          reason.contains("already exists") ? .alreadyExists : .internal,
          "runc create failed (exit \(WaitStatus.exitCode(status))): \(reason.isEmpty ? "no error logged" : reason)")
      }
      let pidText = Files.text(bundle.pidFile) ?? ""
      guard let initPid = Int32(pidText.trimmed(of: " \n")), initPid > 0 else {
        throw CrispError(.internal, "runc create wrote no pid to \(bundle.pidFile)")
      }
      supervisor.watchContainer(pid: initPid)
      if let console {
        let master = try console.receiveMaster()
        // A second descriptor for attach (stdin, resize): the monitor closes its own at EOF.
        let copy = fcntl(master, F_DUPFD_CLOEXEC, 3)
        if copy >= 0 { input.useTerminal(copy, acceptsInput: settings.stdin) }
        supervisor.attach(master, as: .stdout, log: log)
      }
      let memory = CgroupMemory.locate(cgroupsPath: bundle.cgroupsPath, initPid: initPid)
      if memory == nil {
        logger.warning(
          "memory cgroup not found: OOM kills will not be detected", metadata: ["cgroupsPath": "\(bundle.cgroupsPath)"])
      }
      let baseline = memory?.oomKillCount() ?? 0
      let now = WallClock.nowNanoseconds()
      record.withLock { r in
        r.createdAt = now
        r.memory = memory
        r.oomBaseline = baseline
        switch r.phase {
        case .creating:
          r.phase = .created(pid: initPid)
        case .exited(_, let startedAt, let exit, let startPending):
          // An init that already died has been reported: keep that, with its pid.
          r.phase = .exited(pid: initPid, startedAt: startedAt, exit, startPending: startPending)
        case .created, .starting, .running:
          break  // Not before create ends: start waits for it.
        }
      }
      logger.info("container created", metadata: ["pid": "\(initPid)", "cgroup": "\(memory?.directory ?? "?")"])
    } catch {
      await rollBackCreate()
      throw error
    }
  }

  private func rollBackCreate() async {
    _ = try? await runc.run(["delete", "--force", settings.id], timeoutMs: 30_000)
    do {
      try bundle.unmountRootfs()
    } catch {
      logger.error("cannot unmount the root filesystem", metadata: ["error": "\(error)"])
    }
    input.close()
  }

  // MARK: exit (monitor thread)

  /// The init exited and its output is drained: record the exit in `exit.json`, then
  /// answer waiters and tell frontd.
  func containerExited(status: Int32) {
    let finishedAt = WallClock.nowNanoseconds()
    let (memory, baseline) = record.withLock { ($0.memory, $0.oomBaseline) }
    let oomKilled = (memory?.oomKillCount() ?? 0) > baseline
    let exit = ContainerExitRecord(
      exitCode: WaitStatus.exitCode(status), finishedAt: finishedAt, oomKilled: oomKilled,
      signal: WaitStatus.signal(status))
    do {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      try Files.writeAtomically(bundle.exitFile, Array(try encoder.encode(exit)) + [UInt8(ascii: "\n")])
    } catch {
      logger.error("cannot record the exit", metadata: ["error": "\(error)", "file": "\(bundle.exitFile)"])
    }
    // Exited first, then the waiters: one registering meanwhile finds the phase exited.
    record.withLock { $0.phase = $0.phase.exited(exit) }
    exitWaiters.resumeAll(with: true)
    supervisor.attachments.containerExited(exitCode: exit.exitCode)
    logger.info(
      "container exited",
      metadata: ["exitCode": "\(exit.exitCode)", "oomKilled": "\(oomKilled)", "signal": "\(exit.signal ?? 0)"])
    send(
      ContainerExitedEvent(
        containerID: settings.id, exitCode: exit.exitCode, finishedAt: finishedAt, oomKilled: oomKilled))
  }

  /// Waits until the init has exited and its exit is recorded; false after `timeoutMs`.
  func waitForExit(timeoutMs: Int64) async -> Bool {
    await exitWaiters.wait(
      for: exitWaiters.makeKey(), timeout: .milliseconds(timeoutMs), orElse: false,
      unless: { record.withLock { $0.phase.hasExited } ? true : nil })
  }

  private func send<E: IPCEvent>(_ event: E) {
    guard let events else { return }
    let logger = logger
    Task.detached {
      do {
        try await events.send(event, timeoutMs: 2_000)
      } catch {
        logger.debug("event not delivered", metadata: ["event": "\(E.name)", "error": "\(error)"])
      }
    }
  }

  // MARK: IPC

  func start() async throws(CrispError) -> ShimContainerState {
    let startedAt = WallClock.nowNanoseconds()
    let refusal = record.withLock { r -> CrispError? in
      let notCreated: String
      switch r.phase {
      case .creating:
        return CrispError(.unavailable, "container \(settings.id) is still being created")
      case .created(let pid):
        // startedAt before runc start: an init that exits at once must not finish before it started.
        r.phase = .starting(pid: pid, startedAt: startedAt)
        return nil
      case .starting, .exited(_, _, _, startPending: true): notCreated = "being started"
      case .running: notCreated = ShimContainerPhase.running.rawValue
      case .exited: notCreated = ShimContainerPhase.exited.rawValue
      }
      return CrispError(.failedPrecondition, "container \(settings.id) is \(notCreated), not created")
    }
    if let refusal { throw refusal }
    let result: Runc.Result
    do {
      result = try await runc.run(["start", settings.id])
    } catch {
      record.withLock { $0.phase = $0.phase.startEnded(succeeded: false) }
      throw error
    }
    guard result.succeeded else {
      record.withLock { $0.phase = $0.phase.startEnded(succeeded: false) }
      throw CrispError(
        .internal, "runc start failed (exit \(result.exitCode)): \(Runc.trimmed(result.output))")
    }
    let state = record.withLock { r -> ShimContainerState in
      r.phase = r.phase.startEnded(succeeded: true)
      return Self.snapshot(r)
    }
    logger.info("container started")
    send(ContainerStartedEvent(containerID: settings.id, pid: state.pid, startedAt: startedAt))
    return state
  }

  func stop(_ request: ShimStop.Request) async throws(CrispError) -> ShimContainerState {
    guard request.timeoutSeconds >= 0 else {
      throw CrispError(.invalidArgument, "timeoutSeconds must not be negative, got \(request.timeoutSeconds)")
    }
    guard request.timeoutSeconds <= 365 * 24 * 3600 else {
      throw CrispError(.invalidArgument, "timeoutSeconds \(request.timeoutSeconds) is more than a year")
    }
    let signal = try SignalName.parse(request.signal, field: "signal")
    if try currentPhase() == .exited { return snapshot }

    if request.timeoutSeconds > 0 && signal != SIGKILL {
      await signalInit(signal)
      if await waitForExit(timeoutMs: request.timeoutSeconds * 1000) { return snapshot }
      logger.info(
        "container still running after the stop timeout: killing it",
        metadata: ["timeoutSeconds": "\(request.timeoutSeconds)"])
    }
    try await killAll()
    return snapshot
  }

  /// `runc kill <id> <signal>`; when runc cannot (it refuses a container whose
  /// state it finds odd), kill(2) on the init, which is still our unreaped child.
  private func signalInit(_ signal: Int32) async {
    do {
      let result = try await runc.run(["kill", settings.id, String(signal)], timeoutMs: 30_000)
      if result.succeeded { return }
      logger.warning("runc kill failed", metadata: ["output": "\(Runc.trimmed(result.output))"])
    } catch {
      logger.warning("runc kill failed", metadata: ["error": "\(error)"])
    }
    if let pid = record.withLock({ $0.phase.liveInitPid }), !supervisor.containerReaped { kill(pid, signal) }
  }

  /// SIGKILL to every process of the container, then waits for the init's exit.
  private func killAll() async throws(CrispError) {
    if snapshot.state != .exited {
      do {
        let result = try await runc.run(["kill", "--all", settings.id, "KILL"], timeoutMs: 30_000)
        if !result.succeeded {
          logger.warning("runc kill --all failed", metadata: ["output": "\(Runc.trimmed(result.output))"])
          if let pid = record.withLock({ $0.phase.liveInitPid }), !supervisor.containerReaped { kill(pid, SIGKILL) }
        }
      } catch {
        logger.warning("runc kill --all failed", metadata: ["error": "\(error)"])
      }
    }
    guard await waitForExit(timeoutMs: Self.killWaitMs) else {
      throw CrispError(
        .deadlineExceeded, "container \(settings.id) did not exit within \(Self.killWaitMs) ms of SIGKILL")
    }
  }

  func execSync(_ request: ShimExecSync.Request) async throws(CrispError) -> ShimExecSync.Response {
    guard !request.command.isEmpty, !request.command[0].isEmpty else {
      throw CrispError(.invalidArgument, "command must name a program to run, got \(request.command)")
    }
    guard request.timeoutSeconds >= 0 else {
      throw CrispError(.invalidArgument, "timeoutSeconds must not be negative, got \(request.timeoutSeconds)")
    }
    guard request.timeoutSeconds <= 365 * 24 * 3600 else {
      throw CrispError(.invalidArgument, "timeoutSeconds \(request.timeoutSeconds) is more than a year")
    }
    guard try currentPhase() == .running else {
      throw CrispError(.failedPrecondition, "container \(settings.id) is not running")
    }
    let number = nextExecNumber()
    let processFile = bundle.path + "/.exec-\(number).json"
    let pidFile = bundle.path + "/.exec-\(number).pid"
    defer {
      unlink(processFile)
      unlink(pidFile)
      Self.trimMemorySoon()
    }
    try Files.writeAtomically(processFile, try bundle.execProcess(arguments: request.command), mode: 0o600)

    let null = try Files.openDevNull()
    defer { close(null) }
    let out = try ProcessControl.pipe()
    let err: (read: Int32, write: Int32)
    do {
      err = try ProcessControl.pipe()
    } catch {
      close(out.read)
      close(out.write)
      throw error
    }
    let pid: pid_t
    do {
      pid = try supervisor.spawn(
        runc.path, runc.globalArguments + ["exec", "--process", processFile, "--pid-file", pidFile, settings.id],
        environment: Runc.environment, stdin: null, stdout: out.write, stderr: err.write)
    } catch {
      [out.read, out.write, err.read, err.write].forEach { close($0) }
      throw error
    }
    close(out.write)
    close(err.write)
    let supervisor = supervisor
    let output = await OutputCollector.collect(
      [out.read, err.read], process: supervisor.processFD(pid), limit: ShimExecSync.maxOutputBytes,
      timeoutMs: request.timeoutSeconds > 0 ? request.timeoutSeconds * 1000 : nil, graceMs: 5_000
    ) {
      // The exec'd process leads a process group of its own (runc's init calls
      // setsid): kill it and what it started; runc exec then exits.
      var execPid: Int32 = 0
      for _ in 0..<100 {
        if let text = Files.text(pidFile), let value = Int32(text.trimmed(of: " \n")), value > 0 {
          execPid = value
          break
        }
        usleep(10_000)
      }
      if execPid > 0 {
        kill(-execPid, SIGKILL)
        kill(execPid, SIGKILL)
      } else {
        supervisor.kill(pid, SIGKILL, group: true)
      }
    }
    if output.timedOut { supervisor.kill(pid, SIGKILL, group: true) }
    let status = await supervisor.wait(pid)
    let exitCode: Int32 = output.timedOut ? 128 + SIGKILL : WaitStatus.exitCode(status)
    return ShimExecSync.Response(
      exitCode: exitCode, stdout: Data(output.streams[0]).base64EncodedString(),
      stderr: Data(output.streams[1]).base64EncodedString(), timedOut: output.timedOut,
      stdoutTruncated: output.truncated[0], stderrTruncated: output.truncated[1])
  }

  /// Gives freed heap pages back once the reply (up to twice 16 MiB, base64 in
  /// JSON) has been encoded and sent: glibc keeps them otherwise.
  static func trimMemorySoon() {
    Task.detached {
      try? await Task.sleep(for: .milliseconds(500))
      crisp_malloc_trim()
    }
  }

  func reopenLog() throws(CrispError) {
    guard try currentPhase() == .running else {
      throw CrispError(.failedPrecondition, "container \(settings.id) is not running")
    }
    try log.reopen()
    logger.info("log reopened", metadata: ["path": "\(log.path)"])
  }

  func delete() async throws(CrispError) -> ShimContainerState {
    _ = try currentPhase()
    try await killAll()
    let result = try await runc.run(["delete", "--force", settings.id], timeoutMs: 30_000)
    if !result.succeeded {
      if try await runc.exists() {
        throw CrispError(.internal, "runc delete failed (exit \(result.exitCode)): \(Runc.trimmed(result.output))")
      }
      logger.warning("runc delete reported an error", metadata: ["output": "\(Runc.trimmed(result.output))"])
    }
    if let memory = record.withLock({ $0.memory }) {
      let left = memory.removeLeftovers()
      if !left.isEmpty { logger.warning("cgroups left behind", metadata: ["paths": "\(left)"]) }
    }
    try bundle.unmountRootfs()
    input.close()
    let state = record.withLock { Self.snapshot($0) }
    logger.info("container deleted; the shim exits")
    // Once: a second delete (a retry) answers the same and does not exit twice.
    let action = onDeleted.withLock { current -> (@Sendable () -> Void)? in
      defer { current = nil }
      return current
    }
    action?()
    return state
  }
}
