import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import Testing

/// shimd with real runc, real processes and real signals. Serialized: several tests
/// measure time (stop timeouts, exec deadlines) and must not compete for 2 cores.
@Suite(.serialized) struct ShimdTests {}

extension ShimdTests {
  @Suite struct Lifecycle {
    @Test(arguments: [("exit 0", Int32(0)), ("exit 1", Int32(1))])
    func lifecycleFromCreatedToExited(script: String, expected: Int32) async throws {
      try await withContainer(script: "sleep 0.3; " + script) { shim in
        let eventsAddress = "ipc://\(shim.dir)/events.ipc"
        let receiver = try IPCEventReceiver(address: eventsAddress, logger: .init(label: "test"))
        defer { receiver.close() }
        try await shim.startShim(events: eventsAddress)

        let created = try await shim.state()
        #expect(created.state == .created)
        #expect(created.pid > 0)
        #expect(created.createdAt > 0)
        #expect(created.startedAt == 0 && created.finishedAt == 0)
        #expect(shim.rootfsMounted)
        #expect(shim.runcState()?.contains("\"created\"") == true)

        let running = try await shim.connect().call(ShimStart.self)
        #expect(running.state == .running || running.state == .exited)
        #expect(running.startedAt >= created.createdAt)

        let exited = try await shim.waitForState(.exited)
        #expect(exited.exitCode == expected)
        #expect(exited.signal == nil)
        #expect(!exited.oomKilled)
        #expect(exited.finishedAt >= exited.startedAt)
        let record = try JSONDecoder().decode(
          ContainerExitRecord.self, from: Data(contentsOf: URL(fileURLWithPath: shim.exitFile)))
        #expect(record == ContainerExitRecord(exitCode: expected, finishedAt: exited.finishedAt, oomKilled: false))

        let started = try await receiveEvent(receiver)
        let startedEvent = try started.decode(ContainerStartedEvent.self)
        #expect(startedEvent.containerID == shim.id)
        #expect(startedEvent.pid == created.pid)
        let exitedEvent = try await receiveEvent(receiver).decode(ContainerExitedEvent.self)
        #expect(
          exitedEvent
            == ContainerExitedEvent(
              containerID: shim.id, exitCode: expected, finishedAt: exited.finishedAt, oomKilled: false))

        // A second start is refused; the container stays exited.
        let again = await expectCrispError { try await shim.connect().call(ShimStart.self) }
        #expect(again?.code == .failedPrecondition)

        let deleted = try await shim.connect().call(ShimDelete.self)
        #expect(deleted.state == .exited)
        try await waitUntil("shimd exits after delete", timeout: .seconds(10)) {
          !(shim.shimProcess?.isRunning ?? false)
        }
        #expect(shim.shimProcess?.exitCode == 0)
        #expect(!shim.rootfsMounted)
        #expect(shim.runcState() == nil)
        #expect(!FileManager.default.fileExists(atPath: "\(shim.runRoot)/shims/\(shim.id).ipc"))
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/\(shim.cgroupName)"))
      }
    }

    @Test func aSIGKILLedContainerExitsWith137() async throws {
      try await withContainer(script: "sleep 1000") { shim in
        try await shim.startShim()
        let running = try await shim.connect().call(ShimStart.self)
        #expect(running.state == .running)
        #expect(kill(running.pid, SIGKILL) == 0)
        let exited = try await shim.waitForState(.exited)
        #expect(exited.exitCode == 137)
        #expect(exited.signal == SIGKILL)
        #expect(!exited.oomKilled)
        let record = try JSONDecoder().decode(
          ContainerExitRecord.self, from: Data(contentsOf: URL(fileURLWithPath: shim.exitFile)))
        #expect(record.exitCode == 137 && record.signal == SIGKILL)
      }
    }

