/// Calls cri-frontd makes to the shim of one container, on
/// `ipc://<run_root>/shims/<id>.ipc`. Each shim also answers `health` and `ping`.
///
/// Times are nanoseconds since the Unix epoch, 0 when the event has not happened.
/// A call that waits for the container (`shim.stop`, `shim.execSync`, `shim.delete`)
/// needs a client deadline longer than its own timeout (add a few seconds).

/// Where a container is in its life.
public enum ShimContainerPhase: String, Codable, Sendable, Equatable {
  /// `runc create` done: the init process waits for `shim.start`.
  case created
  case running
  /// The init process exited (or was killed); the exit is recorded in `<bundle>/exit.json`.
  case exited
}

/// What a shim knows of its container.
public struct ShimContainerState: Codable, Sendable, Equatable {
  public var state: ShimContainerPhase
  /// The init process, as the host sees it.
  public var pid: Int32
  public var createdAt: Int64
  public var startedAt: Int64
  public var finishedAt: Int64
  /// The exit status, or 128 + the signal number when a signal killed the init; 0 before the exit.
  public var exitCode: Int32
  /// The container's memory cgroup recorded an OOM kill.
  public var oomKilled: Bool
  /// The signal that killed the init, if one did.
  public var signal: Int32?

  public init(
    state: ShimContainerPhase, pid: Int32, createdAt: Int64, startedAt: Int64 = 0, finishedAt: Int64 = 0,
    exitCode: Int32 = 0, oomKilled: Bool = false, signal: Int32? = nil
  ) {
    self.state = state
    self.pid = pid
    self.createdAt = createdAt
    self.startedAt = startedAt
    self.finishedAt = finishedAt
    self.exitCode = exitCode
    self.oomKilled = oomKilled
    self.signal = signal
  }
}

/// The container's state.
public enum ShimState: IPCMethod {
  public static let name = "shim.state"
  public typealias Request = Empty
  public typealias Response = ShimContainerState
}

/// Starts a created container (`runc start`) and answers its state. A container that
/// is not in `created` state is refused with `failedPrecondition`.
public enum ShimStart: IPCMethod {
  public static let name = "shim.start"
  public typealias Request = Empty
  public typealias Response = ShimContainerState
}

/// Sends `signal` to the init process, waits up to `timeoutSeconds` for it to exit,
/// then kills every process of the container with SIGKILL; answers once the init has
/// exited. Stopping an exited container answers at once; a timeout of 0 kills at once.
public enum ShimStop: IPCMethod {
  public static let name = "shim.stop"
  public struct Request: Codable, Sendable, Equatable {
    public var timeoutSeconds: Int64
    /// `SIGTERM`, `TERM`, `term` or `15`; empty means SIGTERM.
    public var signal: String

    public init(timeoutSeconds: Int64, signal: String = "") {
      self.timeoutSeconds = timeoutSeconds
      self.signal = signal
    }

    // `signal` may be left out.
    public init(from decoder: any Decoder) throws {
      let container = try decoder.container(keyedBy: CodingKeys.self)
      timeoutSeconds = try container.decode(Int64.self, forKey: .timeoutSeconds)
      signal = try container.decodeIfPresent(String.self, forKey: .signal) ?? ""
    }
  }
  public typealias Response = ShimContainerState
}

/// Runs a command in the running container (`runc exec` with the container's own
/// process settings: user, env, cwd, capabilities, no_new_privs, AppArmor/SELinux
/// labels; `args` replaced, no terminal) and collects its output.
public enum ShimExecSync: IPCMethod {
  public static let name = "shim.execSync"
  /// Output kept per stream; the rest is read and dropped, and the stream marked truncated.
  public static let maxOutputBytes = 16 << 20

  public struct Request: Codable, Sendable, Equatable {
    public var command: [String]
    /// 0: no timeout (as in the CRI). Past it, the command is killed.
    public var timeoutSeconds: Int64

    public init(command: [String], timeoutSeconds: Int64 = 0) {
      self.command = command
      self.timeoutSeconds = timeoutSeconds
    }
  }
  public struct Response: Codable, Sendable, Equatable {
    /// The command's exit status, 128 + signal when killed; 137 when it timed out.
    public var exitCode: Int32
    /// Base64 of the bytes the command wrote (they may be binary).
    public var stdout: String
    public var stderr: String
    public var timedOut: Bool
    public var stdoutTruncated: Bool
    public var stderrTruncated: Bool

    public init(
      exitCode: Int32, stdout: String, stderr: String, timedOut: Bool = false, stdoutTruncated: Bool = false,
      stderrTruncated: Bool = false
    ) {
      self.exitCode = exitCode
      self.stdout = stdout
      self.stderr = stderr
      self.timedOut = timedOut
      self.stdoutTruncated = stdoutTruncated
      self.stderrTruncated = stderrTruncated
    }
  }
}

/// Reopens the CRI log file at its path (kubelet renamed the old one); refused with
/// `failedPrecondition` when the container is not running.
public enum ShimReopenLog: IPCMethod {
  public static let name = "shim.reopenLog"
  public typealias Request = Empty
  public typealias Response = Empty
}

/// Kills the container if it still runs, deletes it from runc, unmounts its root
/// filesystem, answers its final state, then the shim exits.
public enum ShimDelete: IPCMethod {
  public static let name = "shim.delete"
  public typealias Request = Empty
  public typealias Response = ShimContainerState
}

/// The exit record a shim writes atomically to `<bundle>/exit.json` when the
/// container's init exits: the durable truth frontd reads when the shim is gone.
public struct ContainerExitRecord: Codable, Sendable, Equatable {
  public var exitCode: Int32
  /// Nanoseconds since the epoch.
  public var finishedAt: Int64
  public var oomKilled: Bool
  public var signal: Int32?

  public init(exitCode: Int32, finishedAt: Int64, oomKilled: Bool, signal: Int32? = nil) {
    self.exitCode = exitCode
    self.finishedAt = finishedAt
    self.oomKilled = oomKilled
    self.signal = signal
  }
}
