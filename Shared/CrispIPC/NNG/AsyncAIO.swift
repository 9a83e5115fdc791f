import CNNG
import Synchronization

/// Bridges one `nng_aio` to async/await. The aio is reused for successive operations
/// by one task at a time and freed by `free()` from that task: never from `deinit`,
/// which could run on NNG's callback thread, where `nng_aio_free` would wait for the
/// callback it is running in.
final class AsyncAIO: @unchecked Sendable {
  private final class Waiter: Sendable {
    let continuation = Mutex<CheckedContinuation<Void, Never>?>(nil)

    func resume() {
      let c = continuation.withLock { c -> CheckedContinuation<Void, Never>? in
        defer { c = nil }
        return c
      }
      c?.resume()
    }
  }

  private let waiter = Waiter()
  let aio: OpaquePointer

  init() throws(NNGError) {
    var aio: OpaquePointer?
    let arg = Unmanaged.passUnretained(waiter).toOpaque()
    try nngCheck(
      nng_aio_alloc(&aio, { arg in Unmanaged<Waiter>.fromOpaque(arg!).takeUnretainedValue().resume() }, arg),
      "allocate aio")
    self.aio = aio!
  }

  /// Runs one operation and returns NNG's result code (0 on success). `timeoutMs`
  /// of nil waits until the operation completes, is cancelled or the socket closes.
  func perform(timeoutMs: Int32?, _ start: (OpaquePointer) -> Void) async -> Int32 {
    nng_aio_set_timeout(aio, timeoutMs ?? NNG_DURATION_INFINITE)
    await withTaskCancellationHandler {
      await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        waiter.continuation.withLock { $0 = c }
        start(aio)
        // A cancellation that arrived before the operation started would be lost.
        if Task.isCancelled { cancel() }
      }
    } onCancel: {
      self.cancel()
    }
    return nng_aio_result(aio)
  }

  func cancel() {
    nng_aio_cancel(aio)
  }

  /// The message a completed receive left in the aio, now owned by the caller.
  func takeMessage() -> OpaquePointer? {
    let msg = nng_aio_get_msg(aio)
    nng_aio_set_msg(aio, nil)
    return msg
  }

  func free() {
    nng_aio_free(aio)
  }
}