    @Test func stopEscalatesToSIGKILLAfterTheTimeout() async throws {
      try await withContainer(script: "trap '' TERM; sleep 1000") { shim in
        try await shim.startShim()
        _ = try await shim.connect().call(ShimStart.self)
        try await shim.waitForProcess(["sleep", "1000"])
        let clock = ContinuousClock()
        let start = clock.now
        let stopped = try await shim.connect().call(
          ShimStop.self, ShimStop.Request(timeoutSeconds: 2, signal: "TERM"), timeoutMs: 30_000)
        let elapsed = clock.now - start
        #expect(stopped.state == .exited)
        #expect(stopped.exitCode == 137)
        #expect(stopped.signal == SIGKILL)
        #expect(elapsed >= .seconds(2))
        #expect(elapsed < .seconds(10))
        #expect(shim.containerProcesses().isEmpty)

        // Stopping an exited container answers at once.
        let again = try await shim.connect().call(ShimStop.self, ShimStop.Request(timeoutSeconds: 30))
        #expect(again == stopped)
      }
    }

    @Test func stopWithASignalTheContainerHandles() async throws {
      try await withContainer(script: "trap 'exit 7' TERM; while true; do sleep 0.1; done") { shim in
        try await shim.startShim()
        _ = try await shim.connect().call(ShimStart.self)
        try await shim.waitForProcess(["sleep", "0.1"])
        let stopped = try await shim.connect().call(
          ShimStop.self, ShimStop.Request(timeoutSeconds: 20, signal: "SIGTERM"), timeoutMs: 30_000)
        #expect(stopped.exitCode == 7)
        #expect(stopped.signal == nil)
      }
    }

    @Test func stopWithTimeoutZeroKillsAtOnceAndBadRequestsAreRefused() async throws {
      try await withContainer(script: "trap '' TERM; sleep 1000") { shim in
        try await shim.startShim()
        let client = try shim.connect()
        _ = try await client.call(ShimStart.self)
        try await shim.waitForProcess(["sleep", "1000"])

        let badSignal = await expectCrispError {
          try await client.call(ShimStop.self, ShimStop.Request(timeoutSeconds: 1, signal: "SIGFOO"))
        }
        #expect(badSignal?.code == .invalidArgument)
        #expect(badSignal?.message.contains("signal") == true)
        let badNumber = await expectCrispError {
          try await client.call(ShimStop.self, ShimStop.Request(timeoutSeconds: 1, signal: "99"))
        }
        #expect(badNumber?.code == .invalidArgument)
        let negative = await expectCrispError {
          try await client.call(ShimStop.self, ShimStop.Request(timeoutSeconds: -1))
        }
        #expect(negative?.code == .invalidArgument)
        #expect(negative?.message.contains("timeoutSeconds") == true)
        let missing = try await client.roundTrip(
          Array(#"{"v":1,"method":"shim.stop","params":{"signal":"TERM"}}"#.utf8), method: "shim.stop",
          timeoutMs: 5_000)
        #expect(String(decoding: missing, as: UTF8.self).contains("timeoutSeconds"))
        #expect(try await shim.state().state == .running)

        let clock = ContinuousClock()
        let start = clock.now
        let stopped = try await client.call(ShimStop.self, ShimStop.Request(timeoutSeconds: 0), timeoutMs: 30_000)
        #expect(clock.now - start < .seconds(5))
        #expect(stopped.exitCode == 137)
      }
    }

    @Test func aCreatedContainerCanBeDeletedWithoutStarting() async throws {
      try await withContainer(script: "echo never") { shim in
        try await shim.startShim()
        #expect(try await shim.state().state == .created)
        let exec = await expectCrispError {
          try await shim.connect().call(ShimExecSync.self, ShimExecSync.Request(command: ["true"]))
        }
        #expect(exec?.code == .failedPrecondition)
        let deleted = try await shim.connect().call(ShimDelete.self, timeoutMs: 30_000)
        #expect(deleted.state == .exited)
        #expect(deleted.startedAt == 0)
        try await waitUntil("shimd exits", timeout: .seconds(10)) { !(shim.shimProcess?.isRunning ?? false) }
        #expect(shim.runcState() == nil)
        #expect(!shim.rootfsMounted)
        #expect(!shim.readLog().contains("never"))
      }
    }

    @Test func anOOMKilledContainerIsReportedAsSuch() async throws {
      // tail keeps its whole input while it looks for the last lines: /dev/zero has none.
      try await withContainer(script: "exec tail /dev/zero", memoryLimitBytes: 20 << 20) { shim in
        try await shim.startShim()
        _ = try await shim.connect().call(ShimStart.self)
        let exited = try await shim.waitForState(.exited, timeout: .seconds(60))
        #expect(exited.oomKilled)
        #expect(exited.exitCode == 137)
        let record = try JSONDecoder().decode(
          ContainerExitRecord.self, from: Data(contentsOf: URL(fileURLWithPath: shim.exitFile)))
        #expect(record.oomKilled)
      }
    }

    @Test func aSecondShimForTheSameContainerIsRefused() async throws {
      try await withContainer(script: "sleep 1000") { shim in
        try await shim.startShim()
        #expect(try await shim.state().state == .created)
        let second = try shim.daemonize()
        #expect(second.status != 0)
        #expect(second.output.contains("already exists in runc state"), "\(second.output)")
        // The first shim and its container are untouched.
        #expect(try await shim.state().state == .created)
        #expect(shim.rootfsMounted)
      }
    }

    @Test func aFailingCreateReportsRuncsErrorAndLeavesNothing() async throws {
      let fixture = try ShimFixture(script: "true")
      defer { fixture.cleanUp() }
      // An init that does not exist in the root filesystem.
      let configPath = fixture.bundle + "/config.json"
      let text = try String(contentsOfFile: configPath, encoding: .utf8)
        .replacingOccurrences(of: "\"sh\",", with: "\"/no/such/program\",")
      try text.write(toFile: configPath, atomically: true, encoding: .utf8)
      let result = try fixture.daemonize()
      #expect(result.status != 0)
      #expect(result.output.contains("runc create failed"), "\(result.output)")
      #expect(result.output.contains("/no/such/program"), "\(result.output)")
      #expect(!fixture.rootfsMounted)
      #expect(fixture.runcState() == nil)
      // The shim reports after it has cleaned up, and exits right after.
      try await waitUntil("the detached shim exits", timeout: .seconds(5)) { fixture.shimPIDs().isEmpty }
      #expect(!FileManager.default.fileExists(atPath: "\(fixture.runRoot)/shims/\(fixture.id).ipc"))
    }
  }

}

