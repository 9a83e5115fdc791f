import CCrispSys
import CrispCore
import Dispatch
import Glibc
import Synchronization

/// Runs blocking work (libarchive reading a pipe, file writes) on its own thread, so
/// that it never holds one of the few threads of Swift's cooperative pool.
public enum BlockingWork {
  public static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
      let box = Unmanaged.passRetained(Job(body: { continuation.resume(returning: body()) }))
      var thread = pthread_t()
      let rc = pthread_create(
        &thread, nil,
        { raw in
          let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
          job.body()
          return nil
        }, box.toOpaque())
      if rc == 0 {
        pthread_detach(thread)
      } else {
        // No thread to be had: run it on Dispatch's pool rather than fail the pull.
        let job = box.takeRetainedValue()
        DispatchQueue.global().async { job.body() }
      }
    }
  }

  /// `run` for work that throws.
  public static func result<T: Sendable>(
    _ body: @escaping @Sendable () throws(CrispError) -> T
  ) async -> Result<T, CrispError> {
    await run { () -> Result<T, CrispError> in
      do throws(CrispError) { return .success(try body()) } catch { return .failure(error) }
    }
  }

  private final class Job: @unchecked Sendable {
    let body: () -> Void
    init(body: @escaping () -> Void) { self.body = body }
  }
}

/// Writes chunks into a pipe from async code: each write runs on a serial queue of its
/// own, so a full pipe (a slow unpacker) holds back the download, not the thread pool.
final class PipeWriter: Sendable {
  let fd: Int32
  private let queue: DispatchQueue

  init(fd: Int32, label: String) {
    self.fd = fd
    queue = DispatchQueue(label: label)
  }

  /// False once the reader is gone (EPIPE) or the write failed.
  func write(_ bytes: [UInt8]) async -> Bool {
    await withCheckedContinuation { continuation in
      queue.async { [fd] in
        let ok = bytes.withUnsafeBytes { Files.writeAll(fd, $0) }
        continuation.resume(returning: ok)
      }
    }
  }
}

/// A pipe whose two ends are closed at most once each, from whichever thread is done.
final class Pipe: Sendable {
  private let ends: Mutex<(read: Int32, write: Int32)>
  let readEnd: Int32
  let writeEnd: Int32

  init() throws(CrispError) {
    var fds: [Int32] = [0, 0]
    guard crisp_pipe2_cloexec(&fds) == 0 else {
      throw CrispError(.internal, "cannot create a pipe: \(Files.errnoText())")
    }
    readEnd = fds[0]
    writeEnd = fds[1]
    ends = Mutex((fds[0], fds[1]))
    // F_SETPIPE_SZ (Linux-only, hidden by Glibc's headers): a 1 MiB pipe lets the
    // download run a little ahead of the unpacker.
    _ = fcntl(writeEnd, 1031, Int32(1 << 20))
  }

  func closeRead() {
    ends.withLock {
      if $0.read >= 0 { close($0.read) }
      $0.read = -1
    }
  }

  func closeWrite() {
    ends.withLock {
      if $0.write >= 0 { close($0.write) }
      $0.write = -1
    }
  }

  deinit {
    closeRead()
    closeWrite()
  }
}
