import Dispatch

#if canImport(Glibc)
  import Glibc
#endif

/// SIGTERM and SIGINT as an async wait, so a daemon's main task can shut down in order
/// (stop serving, remove its socket files) instead of dying mid-write. Create it first
/// thing in main: from then on those signals no longer kill the process.
// @unchecked: `sources` is written once in init and only kept alive afterwards.
public final class TerminationSignals: @unchecked Sendable {
  private let stream: AsyncStream<Int32>
  private let sources: [any DispatchSourceSignal]

  public init() {
    let (stream, continuation) = AsyncStream<Int32>.makeStream()
    self.stream = stream
    sources = [SIGTERM, SIGINT].map { signo in
      signal(signo, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
      source.setEventHandler(handler: Self.handler(signo, continuation))
      source.resume()
      return source
    }
  }

  /// Waits for the first termination signal and returns its number.
  public func wait() async -> Int32 {
    for await signo in stream { return signo }
    return SIGTERM
  }

  // Built here rather than in main.swift, whose closures are @MainActor and would trap
  // when the source's queue runs them.
  private static func handler(_ signo: Int32, _ continuation: AsyncStream<Int32>.Continuation)
    -> @Sendable () -> Void
  {
    { continuation.yield(signo) }
  }
}

/// SIGHUP: "read your configuration again" (today: the log level).
public final class ReloadSignal: @unchecked Sendable {
  private let source: any DispatchSourceSignal

  /// Runs `reload` on every SIGHUP, on a background queue.
  public init(_ reload: @escaping @Sendable () -> Void) {
    signal(SIGHUP, SIG_IGN)
    source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
    source.setEventHandler(handler: reload)
    source.resume()
  }
}