extension ShimdTests {
  /// The CRI log file.
  @Suite struct Log {

    struct Record {
      var timestamp: String
      var stream: String
      var partial: Bool
      var text: String
    }

    static func records(_ log: String) -> [Record] {
      let recordPattern = #/(?s)(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z) (stdout|stderr) ([FP]) (.*)/#
      var out: [Record] = []
      // Split on bytes: "\r\n" (a terminal's line end) is one Character in Swift.
      for bytes in log.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
        let line = String(decoding: bytes, as: UTF8.self)
        guard let match = try? recordPattern.wholeMatch(in: line) else {
          Issue.record("not a CRI log record: \(line.prefix(120))")
          continue
        }
        out.append(
          Record(
            timestamp: String(match.1), stream: String(match.2), partial: match.3 == "P", text: String(match.4)))
      }
      return out
    }

    @Test func outputIsWrittenInTheCRIFormat() async throws {
      let script = """
        echo first line; echo to stderr >&2; head -c 100000 /dev/zero | tr '\\0' a; echo; echo; \
        printf 'no newline at the end'
        """
      try await withContainer(script: script) { shim in
        try await shim.startShim()
        _ = try await shim.connect().call(ShimStart.self)
        _ = try await shim.waitForState(.exited)
        let log = shim.readLog()
        #expect(log.utf8.last == UInt8(ascii: "\n"))
        let records = Self.records(log)
        #expect(records.first?.text == "first line" && records.first?.stream == "stdout")
        #expect(records.first?.partial == false)
        #expect(records.contains { $0.stream == "stderr" && $0.text == "to stderr" && !$0.partial })

        let stdout = records.filter { $0.stream == "stdout" }
        let longStart = try #require(stdout.firstIndex { $0.text.hasPrefix("aaaa") })
        var long = ""
        var index = longStart
        while stdout[index].partial {
          #expect(stdout[index].text.utf8.count == 16 * 1024)
          long += stdout[index].text
          index += 1
        }
        #expect(index - longStart == 100_000 / (16 * 1024))
        long += stdout[index].text
        #expect(long == String(repeating: "a", count: 100_000))
        #expect(stdout[index + 1].text == "" && !stdout[index + 1].partial)  // the empty line
        let last = try #require(stdout.last)
        #expect(last.text == "no newline at the end")
        #expect(last.partial)

        // Timestamps are UTC and ordered.
        let stamps = records.map(\.timestamp)
        #expect(stamps == stamps.sorted())
        let now = ISO8601DateFormatter().string(from: Date()).prefix(10)
        #expect(stamps.allSatisfy { $0.hasPrefix(now) })
        let mode = try FileManager.default.attributesOfItem(atPath: shim.logPath)[.posixPermissions] as? Int
        #expect(mode == 0o640)
      }
    }

