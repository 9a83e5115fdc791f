import CrispCore
import Synchronization

/// Single-use tokens for streaming URLs: an RPC stores its validated request and hands out the
/// token; the first connection that presents it takes the request out; an expired or used
/// token finds nothing. Tokens are 128 random bits (the system generator reads getrandom).
public final class TokenCache: Sendable {
  private struct Entry {
    var request: StreamRequest
    var expiresAtMs: Int64
  }

  private let entries = Mutex<[String: Entry]>([:])
  private let ttlMs: Int64
  private let capacity: Int
  private let now: @Sendable () -> Int64

  public init(ttlMs: Int64, capacity: Int = 1000, now: @escaping @Sendable () -> Int64 = MonotonicClock.milliseconds) {
    self.ttlMs = ttlMs
    self.capacity = capacity
    self.now = now
  }

  public func insert(_ request: StreamRequest) throws -> String {
    var generator = SystemRandomNumberGenerator()
    let token = (0..<16).map { _ in
      let byte = UInt8.random(in: 0...255, using: &generator)
      return String(byte, radix: 16).count == 1 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
    }.joined()
    let time = now()
    return try entries.withLock { entries in
      entries = entries.filter { $0.value.expiresAtMs > time }
      guard entries.count < capacity else {
        throw CrispError(.resourceExhausted, "too many streaming requests waiting for their client (\(capacity))")
      }
      entries[token] = Entry(request: request, expiresAtMs: time + ttlMs)
      return token
    }
  }

  /// Takes the request out for good; nil when the token is unknown, used or expired.
  public func consume(_ token: String) -> StreamRequest? {
    let time = now()
    return entries.withLock { entries in
      guard let entry = entries.removeValue(forKey: token), entry.expiresAtMs > time else { return nil }
      return entry.request
    }
  }

  public var count: Int { entries.withLock { $0.count } }
}
