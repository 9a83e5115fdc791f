import CCrispSys
import CrispCore
import CrispLinux
import Dispatch
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The shim's monitor thread. shimd is a child subreaper, so the container's init
/// (once `runc create` exits) and every orphan below it become its children; one
/// thread reaps them all (signalfd for SIGCHLD, `waitpid(-1)`), hands the statuses of
/// the programs shimd spawned (runc) to whoever waits for them, copies the
/// container's output into the CRI log, and reports the init's exit once its output
/// is drained.
///
/// Every child must be spawned through `spawn` and waited for through `wait`: a
/// second `waitpid` elsewhere would race with this reaper.
final class Supervisor: Sendable {
  private struct Reaping {
    var tracked: Set<pid_t> = []
    /// Statuses of reaped children `spawn` started, until a `wait` takes them.
    var exited: [pid_t: Int32] = [:]
    var containerPid: pid_t = 0
    /// Statuses of children nobody tracks, kept while the init's pid is not yet known
    /// (it could die between `runc create` and reading the pid file).
    var unclaimed: [pid_t: Int32] = [:]
    var containerStatus: Int32?
    /// The last statuses of other orphans (a detached exec's process, reparented to
    /// the shim when `runc exec -d` exits), kept for `adopt`, oldest first.
    var orphans: [(pid: pid_t, status: Int32)] = []
  }
  static let orphanMemory = 64

  private let reaping = Mutex(Reaping())
  /// Tasks in `wait`, by pid. Their check takes `reaping`: never call in here holding it.
  private let exitWaiters = Waiters<pid_t, Int32>()
  /// Attach sessions: the container's output is copied to them as it is logged.
  let attachments = AttachHub()
  private let streamsToAttach = Mutex<[(fd: Int32, stream: CRILogWriter.Stream)]>([])
  private let logWriter = Mutex<CRILogWriter?>(nil)
  private let signalFD: Int32
  private let wakeRead: Int32
  private let wakeWrite: Int32
  private let logger: Logger
  private let exitHandler = Mutex<(@Sendable (Int32) -> Void)?>(nil)
  /// How long output may still arrive after the init exited (a process outside the
  /// container's PID namespace can hold the pipes open).
  static let drainMs: Int64 = 2_000

  /// `signalFD` must deliver SIGCHLD (and the signals to ignore: SIGTERM, SIGINT,
  /// SIGHUP), blocked in every thread: see `crisp_signal_fd`.
  init(signalFD: Int32, logger: Logger) throws(CrispError) {
    self.signalFD = signalFD
    self.logger = logger
    let wake = try ProcessControl.pipe()
    wakeRead = wake.read
    wakeWrite = wake.write
    _ = fcntl(wakeRead, F_SETFL, fcntl(wakeRead, F_GETFL) | O_NONBLOCK)
    _ = fcntl(wakeWrite, F_SETFL, fcntl(wakeWrite, F_GETFL) | O_NONBLOCK)
  }

  /// What runs (on the monitor thread) when the container's init has exited and its
  /// output is drained, with the init's wait status.
  func onContainerExit(_ handler: @escaping @Sendable (Int32) -> Void) {
    exitHandler.withLock { $0 = handler }
  }

  /// Starts the monitor thread.
  func start() throws(CrispError) {
    var thread = pthread_t()
    let context = Unmanaged.passRetained(self).toOpaque()
    let rc = pthread_create(
      &thread, nil,
      { context in
        let supervisor = Unmanaged<Supervisor>.fromOpaque(context!).takeRetainedValue()
        supervisor.loop()
        return nil
      }, context)
    guard rc == 0 else {
      Unmanaged<Supervisor>.fromOpaque(context).release()
      throw CrispError(.internal, "cannot start the monitor thread: \(Files.errnoText(rc))")
    }
    pthread_detach(thread)
  }

  // MARK: children