    @Test func reopenLogWritesNewLinesToANewFile() async throws {
      try await withContainer(script: "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done") { shim in
        try await shim.startShim()
        let client = try shim.connect()
        _ = try await client.call(ShimStart.self)
        try await waitUntil("the container logs", timeout: .seconds(10)) { shim.readLog().contains("line 3\n") }

        let rotated = shim.logPath + ".1"
        try FileManager.default.moveItem(atPath: shim.logPath, toPath: rotated)
        _ = try await client.call(ShimReopenLog.self)
        #expect(FileManager.default.fileExists(atPath: shim.logPath))
        try await waitUntil("new lines land in the new file", timeout: .seconds(10)) {
          Self.records(shim.readLog()).count >= 3
        }
        let old = Self.records(shim.readLog(rotated))
        let new = Self.records(shim.readLog())
        let lastOldRecord = try #require(old.last)
        let firstNewRecord = try #require(new.first)
        let lastOld = try #require(Int(lastOldRecord.text.dropFirst(5)))
        let firstNew = try #require(Int(firstNewRecord.text.dropFirst(5)))
        // No line is lost or doubled at the rotation.
        #expect(firstNew == lastOld + 1)
        let sizeAfterReopen = readWholeFile(rotated).utf8.count
        try await Task.sleep(for: .milliseconds(300))
        #expect(readWholeFile(rotated).utf8.count == sizeAfterReopen)

        _ = try await client.call(ShimStop.self, ShimStop.Request(timeoutSeconds: 0), timeoutMs: 30_000)
        let refused = await expectCrispError { try await client.call(ShimReopenLog.self) }
        #expect(refused?.code == .failedPrecondition)
      }
    }

    @Test func aTTYContainersOutputLandsInTheLog() async throws {
      try await withContainer(script: "echo hello from a tty; tty; sleep 0.2", tty: true) { shim in
        try await shim.startShim()
        _ = try await shim.connect().call(ShimStart.self)
        let exited = try await shim.waitForState(.exited)
        #expect(exited.exitCode == 0)
        let records = Self.records(shim.readLog())
        #expect(records.allSatisfy { $0.stream == "stdout" })
        // A terminal ends lines with CR LF.
        #expect(records.contains { $0.text == "hello from a tty\r" })
        #expect(records.contains { $0.text.hasPrefix("/dev/pts/") })
      }
    }
  }

}

extension ShimdTests {
  /// ExecSync.
  @Suite struct Exec {
    static func decoded(_ base64: String) -> [UInt8] { Array(Data(base64Encoded: base64) ?? Data()) }

    @Test func execSyncAnswersExitCodeAndOutput() async throws {
      try await withContainer(script: "sleep 1000") { shim in
        try await shim.startShim()
        let client = try shim.connect()
        _ = try await client.call(ShimStart.self)

        let reply = try await client.call(
          ShimExecSync.self,
          ShimExecSync.Request(command: ["sh", "-c", "echo out; echo err >&2; exit 3"], timeoutSeconds: 10))
        #expect(reply.exitCode == 3)
        #expect(Self.decoded(reply.stdout) == Array("out\n".utf8))
        #expect(Self.decoded(reply.stderr) == Array("err\n".utf8))
        #expect(!reply.timedOut && !reply.stdoutTruncated && !reply.stderrTruncated)

        // Binary output, the container's environment and working directory.
        let binary = try await client.call(
          ShimExecSync.self,
          ShimExecSync.Request(command: ["sh", "-c", "printf '\\000\\377'; pwd >&2; echo $PATH >&2"]))
        #expect(Self.decoded(binary.stdout) == [0, 255])
        #expect(String(decoding: Self.decoded(binary.stderr), as: UTF8.self).hasPrefix("/\n/usr/local/sbin"))

        // A program that does not exist: runc's error comes back.
        let missing = try await client.call(ShimExecSync.self, ShimExecSync.Request(command: ["/no/such/thing"]))
        #expect(missing.exitCode != 0)
        #expect(String(decoding: Self.decoded(missing.stderr), as: UTF8.self).contains("/no/such/thing"))

        let empty = await expectCrispError {
          try await client.call(ShimExecSync.self, ShimExecSync.Request(command: []))
        }
        #expect(empty?.code == .invalidArgument)
        #expect(empty?.message.contains("command") == true)
        let negative = await expectCrispError {
          try await client.call(ShimExecSync.self, ShimExecSync.Request(command: ["true"], timeoutSeconds: -5))
        }
        #expect(negative?.code == .invalidArgument)
        #expect(negative?.message.contains("timeoutSeconds") == true)

        // Output above a megabyte comes back whole.
        let big = try await client.call(
          ShimExecSync.self, ShimExecSync.Request(command: ["sh", "-c", "head -c 3000000 /dev/zero"]), timeoutMs: 30_000
        )
        #expect(Self.decoded(big.stdout).count == 3_000_000)
        #expect(!big.stdoutTruncated)
      }
    }

