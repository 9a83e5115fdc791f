import CCrispSys
import CrispCore
import CrispIPC
import CrispLinux
import Logging

#if canImport(Glibc)
  import Glibc
#endif

extension ContainerShim {
  /// `shim.streamExec`: checks the request, listens on a fresh session socket and
  /// leaves the rest (start, relay, end) to a session thread.
  func streamExec(_ request: ShimStreamExec.Request) throws(CrispError) -> SessionSocket {
    try request.validate()
    guard try currentPhase() == .running else {
      throw CrispError(.failedPrecondition, "container \(settings.id) is not running")
    }
    try beginSession()
    let number = nextExecNumber()
    let listener: SessionListener
    do {
      listener = try SessionListener(
        path: SessionListener.path(
          bundle: bundle.path, runRoot: settings.runRoot, containerID: settings.id, number: number))
    } catch {
      endSession()
      throw error
    }
    let session = ExecSession(shim: self, request: request, number: number, listener: listener)
    do {
      try ShimThread.detach {
        session.run()
        self.endSession()
      }
    } catch {
      _ = listener.acceptOne(timeoutMs: 0)
      endSession()
      throw error
    }
    return SessionSocket(socketPath: listener.path)
  }
}

/// One streaming exec: waits for frontd's connection, runs `runc exec` (pipes, or a
/// terminal through a console socket), relays its stdio, and ends with its exit code;
/// kills the command (and its descendants) when frontd goes away first.
final class ExecSession: Sendable {
  let shim: ContainerShim
  let request: ShimStreamExec.Request
  let number: Int
  let listener: SessionListener

  init(shim: ContainerShim, request: ShimStreamExec.Request, number: Int, listener: SessionListener) {
    self.shim = shim
    self.request = request
    self.number = number
    self.listener = listener
  }

  private var logger: Logger { shim.logger }

  func run() {
    defer { ContainerShim.trimMemorySoon() }
    guard let socket = listener.acceptOne(timeoutMs: SessionSocket.acceptTimeoutMs) else {
      logger.warning(
        "nobody connected to an exec session; the command was not started",
        metadata: ["socket": "\(listener.path)", "command": "\(request.command.first ?? "")"])
      return
    }
    defer { close(socket) }
    _ = fcntl(socket, F_SETFL, fcntl(socket, F_GETFL) | O_NONBLOCK)
    let end: [UInt8]?
    do {
      end = try relay(socket)
    } catch {
      logger.info("exec could not start", metadata: ["error": "\(error.message)"])
      end = SessionFrame.end(error: error.message)
    }
    if let end, !writeAll(socket: socket, end, timeoutMs: 10_000) {
      logger.info("the exec session's client did not take the end frame")
    }
  }

  /// Runs the command and relays; the end frame to send, nil when the client left.
  private func relay(_ socket: Int32) throws(CrispError) -> [UInt8]? {
    let bundle = shim.bundle
    let supervisor = shim.supervisor
    let runc = shim.runc
    let processFile = bundle.path + "/.stream-\(number).json"
    let pidFile = bundle.path + "/.stream-\(number).pid"
    let runcLog = bundle.path + "/.stream-\(number).log"
    defer {
      unlink(processFile)
      unlink(pidFile)
      unlink(runcLog)
    }
    try Files.writeAtomically(
      processFile,
      try bundle.execProcess(
        arguments: request.command, terminal: request.tty, width: request.width ?? 0, height: request.height ?? 0),
      mode: 0o600)

    // Descriptors for runc (closed once it runs) and the session's own.
    var childEnds: [Int32] = []
    var owned: [Int32] = []
    defer { (childEnds + owned).forEach { close($0) } }
    let null = try Files.openDevNull()
    childEnds.append(null)
    var stdio = (stdin: null, stdout: null, stderr: null)
    var pipeInput: PipeInput? = nil
    var outputs: [(fd: Int32, channel: SessionFrame.Channel?)] = []
    var console: ConsoleSocket? = nil
    if request.tty {
      console = try ConsoleSocket(path: shim.settings.runRoot + "/shims/.console-\(getpid())-\(number).sock")
    } else {
      if request.stdin {
        let pipe = try ProcessControl.pipe()
        childEnds.append(pipe.read)
        stdio.stdin = pipe.read
        pipeInput = PipeInput(fd: pipe.write)
      }
      for (wanted, channel) in [(request.stdout, SessionFrame.Channel.stdout), (request.stderr, .stderr)] where wanted {
        let pipe = try ProcessControl.pipe()
        childEnds.append(pipe.write)
        owned.append(pipe.read)
        outputs.append((pipe.read, channel))
        if channel == .stdout { stdio.stdout = pipe.write } else { stdio.stderr = pipe.write }
      }
    }

    // With pipes, runc exec stays in the foreground and exits with the command's
    // status. runc takes a console socket only when it detaches (-d): the command is
    // then reparented to the shim (a subreaper), which waits for it by its pid.
    var arguments =
      runc.globalArguments + [
        "--log", runcLog, "--log-format", "json", "exec", "--process", processFile, "--pid-file", pidFile,
      ]
    if let console { arguments += ["--detach", "--console-socket", console.path] }
    arguments.append(shim.settings.id)
    let runcPid = try supervisor.spawn(
      runc.path, arguments, environment: Runc.environment, stdin: stdio.stdin, stdout: stdio.stdout,
      stderr: stdio.stderr)
    childEnds.forEach { close($0) }
    childEnds = []

    var input: SessionInput? = pipeInput
    var pid = runcPid
    if let console {
      let runcProcess = supervisor.processFD(runcPid)
      defer { if runcProcess.fd >= 0 { close(runcProcess.fd) } }
      let master: Int32
      do {
        master = try console.receiveMaster(timeoutMs: 30_000, unlessReadable: runcProcess.fd)
      } catch {
        supervisor.kill(runcPid, SIGKILL, group: true)
        let status = supervisor.waitBlocking(runcPid)
        throw startFailure(status: status, runcLog: runcLog, fallback: error.message)
      }
      owned.append(master)
      let status = supervisor.waitBlocking(runcPid)
      guard status == 0 else { throw startFailure(status: status, runcLog: runcLog, fallback: "") }
      guard let text = Files.text(pidFile), let execPid = Int32(text.trimmed(of: " \n")), execPid > 0 else {
        throw CrispError(.internal, "runc exec wrote no pid to \(pidFile)")
      }
      supervisor.adopt(execPid)
      pid = execPid
      input = TerminalInput(master: master, forwards: request.stdin)
      // Read even when stdout is not wanted: a terminal nobody reads blocks its writer.
      outputs = [(master, request.stdout ? .stdout : nil)]
    }
    let process = supervisor.processFD(pid)
    if process.fd >= 0 { owned.append(process.fd) }

    var pump = SessionPump(socket: socket, input: input)
    pump.outputs = outputs
    if process.exited {
      pump.processHasExited = { true }
    } else if process.fd >= 0 {
      pump.processFD = process.fd
    } else {
      pump.processHasExited = { supervisor.hasExited(pid) }
    }
    let outcome = pump.run()
    if case .clientGone(let reason) = outcome {
      logger.info("exec session ended by its client; killing the command", metadata: ["reason": "\(reason)"])
      if pid == runcPid {
        killCommand(pidFile: pidFile, runcPid: runcPid)
      } else {
        ProcessTree.kill(root: pid)
      }
      _ = supervisor.waitBlocking(pid)
      return nil
    }
    let status = supervisor.waitBlocking(pid)
    if pid == runcPid && status != 0 && !Runc.errors(inLog: runcLog).isEmpty {
      throw startFailure(status: status, runcLog: runcLog, fallback: "")
    }
    return SessionFrame.end(exitCode: WaitStatus.exitCode(status))
  }