  /// Spawns a program (signals reset, empty mask) and tracks it for `wait`.
  func spawn(
    _ path: String, _ arguments: [String], environment: [String], stdin: Int32, stdout: Int32, stderr: Int32,
    newProcessGroup: Bool = true
  ) throws(CrispError) -> pid_t {
    let argv = [path] + arguments
    let rc: Int32
    let pid: pid_t
    (rc, pid) = reaping.withLock { state -> (Int32, pid_t) in
      var pid: pid_t = 0
      let rc = withCMutableStrings(argv) { cArgv in
        withCMutableStrings(environment) { cEnvp in
          crisp_spawn(path, cArgv, cEnvp, stdin, stdout, stderr, newProcessGroup ? 1 : 0, &pid)
        }
      }
      if rc == 0 { state.tracked.insert(pid) }
      return (rc, pid)
    }
    guard rc == 0 else { throw CrispError(.internal, "cannot run \(path): \(Files.errnoText(rc))") }
    return pid
  }

  /// Waits for a child `spawn` started and returns its wait status.
  func wait(_ pid: pid_t) async -> Int32 {
    await exitWaiters.wait(
      for: pid,
      unless: {
        reaping.withLock { state -> Int32? in
          if let status = state.exited.removeValue(forKey: pid) { return status }
          // Not ours: report "killed" rather than wait forever.
          return state.tracked.contains(pid) ? nil : SIGKILL
        }
      })
  }

  /// Takes on a process the shim did not spawn but inherits as subreaper (a detached
  /// `runc exec`'s process, by the pid runc wrote): from now on `wait`, `kill`,
  /// `processFD` and `hasExited` serve it as if `spawn` had started it. Call it
  /// after its parent (runc) exited: its exit may already have been reaped.
  func adopt(_ pid: pid_t) {
    reaping.withLock { state in
      state.tracked.insert(pid)
      if let index = state.orphans.lastIndex(where: { $0.pid == pid }) {
        state.tracked.remove(pid)
        state.exited[pid] = state.orphans.remove(at: index).status
      }
    }
  }

  /// `wait` for a thread of shimd's own (a session), which may block.
  func waitBlocking(_ pid: pid_t) -> Int32 {
    let status = Mutex<Int32>(0)
    let done = DispatchSemaphore(value: 0)
    Task {
      let value = await wait(pid)
      status.withLock { $0 = value }
      done.signal()
    }
    done.wait()
    return status.withLock { $0 }
  }

  /// Whether a spawned child has exited (its status waits for `wait`).
  func hasExited(_ pid: pid_t) -> Bool {
    reaping.withLock { $0.exited[pid] != nil }
  }

  /// Signals a spawned child (its process group with `group`) if it has not been reaped.
  func kill(_ pid: pid_t, _ signal: Int32, group: Bool) {
    reaping.withLock { state in
      if state.tracked.contains(pid) && state.exited[pid] == nil { _ = Glibc.kill(group ? -pid : pid, signal) }
    }
  }

  /// Whether the container's init has been reaped (its pid may then be reused).
  var containerReaped: Bool { reaping.withLock { $0.containerStatus != nil } }

  /// A pidfd (readable once the child exits) for a child `spawn` started, and whether
  /// it has already exited; fd -1 when the kernel has no pidfds.
  func processFD(_ pid: pid_t) -> (fd: Int32, exited: Bool) {
    let fd = crisp_pidfd_open(pid)
    // Reaped already (then the pid may even be reused): it has exited.
    if hasExited(pid) {
      if fd >= 0 { close(fd) }
      return (-1, true)
    }
    if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return (fd, false)
  }

  /// From now on, the exit of `pid` is the container's exit.
  func watchContainer(pid: pid_t) {
    let already = reaping.withLock { state -> Bool in
      state.containerPid = pid
      if let status = state.unclaimed[pid] {
        state.containerStatus = status
      }
      state.unclaimed = [:]
      return state.containerStatus != nil
    }
    if already { wake() }
  }

  /// Copies `fd` (a pipe or a pty master, read end) into `log` until it ends.
  func attach(_ fd: Int32, as stream: CRILogWriter.Stream, log: CRILogWriter) {
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    logWriter.withLock { $0 = log }
    streamsToAttach.withLock { $0.append((fd, stream)) }
    wake()
  }

  private func wake() {
    var byte: UInt8 = 1
    _ = write(wakeWrite, &byte, 1)
  }

  // MARK: the monitor thread

  private struct Pump {
    var fd: Int32
    var splitter: LineSplitter
  }

  private func loop() {
    var pumps: [Pump] = []
    var containerStatus: Int32? = nil
    var drainDeadline: Int64 = 0
    var reported = false
    let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: CRILogWriter.maxRecord)
    defer { buffer.deallocate() }