    @Test func execSyncTimesOutAndKillsTheCommand() async throws {
      try await withContainer(script: "sleep 1000") { shim in
        try await shim.startShim()
        let client = try shim.connect()
        _ = try await client.call(ShimStart.self)
        let clock = ContinuousClock()
        let start = clock.now
        let reply = try await client.call(
          ShimExecSync.self, ShimExecSync.Request(command: ["sleep", "100"], timeoutSeconds: 1), timeoutMs: 30_000)
        let elapsed = clock.now - start
        #expect(reply.timedOut)
        #expect(reply.exitCode == 137)
        #expect(elapsed >= .seconds(1))
        // About a second, far from sleep's 100: the deadline runs from runc exec's spawn, and
        // on a loaded 2-core machine runc exec may take a second to write its pid file (the
        // shim waits up to a second for it before the kill) and another to exit after it.
        #expect(elapsed < .seconds(10), "answered after \(elapsed)")
        #expect(processes(withCommandLine: ["sleep", "100"]).filter { shim.containerProcesses().contains($0) }.isEmpty)
        #expect(shim.containerProcesses().count == 1)  // the init only
        #expect(try await shim.state().state == .running)
      }
    }

    @Test func execSyncOutputIsCappedAt16MiB() async throws {
      try await withContainer(script: "sleep 1000") { shim in
        try await shim.startShim()
        let client = try shim.connect()
        _ = try await client.call(ShimStart.self)
        let reply = try await client.call(
          ShimExecSync.self,
          ShimExecSync.Request(command: ["sh", "-c", "head -c 17000000 /dev/zero; echo done >&2"], timeoutSeconds: 60),
          timeoutMs: 90_000)
        #expect(reply.exitCode == 0)
        #expect(Self.decoded(reply.stdout).count == ShimExecSync.maxOutputBytes)
        #expect(reply.stdoutTruncated)
        #expect(Self.decoded(reply.stderr) == Array("done\n".utf8))
        #expect(!reply.stderrTruncated)
      }
    }
  }

}

extension ShimdTests {
  /// What happens to shims and containers when processes around them die.
  @Suite struct Resilience {
    @Test func daemonizeReturnsOnceCreatedAndDetaches() async throws {
      try await withContainer(script: "sleep 1000") { shim in
        let clock = ContinuousClock()
        let start = clock.now
        let launched = try shim.daemonize()
        #expect(launched.status == 0, "\(launched.output)")
        #expect(launched.output.isEmpty)
        #expect(clock.now - start < .seconds(10))
        // Created before the launcher returned.
        #expect(try await shim.state().state == .created)
        let pid = try await shim.shimPID()
        let ids = try #require(processIDs(pid))
        #expect(ids.ppid != getpid())
        #expect(ids.pgrp == pid && ids.session == pid)
        for fd in 0...2 {
          #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")) == "/dev/null")
        }
        // Idle, neither stopped nor a zombie; it may still be finishing the calls just answered.
        try await waitUntil("the shim sleeps", timeout: .seconds(5)) {
          statusField(pid, "State")?.hasPrefix("S") == true
        }
        let running = try await shim.connect().call(ShimStart.self)
        #expect(running.state == .running)
        // The container's init is the shim's child: shimd is its subreaper.
        #expect(processIDs(running.pid)?.ppid == pid)
        #expect(FileManager.default.fileExists(atPath: shim.bundle + "/shimd.log"))
      }
    }

