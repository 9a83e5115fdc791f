import CrispCore

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

// MARK: streaming sessions (exec, attach)

/// Where a streaming session waits: a unix stream socket (mode 0600) that accepts
/// exactly one connection within `SessionSocket.acceptTimeoutMs` and is unlinked once
/// connected (or given up). The bytes on it follow the session framing of the
/// streaming contract: 1 byte channel, 4 bytes big-endian length, payload.
public struct SessionSocket: Codable, Sendable, Equatable {
  public var socketPath: String
  public init(socketPath: String) { self.socketPath = socketPath }

  /// How long the socket waits for its one connection.
  public static let acceptTimeoutMs: Int64 = 10_000
}

/// Which of the standard streams a session carries. Shared rules of exec and attach:
/// at least one stream, and no stderr with a terminal (it merges stderr into stdout).
public struct SessionStreams: Codable, Sendable, Equatable {
  public var tty: Bool
  public var stdin: Bool
  public var stdout: Bool
  public var stderr: Bool

  public init(tty: Bool = false, stdin: Bool = false, stdout: Bool = true, stderr: Bool = true) {
    self.tty = tty
    self.stdin = stdin
    self.stdout = stdout
    self.stderr = stderr
  }

  public func validate(_ call: String) throws(CrispError) {
    guard stdin || stdout || stderr else {
      throw CrispError(.invalidArgument, "\(call): at least one of stdin, stdout and stderr must be set")
    }
    guard !(tty && stderr) else {
      throw CrispError(.invalidArgument, "\(call): tty and stderr cannot both be set (a terminal merges stderr)")
    }
  }
}

/// Starts `command` in the running container (`runc exec` with the container's own
/// process settings, `args` replaced; with a terminal of `width`×`height` when `tty`)
/// once frontd connects to the answered socket, and relays its stdio there. The end
/// frame carries the exit code, or the error that kept the command from starting.
/// frontd closing the socket before the end frame kills the command (SIGKILL to it
/// and its descendants). Refused with `failedPrecondition` unless the container runs.
public enum ShimStreamExec: IPCMethod {
  public static let name = "shim.streamExec"
  /// Bytes of `command` (all arguments together), as a sanity bound.
  public static let maxCommandBytes = 256 << 10

  public struct Request: Codable, Sendable, Equatable {
    public var command: [String]
    public var tty: Bool
    public var stdin: Bool
    public var stdout: Bool
    public var stderr: Bool
    /// The terminal's initial size (with `tty`); absent or 0: the kernel's default.
    public var width: UInt16?
    public var height: UInt16?

    public init(
      command: [String], tty: Bool = false, stdin: Bool = false, stdout: Bool = true, stderr: Bool = true,
      width: UInt16? = nil, height: UInt16? = nil
    ) {
      self.command = command
      self.tty = tty
      self.stdin = stdin
      self.stdout = stdout
      self.stderr = stderr
      self.width = width
      self.height = height
    }

    public var streams: SessionStreams { SessionStreams(tty: tty, stdin: stdin, stdout: stdout, stderr: stderr) }

    public func validate() throws(CrispError) {
      guard !command.isEmpty, !command[0].isEmpty else {
        throw CrispError(.invalidArgument, "shim.streamExec: command must name a program to run, got \(command)")
      }
      let bytes = command.reduce(0) { $0 + $1.utf8.count + 1 }
      guard bytes <= ShimStreamExec.maxCommandBytes else {
        throw CrispError(
          .invalidArgument, "shim.streamExec: command of \(bytes) bytes exceeds \(ShimStreamExec.maxCommandBytes)")
      }
      guard !command.contains(where: { $0.utf8.contains(0) }) else {
        throw CrispError(.invalidArgument, "shim.streamExec: command arguments must not contain NUL bytes")
      }
      try streams.validate("shim.streamExec")
      guard tty || (width ?? 0) == 0 && (height ?? 0) == 0 else {
        throw CrispError(.invalidArgument, "shim.streamExec: width and height need tty")
      }
    }
  }
  public typealias Response = SessionSocket
}

/// Attaches to the container's own stdio, which its shim holds: the container's
/// output (also still written to the CRI log) is copied to the session, and stdin
/// from the session goes to the container's stdin when it was created with stdin
/// (CRI `stdin`); with `stdin_once`, the container's stdin closes when the first
/// session with stdin ends. The end frame carries the container's exit code. frontd
/// closing the socket only detaches. `tty` must match the container's terminal.
public enum ShimStreamAttach: IPCMethod {
  public static let name = "shim.streamAttach"
  public typealias Request = SessionStreams
  public typealias Response = SessionSocket
}

/// Applies new cgroup limits to the running container (`runc update --resources`).
/// `resources` is an OCI runtime-spec `LinuxResources` object in JSON, as frontd built
/// it from the CRI request. Refused with `failedPrecondition` unless the container is
/// created or running.
public enum ShimUpdateResources: IPCMethod {
  public static let name = "shim.updateResources"
  /// A sanity bound on `resources`.
  public static let maxResourcesBytes = 64 << 10

  public struct Request: Codable, Sendable, Equatable {
    public var resources: String

    public init(resources: String) { self.resources = resources }

    public func validate() throws(CrispError) {
      guard resources.utf8.first == UInt8(ascii: "{"), resources.utf8.last == UInt8(ascii: "}") else {
        throw CrispError(.invalidArgument, "shim.updateResources: resources must be a JSON object")
      }
      guard resources.utf8.count <= ShimUpdateResources.maxResourcesBytes else {
        throw CrispError(
          .invalidArgument,
          "shim.updateResources: resources of \(resources.utf8.count) bytes exceed \(ShimUpdateResources.maxResourcesBytes)"
        )
      }
    }
  }
  public typealias Response = Empty
}