  /// What runc said when the command did not start.
  private func startFailure(status: Int32, runcLog: String, fallback: String) -> CrispError {
    let reason = Runc.errors(inLog: runcLog)
    return CrispError(
      .internal,
      "cannot exec \(request.command[0]) in container \(shim.settings.id.prefix(12)): "
        + (reason.isEmpty
          ? (fallback.isEmpty ? "runc exec exited with \(WaitStatus.exitCode(status))" : fallback) : reason))
  }

  /// SIGKILL to the exec'd process (from runc's pid file), its process group (runc
  /// makes it a session leader) and every descendant; runc exec then exits.
  private func killCommand(pidFile: String, runcPid: pid_t) {
    var execPid: Int32 = 0
    // runc writes the pid file once the process runs; it may be a moment away.
    let deadline = MonotonicClock.milliseconds() + 2_000
    while execPid == 0 {
      if let text = Files.text(pidFile), let value = Int32(text.trimmed(of: " \n")), value > 0 { execPid = value }
      if execPid > 0 || shim.supervisor.hasExited(runcPid) || MonotonicClock.milliseconds() > deadline { break }
      usleep(10_000)
    }
    if execPid > 0 {
      ProcessTree.kill(root: execPid)
    } else {
      shim.supervisor.kill(runcPid, SIGKILL, group: true)
    }
  }
}

/// Killing a process with everything it started.
enum ProcessTree {
  /// Stops `root` and its descendants (so none forks away meanwhile), then kills them all.
  static func kill(root: pid_t) {
    var tree: Set<pid_t> = [root]
    _ = Glibc.kill(root, SIGSTOP)
    for _ in 0..<3 {
      let found = descendants(of: tree)
      if found.isSubset(of: tree) { break }
      for pid in found.subtracting(tree) { _ = Glibc.kill(pid, SIGSTOP) }
      tree.formUnion(found)
    }
    _ = Glibc.kill(-root, SIGKILL)
    for pid in tree { _ = Glibc.kill(pid, SIGKILL) }
  }

  /// Processes whose parent chain leads into `roots` (from /proc/*/stat).
  static func descendants(of roots: Set<pid_t>) -> Set<pid_t> {
    var parents: [pid_t: pid_t] = [:]
    guard let dir = opendir("/proc") else { return roots }
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) {
        String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
      }
      guard let pid = Int32(name), let stat = Files.text("/proc/\(name)/stat"),
        let close = stat.lastIndex(of: ")")
      else { continue }
      let fields = stat[stat.index(after: close)...].split(separator: " ")
      if fields.count > 1, let ppid = Int32(fields[1]) { parents[pid] = ppid }
    }
    closedir(dir)
    var result = roots
    var changed = true
    while changed {
      changed = false
      for (pid, ppid) in parents where !result.contains(pid) && result.contains(ppid) {
        result.insert(pid)
        changed = true
      }
    }
    return result
  }
}
