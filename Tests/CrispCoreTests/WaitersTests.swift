import CrispCore
import Synchronization
import Testing

/// The waiter table behind exit waits, launcher replies and the IPC server's close: each
/// waiter is resumed exactly once, by its key, by `resumeAll` or by its timeout, and a
/// value that comes before the waiter is not lost when the caller checks for it.
@Suite struct WaitersTests {
  /// Far beyond any test's run: a waiter that should have been resumed answers this
  /// instead of hanging the run.
  static let lost = -1
  static let patience = Duration.seconds(20)

  @Test func resumeAnswersOnlyTheWaitersForItsKey() async throws {
    let waiters = Waiters<String, Int>()
    let a = Task { await waiters.wait(for: "a", timeout: Self.patience, orElse: Self.lost) }
    let b = Task { await waiters.wait(for: "b", timeout: Self.patience, orElse: Self.lost) }
    try await waitUntil("both wait") { waiters.count == 2 }
    #expect(waiters.resume("a", with: 1))
    #expect(await a.value == 1)
    #expect(waiters.count == 1, "b still waits")
    #expect(waiters.resume("b", with: 2))
    #expect(await b.value == 2)
    #expect(waiters.count == 0)
  }

  @Test func resumeAnswersEveryWaiterForTheSameKey() async throws {
    let waiters = Waiters<Int32, Int>()
    let first = Task { await waiters.wait(for: 7, timeout: Self.patience, orElse: Self.lost) }
    let second = Task { await waiters.wait(for: 7, timeout: Self.patience, orElse: Self.lost) }
    try await waitUntil("both wait") { waiters.count == 2 }
    #expect(waiters.resume(7, with: 42))
    #expect(await first.value == 42)
    #expect(await second.value == 42)
  }

