// The interface between the streaming server (HTTP, SPDY, WebSocket, tokens) and whatever
// carries out exec, attach and port-forward (shimd sessions, netd sockets). The contract is
// in /work/notes/streaming-contract.md; change neither side without the other.

/// Which of the process's standard streams a session carries, and whether it has a terminal.
public struct StreamOptions: Sendable, Equatable {
  public var stdin: Bool
  public var stdout: Bool
  public var stderr: Bool
  public var tty: Bool

  public init(stdin: Bool, stdout: Bool, stderr: Bool, tty: Bool) {
    self.stdin = stdin
    self.stdout = stdout
    self.stderr = stderr
    self.tty = tty
  }
}

/// A terminal size in character cells.
public struct TerminalSize: Sendable, Equatable, Codable {
  public var width: UInt16
  public var height: UInt16

  public init(width: UInt16, height: UInt16) {
    self.width = width
    self.height = height
  }
}

/// Carries out streaming sessions. Every returned fd is owned by the caller, who closes it.
///
/// Session framing on an exec/attach socket, both directions: 1 byte channel, 4 bytes big-endian
/// payload length (at most 1 MiB), payload.
/// - frontd → shim: 0 stdin bytes; 4 resize, JSON `{"width":W,"height":H}`; 5 stdin EOF (empty).
/// - shim → frontd: 1 stdout; 2 stderr (never with a TTY); 3 end, JSON `{"exitCode":N}` or
///   `{"error":"message"}`, after which the shim closes the socket.
/// - frontd closing the socket before the end frame means the client went away: an exec'd
///   process is killed, an attach simply detaches.
public protocol StreamingBackend: Sendable {
  /// Starts `command` in the container; returns a connected unix stream socket (fd, owned by the
  /// caller) speaking the session framing. Throws CrispError (.notFound / .failedPrecondition /
  /// .unavailable ...) with a clear message.
  func exec(containerID: String, command: [String], options: StreamOptions) async throws -> Int32
  /// Attaches to the container's own stdio held by its shimd; same framing.
  func attach(containerID: String, options: StreamOptions) async throws -> Int32
  /// A TCP connection to 127.0.0.1:`port` inside the pod's network namespace, already connected:
  /// the returned fd is that TCP socket itself (raw bytes). A refused port throws CrispError whose
  /// message names the port and the errno text.
  func portForward(podID: String, port: UInt16) async throws -> Int32
}