    @Test func theShimSurvivesItsLaunchersSIGKILLAndIgnoresSIGTERM() async throws {
      try await withContainer(script: "while true; do echo alive; sleep 0.1; done") { shim in
        // The launcher is the shim's parent, like frontd launching a shim in the foreground.
        let launcher = try Child.spawn(
          "/bin/sh", ["-c", "\"$0\" \"$@\" & wait", binaryPath("shimd")] + shim.arguments())
        defer { launcher.killAndWait() }
        try await waitUntil("shimd serves", timeout: .seconds(20)) {
          FileManager.default.fileExists(atPath: "\(shim.runRoot)/shims/\(shim.id).ipc")
        }
        let client = try shim.connect()
        _ = try await client.call(ShimStart.self)
        let pid = try await shim.shimPID()
        #expect(processIDs(pid)?.ppid == launcher.pid)

        launcher.killAndWait()
        #expect(launcher.exitCode == 137)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await client.call(Health.self).pid == pid)
        #expect(try await shim.state().state == .running)

        kill(pid, SIGTERM)
        kill(pid, SIGINT)
        kill(pid, SIGHUP)
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await client.call(Health.self).pid == pid)
        #expect(try await shim.state().state == .running)
        // The container still logs through it.
        let size = shim.readLog().utf8.count
        try await waitUntil("the log grows", timeout: .seconds(5)) { shim.readLog().utf8.count > size }

        _ = try await client.call(ShimDelete.self, timeoutMs: 30_000)
        try await waitUntil("shimd exits", timeout: .seconds(10)) { kill(pid, 0) != 0 }
        #expect(shim.runcState() == nil)
      }
    }

    @Test func aSIGKILLedShimLeavesItsContainerRunning() async throws {
      try await withContainer(script: "sleep 1000") { shim in
        try await shim.startShim()
        let running = try await shim.connect().call(ShimStart.self)
        shim.shimProcess?.killAndWait()
        try await Task.sleep(for: .milliseconds(300))
        #expect(kill(running.pid, 0) == 0)
        #expect(shim.runcState()?.contains("\"running\"") == true)
        #expect(!FileManager.default.fileExists(atPath: shim.exitFile))
        // Cleaned up by runc directly (the fixture's cleanUp does it too).
        let killed = try Child.run(ShimFixture.runc, ["--root", shim.runtimeRoot, "kill", shim.id, "KILL"])
        #expect(killed.status == 0)
        let deleted = try Child.run(ShimFixture.runc, ["--root", shim.runtimeRoot, "delete", "--force", shim.id])
        #expect(deleted.status == 0, "\(deleted.output)")
      }
    }

    @Test func aShimWithItsContainerMapsNoFoundationNIOOrGRPC() async throws {
      try await withContainer(script: "sleep 1000") { shim in
        try await shim.startShim()
        _ = try await shim.connect().call(ShimStart.self)
        let pid = try await shim.shimPID()
        let maps = readWholeFile("/proc/\(pid)/maps")
        for library in ["libFoundation.so", "lib_FoundationICU.so", "libFoundationNetworking.so", "NIO", "GRPC"] {
          #expect(!maps.contains(library), "shimd maps \(library)")
        }
        let anonKB = Int(statusField(pid, "RssAnon")?.split(separator: " ").first ?? "") ?? 0
        // The budget (1 MB) is for release builds; this guards against gross regressions
        // in whatever configuration the tests run.
        #expect(anonKB > 0 && anonKB < 4096, "RssAnon \(anonKB) kB")
      }
    }
  }

}

func receiveEvent(_ receiver: IPCEventReceiver, timeout: Duration = .seconds(10)) async throws -> ReceivedEvent {
  try await withThrowingTaskGroup(of: ReceivedEvent?.self) { group in
    group.addTask { await receiver.next() }
    group.addTask {
      try await Task.sleep(for: timeout)
      return nil
    }
    defer { group.cancelAll() }
    guard let event = try await group.next() ?? nil else { throw FixtureError("no event within \(timeout)") }
    return event
  }
}