  @Test func resumeAllAnswersEveryKey() async throws {
    let waiters = Waiters<UInt64, String>()
    let tasks = (0..<5).map { _ in
      let key = waiters.makeKey()
      return Task { await waiters.wait(for: key, timeout: Self.patience, orElse: "lost") }
    }
    try await waitUntil("all wait") { waiters.count == 5 }
    #expect(waiters.resumeAll(with: "closed") == 5)
    for task in tasks { #expect(await task.value == "closed") }
    #expect(waiters.resumeAll(with: "again") == 0)
  }

  @Test func aWaiterTimesOutAloneAndALaterResumeFindsNobody() async throws {
    let waiters = Waiters<String, Int>()
    let patient = Task { await waiters.wait(for: "k", timeout: Self.patience, orElse: Self.lost) }
    try await waitUntil("the patient one waits") { waiters.count == 1 }
    let started = ContinuousClock.now
    let hasty = await waiters.wait(for: "k", timeout: .milliseconds(50), orElse: 0)
    #expect(hasty == 0)
    #expect(ContinuousClock.now - started >= .milliseconds(50))
    #expect(waiters.count == 1, "the timeout ended its own waiter only")
    #expect(waiters.resume("k", with: 3))
    #expect(await patient.value == 3)
    #expect(!waiters.resume("k", with: 4), "nobody waits any more")
  }

  @Test func aResumedWaiterIsNotAnsweredAgainByItsTimeout() async throws {
    let waiters = Waiters<String, Int>()
    let waiting = Task { await waiters.wait(for: "k", timeout: .milliseconds(100), orElse: 0) }
    try await waitUntil("it waits") { waiters.count == 1 }
    waiters.resume("k", with: 1)
    #expect(await waiting.value == 1)
    // A second answer would trap in CheckedContinuation; let the timeout pass to see.
    let next = await waiters.wait(for: "other", timeout: .milliseconds(200), orElse: 2)
    #expect(next == 2)
  }

  @Test func aValueBeforeTheWaiterIsFoundByTheCheck() async {
    let waiters = Waiters<String, Bool>()
    let exited = Atomic<Bool>(false)
    // The resumer makes the condition true first, then resumes: nobody waits yet.
    exited.store(true, ordering: .sequentiallyConsistent)
    #expect(!waiters.resume("exit", with: true))
    let answer = await waiters.wait(
      for: "exit", timeout: Self.patience, orElse: false,
      unless: { exited.load(ordering: .sequentiallyConsistent) ? true : nil })
    #expect(answer)
    #expect(waiters.count == 0, "answered by the check, never registered")
  }

  @Test func aValueAfterTheWaiterResumesIt() async throws {
    let waiters = Waiters<String, Bool>()
    let exited = Atomic<Bool>(false)
    let waiting = Task {
      await waiters.wait(
        for: "exit", timeout: Self.patience, orElse: false,
        unless: { exited.load(ordering: .sequentiallyConsistent) ? true : nil })
    }
    try await waitUntil("it waits") { waiters.count == 1 }
    exited.store(true, ordering: .sequentiallyConsistent)
    #expect(waiters.resume("exit", with: true))
    #expect(await waiting.value)
  }

  @Test func whatStartsAfterRegisteringCanResumeAtOnce() async {
    let waiters = Waiters<UInt64, String>()
    let key = waiters.makeKey()
    // As a reply that comes back before `send` has even returned.
    let reply = await waiters.wait(
      for: key, timeout: Self.patience, orElse: "lost", afterRegistering: { waiters.resume(key, with: "reply") })
    #expect(reply == "reply")
    let skipped = Mutex(true)
    let early = await waiters.wait(
      for: key, unless: { "ready" }, afterRegistering: { skipped.withLock { $0 = false } })
    #expect(early == "ready")
    #expect(skipped.withLock { $0 }, "nothing to start when the check answered")
  }

  @Test func freshKeysDiffer() {
    let waiters = Waiters<UInt64, Int>()
    let keys = (0..<1000).map { _ in waiters.makeKey() }
    #expect(Set(keys).count == keys.count)
  }

  @Test func manyConcurrentWaitersRacingTheirResumers() async {
    let waiters = Waiters<UInt64, UInt64>()
    let resumed = Shared<Set<UInt64>>([])
    // Each resumer races its waiter: the check (under the table's lock) closes the gap
    // between a value that came and a waiter that registers.
    let answers = await withTaskGroup(of: UInt64.self) { group in
      for _ in 0..<500 {
        let key = waiters.makeKey()
        group.addTask {
          await waiters.wait(
            for: key, timeout: Self.patience, orElse: .max,
            unless: { resumed.withLock { $0.contains(key) } ? key : nil })
        }
        group.addTask {
          resumed.withLock { _ = $0.insert(key) }
          waiters.resume(key, with: key)
          return key
        }
      }
      var answers: [UInt64] = []
      for await answer in group { answers.append(answer) }
      return answers
    }
    #expect(answers.count == 1000)
    #expect(!answers.contains(.max), "no waiter was lost")
    #expect(waiters.count == 0)
  }

  @Test func manyWaitersOnOneResumeAll() async throws {
    let waiters = Waiters<UInt64, Int>()
    let total = Shared(0)
    try await withThrowingTaskGroup(of: Void.self) { group in
      for _ in 0..<200 {
        group.addTask {
          let value = await waiters.wait(for: waiters.makeKey(), timeout: Self.patience, orElse: 0)
          total.withLock { $0 += value }
        }
      }
      try await waitUntil("all wait") { waiters.count == 200 }
      #expect(waiters.resumeAll(with: 1) == 200)
      try await group.waitForAll()
    }
    #expect(total.withLock { $0 } == 200)
  }
}

/// A value the tasks of a test share (a local Mutex cannot be captured by many tasks).
private final class Shared<Value: Sendable>: Sendable {
  private let mutex: Mutex<Value>
  init(_ value: Value) { mutex = Mutex(value) }
  func withLock<Result: Sendable>(_ body: (inout Value) -> Result) -> Result { mutex.withLock { body(&$0) } }
}

/// Polls `condition` until it holds; fails the test past `timeout`.
private func waitUntil(
  _ what: String, timeout: Duration = .seconds(10), _ condition: @Sendable () -> Bool
) async throws {
  let deadline = ContinuousClock.now + timeout
  while !condition() {
    guard ContinuousClock.now < deadline else {
      Issue.record("timed out waiting until \(what)")
      return
    }
    try await Task.sleep(for: .milliseconds(1))
  }
}
