import CrispCore

/// Work done once per key at a time: a second caller for a key whose work is under way
/// waits for that work's result instead of starting it again. frontd retries a removal
/// whose deadline passed while imaged still deletes a writable layer of millions of
/// files; a second deletion walking the same tree would only race the first.
public actor KeyedWork<Value: Sendable> {
  private var running: [String: Task<Result<Value, CrispError>, Never>] = [:]

  public init() {}

  public func run(
    _ key: String, _ body: @escaping @Sendable () async -> Result<Value, CrispError>
  ) async -> Result<Value, CrispError> {
    if let task = running[key] { return await task.value }
    let task = Task { await body() }
    running[key] = task
    let result = await task.value
    running[key] = nil
    return result
  }
}
