import CCrispSys
import CrispCore
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// An exec'd process's stdin pipe (its write end), owned by the session: stdin EOF
/// closes it, and the process reads EOF.
final class PipeInput: SessionInput {
  private var fd: Int32

  init(fd: Int32) {
    self.fd = fd
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
  }

  deinit { if fd >= 0 { close(fd) } }

  var pollFD: Int32 { fd }

  func write(_ bytes: UnsafeRawBufferPointer) -> Int { Terminal.write(fd, bytes) }

  func endOfInput() {
    if fd >= 0 { close(fd) }
    fd = -1
  }

  func resize(width: UInt16, height: UInt16) {}
}

/// An exec'd process's terminal (the pty master, owned by the session): stdin is
/// typed into it, stdin EOF is the terminal's end-of-file character, and resizes set
/// its window size.
final class TerminalInput: SessionInput {
  private let fd: Int32
  private let forwards: Bool

  /// `forwards`: the session carries stdin (without it, only resizes apply).
  init(master fd: Int32, forwards: Bool) {
    self.fd = fd
    self.forwards = forwards
  }

  var pollFD: Int32 { fd }

  func write(_ bytes: UnsafeRawBufferPointer) -> Int { forwards ? Terminal.write(fd, bytes) : -1 }

  func endOfInput() { if forwards { Terminal.sendEndOfFile(fd) } }

  func resize(width: UInt16, height: UInt16) { _ = crisp_set_window_size(fd, width, height) }
}

/// The container's own stdin as its shim holds it from create to delete: the write
/// end of its stdin pipe (`--stdin` without a terminal), or a duplicate of its pty
/// master (with a terminal; it also serves resizes). Every attach session writes
/// through it under one lock, so that closing it (stdin_once, delete) never races a
/// write into a reused descriptor.
final class ContainerInput: Sendable {
  private struct State {
    var fd: Int32 = -1
    var terminal = false
    /// The container was created with stdin (CRI `stdin`).
    var acceptsInput = false
    /// stdin_once: the first attach with stdin has ended.
    var inputClosed = false
  }
  private let state = Mutex(State())

  func usePipe(_ fd: Int32) {
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    state.withLock { $0 = State(fd: fd, terminal: false, acceptsInput: true) }
  }

  func useTerminal(_ master: Int32, acceptsInput: Bool) {
    state.withLock { $0 = State(fd: master, terminal: true, acceptsInput: acceptsInput) }
  }

  var acceptsInput: Bool { state.withLock { $0.acceptsInput && !$0.inputClosed && $0.fd >= 0 } }

  /// May be stale by the time it is polled: a spurious wake-up at worst.
  var pollFD: Int32 { state.withLock { $0.fd } }

  func write(_ bytes: UnsafeRawBufferPointer) -> Int {
    state.withLock { s in
      guard s.acceptsInput, !s.inputClosed, s.fd >= 0 else { return -1 }
      return Terminal.write(s.fd, bytes)
    }
  }

  /// stdin_once: the container reads EOF (its pipe closes; on a terminal, the
  /// end-of-file character, since closing the master would hang it up).
  func closeInput() {
    state.withLock { s in
      guard s.acceptsInput, !s.inputClosed, s.fd >= 0 else { return }
      s.inputClosed = true
      if s.terminal {
        Terminal.sendEndOfFile(s.fd)
      } else {
        Glibc.close(s.fd)
        s.fd = -1
      }
    }
  }

  func resize(width: UInt16, height: UInt16) {
    state.withLock { s in
      if s.terminal && s.fd >= 0 { _ = crisp_set_window_size(s.fd, width, height) }
    }
  }

  /// The container is gone (delete, failed create).
  func close() {
    state.withLock { s in
      if s.fd >= 0 { Glibc.close(s.fd) }
      s = State()
    }
  }
}

/// An attach session's view of the container's stdin.
final class AttachInput: SessionInput {
  let container: ContainerInput
  let forwards: Bool
  let stdinOnce: Bool

  init(container: ContainerInput, forwards: Bool, stdinOnce: Bool) {
    self.container = container
    self.forwards = forwards
    self.stdinOnce = stdinOnce
  }

  var pollFD: Int32 { forwards ? container.pollFD : -1 }

  func write(_ bytes: UnsafeRawBufferPointer) -> Int { forwards ? container.write(bytes) : -1 }

  /// Only stdin_once closes the container's stdin; otherwise this session just stops
  /// sending (a later attach may still write).
  func endOfInput() { if forwards && stdinOnce { container.closeInput() } }

  func resize(width: UInt16, height: UInt16) { container.resize(width: width, height: height) }
}

enum Terminal {
  /// A non-blocking write: bytes written, 0 when it would block, -1 when the reader is gone.
  static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
    guard fd >= 0, !bytes.isEmpty else { return fd >= 0 ? 0 : -1 }
    let n = Glibc.write(fd, bytes.baseAddress, bytes.count)
    if n >= 0 { return n }
    return errno == EAGAIN || errno == EINTR ? 0 : -1
  }

  /// Types the terminal's VEOF character (^D unless changed): a reader at the start
  /// of a line reads end-of-file.
  static func sendEndOfFile(_ master: Int32) {
    var settings = termios()
    var eof: UInt8 = 4
    if tcgetattr(master, &settings) == 0 {
      let value = withUnsafeBytes(of: &settings.c_cc) { $0[Int(VEOF)] }
      if value != 0 { eof = value }
    }
    _ = Glibc.write(master, &eof, 1)
  }
}