    while true {
      var fds = [
        pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0),
        pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
      ]
      for pump in pumps { fds.append(pollfd(fd: pump.fd, events: Int16(POLLIN), revents: 0)) }
      var timeout: Int32 = -1
      if containerStatus != nil && !reported {
        timeout = Int32(clamping: max(0, drainDeadline - MonotonicClock.milliseconds()))
      }
      let ready = poll(&fds, nfds_t(fds.count), timeout)
      if ready < 0 && errno != EINTR {
        logger.error("monitor poll failed", metadata: ["error": "\(Files.errnoText())"])
        usleep(100_000)
        continue
      }

      if fds[0].revents != 0 { handleSignals() }
      if fds[1].revents != 0 {
        var sink = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &sink, sink.count) > 0 {}
        let attached = streamsToAttach.withLock { list -> [(fd: Int32, stream: CRILogWriter.Stream)] in
          let taken = list
          list = []
          return taken
        }
        for entry in attached {
          pumps.append(Pump(fd: entry.fd, splitter: LineSplitter(stream: entry.stream)))
        }
      }
      let log = logWriter.withLock { $0 }
      var index = 2
      var ended: [Int] = []
      for (position, pump) in pumps.enumerated() {
        defer { index += 1 }
        guard index < fds.count, fds[index].revents != 0 else { continue }
        let n = read(pump.fd, buffer.baseAddress, buffer.count)
        if n > 0 {
          let chunk = UnsafeBufferPointer(rebasing: buffer[0..<n])
          if let log { pumps[position].splitter.feed(chunk, to: log) }
          attachments.broadcast(pump.splitter.stream, chunk)
        } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
          // EOF, or EIO from a pty master once every slave descriptor is closed.
          ended.append(position)
        }
      }
      for position in ended.reversed() {
        if let log { pumps[position].splitter.finish(to: log) }
        close(pumps[position].fd)
        pumps.remove(at: position)
      }

      if containerStatus == nil, let status = reaping.withLock({ $0.containerStatus }) {
        containerStatus = status
        drainDeadline = MonotonicClock.milliseconds() + Self.drainMs
      }
      if let status = containerStatus, !reported, pumps.isEmpty || MonotonicClock.milliseconds() >= drainDeadline {
        reported = true
        if !pumps.isEmpty {
          logger.warning("container output still open after the init exited; reporting the exit")
        }
        exitHandler.withLock { $0 }?(status)
      }
    }
  }

  private func handleSignals() {
    while true {
      let signo = crisp_read_signal(signalFD)
      if signo < 0 { return }
      switch signo {
      case SIGCHLD:
        reapAll()
      default:
        logger.notice(
          "ignoring signal \(signo): the container is stopped through shim.stop and the shim ends with shim.delete")
      }
    }
  }

  private func reapAll() {
    while true {
      var status: Int32 = 0
      let pid = waitpid(-1, &status, WNOHANG)
      if pid < 0 && errno == EINTR { continue }
      if pid <= 0 { return }
      let spawned = reaping.withLock { state -> Bool in
        if state.tracked.remove(pid) != nil {
          // Kept before the waiters are told: a `wait` registering meanwhile takes it here.
          state.exited[pid] = status
          return true
        } else if pid == state.containerPid {
          state.containerStatus = status
        } else if state.containerPid == 0 && state.unclaimed.count < 1024 {
          state.unclaimed[pid] = status
        } else {
          if state.orphans.count >= Self.orphanMemory { state.orphans.removeFirst() }
          state.orphans.append((pid, status))
        }
        return false
      }
      if spawned && exitWaiters.resume(pid, with: status) {
        // Taken by its waiters: no later `wait` gets it again.
        reaping.withLock { _ = $0.exited.removeValue(forKey: pid) }
      }
    }
  }
}

/// Reading a `waitpid` status.
enum WaitStatus {
  static func signal(_ status: Int32) -> Int32? {
    let signo = status & 0x7f
    return signo != 0 && signo != 0x7f ? signo : nil
  }

  /// The exit code, or 128 + the signal that killed the process.
  static func exitCode(_ status: Int32) -> Int32 {
    if let signo = signal(status) { return 128 + signo }
    return (status >> 8) & 0xff
  }
}
