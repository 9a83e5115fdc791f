import CrispCore
import Synchronization
import Testing

/// The fan-out behind GetContainerEvents: every subscriber gets every element in order,
/// and one that stops reading is dropped without holding up the publisher or the others.
@Suite struct FanoutTests {
  @Test func everySubscriberGetsEveryElementInOrder() async {
    let fanout = Fanout<Int>(bufferSize: 16)
    let a = fanout.subscribe()
    let b = fanout.subscribe()
    #expect(fanout.subscriberCount == 2)
    for n in 0..<10 { fanout.publish(n) }
    fanout.close()
    var gotA: [Int] = []
    for await n in a.elements { gotA.append(n) }
    var gotB: [Int] = []
    for await n in b.elements { gotB.append(n) }
    #expect(gotA == Array(0..<10))
    #expect(gotB == Array(0..<10))
    #expect(!a.dropped && !b.dropped, "closed, not dropped")
  }

  @Test func aSlowSubscriberIsDroppedAndTheOthersCarryOn() async throws {
    let fanout = Fanout<Int>(bufferSize: 8)
    let slow = fanout.subscribe()
    let reader = fanout.subscribe()
    let got = Mutex<[Int]>([])
    let reading = Task { for await n in reader.elements { got.withLock { $0.append(n) } } }
    // Publishing never waits; the reader keeps up (5 at a time), the slow one reads nothing.
    for batch in 0..<10 {
      for n in (batch * 5)..<(batch * 5 + 5) { fanout.publish(n) }
      let deadline = ContinuousClock.now + .seconds(10)
      while got.withLock({ $0.count }) < batch * 5 + 5 && ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(1))
      }
    }
    #expect(got.withLock { $0 } == Array(0..<50))
    #expect(slow.dropped)
    #expect(!reader.dropped)
    #expect(fanout.subscriberCount == 1, "only the reader is left")
    var buffered: [Int] = []
    for await n in slow.elements { buffered.append(n) }
    #expect(buffered == Array(0..<8), "what it had buffered, then the end")
    fanout.close()
    await reading.value
  }

  @Test func subscribingAfterCloseEndsAtOnce() async {
    let fanout = Fanout<String>(bufferSize: 4)
    fanout.close()
    let late = fanout.subscribe()
    fanout.publish("x")
    var got: [String] = []
    for await s in late.elements { got.append(s) }
    #expect(got.isEmpty)
    #expect(fanout.subscriberCount == 0)
  }

  @Test func aCancelledReaderUnsubscribes() async throws {
    let fanout = Fanout<Int>(bufferSize: 4)
    let subscription = fanout.subscribe()
    let task = Task { for await _ in subscription.elements {} }
    task.cancel()
    await task.value
    fanout.publish(1)
    #expect(fanout.subscriberCount == 0)
  }
}
