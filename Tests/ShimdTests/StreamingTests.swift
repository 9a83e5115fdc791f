import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import Testing

/// Streaming exec and attach sessions (the backends of the streaming server), over
/// the session socket a real shim answers, with real runc and real processes.
extension ShimdTests {
  @Suite struct Streaming {
    /// A running container whose init sleeps; exec sessions run beside it.
    static func withRunningContainer(
      script: String = "sleep 1000", tty: Bool = false, extra: [String] = [],
      _ body: (ShimFixture) async throws -> Void
    ) async throws {
      try await withContainer(script: script, tty: tty) { shim in
        try await shim.startShim(extra: extra)
        _ = try await shim.connect().call(ShimStart.self)
        try await body(shim)
      }
    }

    static func exec(_ shim: ShimFixture, _ request: ShimStreamExec.Request) async throws -> SessionClient {
      let answer = try await shim.connect().call(ShimStreamExec.self, request)
      #expect(answer.socketPath.hasPrefix(shim.bundle + "/"))
      let mode = try FileManager.default.attributesOfItem(atPath: answer.socketPath)[.posixPermissions] as? Int
      #expect(mode == 0o600)
      let client = try SessionClient(path: answer.socketPath)
      // Connected: the path is gone (nobody else can connect).
      try await waitUntil("the session socket is unlinked", timeout: .seconds(5)) {
        !FileManager.default.fileExists(atPath: answer.socketPath)
      }
      return client
    }

    @Test func execWithPipesRelaysStdoutStderrAndTheExitCode() async throws {
      try await Self.withRunningContainer { shim in
        let client = try await Self.exec(
          shim, .init(command: ["sh", "-c", "echo out; echo err >&2; echo more; exit 3"], stdout: true, stderr: true))
        let result = try client.collect()
        #expect(result.stdoutText == "out\nmore\n")
        #expect(result.stderrText == "err\n")
        #expect(result.exitCode == 3)
        #expect(result.eofAfterEnd)

        let zero = try await Self.exec(shim, .init(command: ["echo", "hello"]))
        let ok = try zero.collect()
        #expect(ok.stdoutText == "hello\n" && ok.exitCode == 0)

        // stdout only: stderr goes nowhere.
        let quiet = try await Self.exec(
          shim, .init(command: ["sh", "-c", "echo out; echo err >&2"], stdout: true, stderr: false))
        let only = try quiet.collect()
        #expect(only.stdoutText == "out\n" && only.stderr.isEmpty && only.exitCode == 0)
        // Nothing left behind in the bundle.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: shim.bundle).filter {
          $0.hasPrefix(".stream-") || $0.hasPrefix("stream-")
        }
        #expect(leftovers.isEmpty, "\(leftovers)")
      }
    }

    @Test func aCommandThatCannotStartEndsWithAnError() async throws {
      try await Self.withRunningContainer { shim in
        let client = try await Self.exec(shim, .init(command: ["/no/such/program"]))
        let result = try client.collect()
        let error = result.end?["error"] as? String
        #expect(error?.contains("/no/such/program") == true, "\(result.end ?? [:])")
        #expect(result.exitCode == nil)
      }
    }

    @Test func stdinReachesCatAndItsEOFEndsIt() async throws {
      try await Self.withRunningContainer { shim in
        let client = try await Self.exec(shim, .init(command: ["cat"], stdin: true, stdout: true, stderr: true))
        // 4 MiB in frames of up to 1 MiB, written while the output is read: the
        // shim applies back-pressure both ways instead of buffering.
        var generator = SystemRandomNumberGenerator()
        var random = [UInt8](repeating: 0, count: 4 << 20)
        random.withUnsafeMutableBytes { bytes in
          for i in stride(from: 0, to: bytes.count, by: 8) {
            bytes.storeBytes(of: generator.next() as UInt64, toByteOffset: i, as: UInt64.self)
          }
        }
        let input = random
        let writer = Task.detached {
          var offset = 0
          for size in [1, 100, 1 << 20, 65_536, 3_000_000] where offset < input.count {
            let end = min(input.count, offset + min(size, 1 << 20))
            try client.send(.stdin, Array(input[offset..<end]))
            offset = end
          }
          while offset < input.count {
            let end = min(input.count, offset + (1 << 20))
            try client.send(.stdin, Array(input[offset..<end]))
            offset = end
          }
          try client.send(.stdinEOF)
        }
        let result = try client.collect(timeout: 60)
        try await writer.value
        #expect(result.stdout.count == input.count)
        #expect(result.stdout == input)
        #expect(result.exitCode == 0)
      }
    }

    @Test func execOutputStreamsAt100MiBWithoutLoss() async throws {
      try await Self.withRunningContainer { shim in
        let shimPid = try await shim.shimPID()
        func cpuTicks() -> Int {
          let stat = readWholeFile("/proc/\(shimPid)/stat")
          let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
          return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
        }
        let ticksBefore = cpuTicks()
        let client = try await Self.exec(
          shim, .init(command: ["dd", "if=/dev/zero", "bs=65536", "count=1600"], stderr: false))
        let clock = ContinuousClock()
        let start = clock.now
        var total = 0
        var nonZero = false
        var end: [UInt8]? = nil
        while let frame = try client.next(timeout: 60) {
          if frame.channel == SessionClient.Channel.end.rawValue {
            end = frame.payload
            break
          }
          #expect(frame.channel == SessionClient.Channel.stdout.rawValue)
          #expect(frame.payload.count <= 1 << 20)
          total += frame.payload.count
          if !nonZero && frame.payload.contains(where: { $0 != 0 }) { nonZero = true }
        }
        let seconds =
          Double((clock.now - start).components.attoseconds) / 1e18 + Double((clock.now - start).components.seconds)
        let shimCPU = Double(cpuTicks() - ticksBefore) / Double(sysconf(Int32(_SC_CLK_TCK)))
        print(
          "exec stdout throughput: \(Int(Double(total) / seconds / 1e6)) MB/s (\(total) bytes in \(seconds) s; "
            + "shimd used \(shimCPU) s of CPU)")
        #expect(total == 104_857_600)
        #expect(!nonZero)
        #expect(end.map { String(decoding: $0, as: UTF8.self) } == #"{"exitCode":0}"#)
      }
    }

    /// Sessions are threads and buffers for their life only: after the first ones
    /// (which instantiate type metadata once), more sessions leave the shim's private
    /// memory nearly where it was. The budget (1 MB) is for release builds: run with
    /// CRISP_BIN_DIR=.build/release to check it.
    @Test func sessionsLeaveNoMemoryBehind() async throws {
      try await Self.withRunningContainer(script: "while true; do echo tick; sleep 0.2; done") { shim in
        let pid = try await shim.shimPID()
        func anonKB() -> Int { Int(statusField(pid, "RssAnon")?.split(separator: " ").first ?? "") ?? 0 }
        func sessions(_ rounds: Int) async throws {
          for _ in 0..<rounds {
            let exec = try await Self.exec(
              shim, .init(command: ["head", "-c", "10000000", "/dev/zero"], stderr: false))
            #expect(try exec.collect(timeout: 60).exitCode == 0)
            let tty = try await Self.exec(
              shim,
              .init(command: ["sh", "-c", "stty size"], tty: true, stdout: true, stderr: false, width: 10, height: 5))
            #expect(try tty.collect().stdoutText.contains("5 10"))
            let answer = try await shim.connect().call(ShimStreamAttach.self, .init(stdout: true, stderr: false))
            let attach = try SessionClient(path: answer.socketPath)
            _ = try attach.collect { $0.stdoutText.contains("tick") }
            attach.close()
          }
        }
        /// Once the shim trimmed its heap (half a second after a session ends).
        func settled(atMost limit: Int) async -> Int {
          var value = anonKB()
          try? await waitUntil("the shim's private memory settles", timeout: .seconds(5)) {
            value = anonKB()
            return value <= limit
          }
          return value
        }
        try await Task.sleep(for: .seconds(1))
        let idle = anonKB()
        try await sessions(1)
        let afterFirst = await settled(atMost: idle + 128)
        try await sessions(5)
        let afterMore = await settled(atMost: afterFirst)
        print(
          "shimd RssAnon with a running container: \(idle) kB idle, \(afterFirst) kB after the first sessions, \(afterMore) kB after 15 more"
        )
        #expect(idle > 0 && idle < 4096, "RssAnon \(idle) kB")
        // A session's buffers alone are 128 KiB: a leak of them would show at once. What
        // does grow (about 1-3 kB a session, as ExecSync and even shim.state grow the heap
        // by a little on every call) stays well under that.
        #expect(afterMore <= afterFirst + 96, "RssAnon grew from \(afterFirst) kB to \(afterMore) kB over 15 sessions")
      }
    }

    @Test func aTTYExecSeesItsTerminalAndResizes() async throws {
      try await Self.withRunningContainer { shim in
        let client = try await Self.exec(
          shim,
          .init(
            command: ["sh", "-c", "tty; stty size; echo $TERM; read line; echo got $line; stty size"], tty: true,
            stdin: true, stdout: true, stderr: false, width: 80, height: 24))
        let first = try client.collect { $0.stdoutText.contains("xterm") }
        #expect(first.stdoutText.contains("/dev/pts/"), "\(first.stdoutText) \(first.end ?? [:])")
        #expect(first.stdoutText.contains("24 80"), "\(first.stdoutText)")
        #expect(first.stderr.isEmpty)
        try client.resize(width: 132, height: 43)
        try client.send(.stdin, "go\n")
        let rest = try client.collect()
        #expect(rest.stdoutText.contains("got go"), "\(rest.stdoutText)")
        #expect(rest.stdoutText.contains("43 132"), "\(rest.stdoutText)")
        #expect(rest.exitCode == 0)
      }
    }

    @Test func aTTYExecReadsEOFFromStdinEOF() async throws {
      try await Self.withRunningContainer { shim in
        let client = try await Self.exec(
          shim,
          .init(command: ["sh", "-c", "cat; echo cat-ended"], tty: true, stdin: true, stdout: true, stderr: false))
        try client.send(.stdin, "line\n")
        _ = try client.collect { $0.stdoutText.contains("line\r\nline") }  // echo, then cat's copy
        try client.send(.stdinEOF)
        let result = try client.collect()
        #expect(result.stdoutText.contains("cat-ended"))
        #expect(result.exitCode == 0)
      }
    }

    @Test(arguments: [false, true])
    func aClientThatGoesAwayKillsTheCommandAndWhatItStarted(tty: Bool) async throws {
      try await Self.withRunningContainer { shim in
        let client = try await Self.exec(
          shim,
          .init(
            command: ["sh", "-c", "sleep 1001 & sleep 1002 & echo started; sleep 1003"], tty: tty, stdin: tty,
            stdout: true, stderr: !tty))
        _ = try client.collect { $0.stdoutText.contains("started") }
        // The background sleeps are forked before `echo`, but may not have exec'd yet.
        for seconds in ["1001", "1002", "1003"] { try await shim.waitForProcess(["sleep", seconds]) }
        // This container's only: a sleep of another run on the machine is none of this test's.
        let inContainer = Set(shim.containerProcesses())
        let pids = ["1001", "1002", "1003"].flatMap { processes(withCommandLine: ["sleep", $0]) }
          .filter { inContainer.contains($0) }
        #expect(pids.count == 3)
        client.close()
        try await waitUntil("the exec'd processes are gone", timeout: .seconds(10)) {
          pids.allSatisfy { !FileManager.default.fileExists(atPath: "/proc/\($0)") || isZombie($0) }
        }
        // The container itself is untouched.
        #expect(try await shim.state().state == .running)
        #expect(!shim.containerProcesses().isEmpty)
      }
    }

    @Test func badRequestsAreRefusedWithClearErrors() async throws {
      try await withContainer(script: "sleep 1000") { shim in
        try await shim.startShim()
        let client = try shim.connect()
        let notRunning = await expectCrispError {
          try await client.call(ShimStreamExec.self, .init(command: ["true"]))
        }
        #expect(notRunning?.code == .failedPrecondition)
        _ = try await client.call(ShimStart.self)
        let empty = await expectCrispError { try await client.call(ShimStreamExec.self, .init(command: [])) }
        #expect(empty?.code == .invalidArgument)
        let ttyAndStderr = await expectCrispError {
          try await client.call(ShimStreamExec.self, .init(command: ["true"], tty: true, stderr: true))
        }
        #expect(ttyAndStderr?.code == .invalidArgument)
        #expect(ttyAndStderr?.message.contains("stderr") == true)
        let noStreams = await expectCrispError {
          try await client.call(
            ShimStreamAttach.self, .init(tty: false, stdin: false, stdout: false, stderr: false))
        }
        #expect(noStreams?.code == .invalidArgument)
        let ttyMismatch = await expectCrispError {
          try await client.call(ShimStreamAttach.self, .init(tty: true, stdout: true, stderr: false))
        }
        #expect(ttyMismatch?.code == .failedPrecondition)
        #expect(ttyMismatch?.message.contains("terminal") == true)
      }
    }

    @Test func aSessionNobodyConnectsToIsGivenUpAndRunsNothing() async throws {
      try await Self.withRunningContainer { shim in
        let answer = try await shim.connect().call(ShimStreamExec.self, .init(command: ["touch", "/tmp/ran"]))
        #expect(FileManager.default.fileExists(atPath: answer.socketPath))
        try await waitUntil("the unused socket is removed", timeout: .seconds(15)) {
          !FileManager.default.fileExists(atPath: answer.socketPath)
        }
        #expect(!FileManager.default.fileExists(atPath: shim.bundle + "/rootfs/tmp/ran"))
      }
    }

    @Test func attachGetsTheContainersOutputAndTheLogKeepsEveryLine() async throws {
      let script = "for i in $(seq 1 300); do echo line$i; echo err$i >&2; done; sleep 0.2; exit 4"
      try await withContainer(script: script) { shim in
        try await shim.startShim()
        let answer = try await shim.connect().call(ShimStreamAttach.self, .init(stdout: true, stderr: true))
        let client = try SessionClient(path: answer.socketPath)
        try await waitUntil("attached", timeout: .seconds(5)) {
          !FileManager.default.fileExists(atPath: answer.socketPath)
        }
        _ = try await shim.connect().call(ShimStart.self)
        let result = try client.collect()
        let expected = (1...300).map { "line\($0)\n" }.joined()
        #expect(result.stdoutText == expected)
        #expect(result.stderrText == (1...300).map { "err\($0)\n" }.joined())
        #expect(result.exitCode == 4)
        #expect(result.eofAfterEnd)
        let logged = ShimdTests.Log.records(shim.readLog())
        #expect(logged.filter { $0.stream == "stdout" }.map(\.text) == (1...300).map { "line\($0)" })
        #expect(logged.filter { $0.stream == "stderr" }.count == 300)
      }
    }

    @Test func attachStdinReachesTheContainerAndDetachLeavesItRunning() async throws {
      try await Self.withRunningContainer(
        script: "while read line; do echo got $line; done; echo stdin-closed; sleep 1000", extra: ["--stdin"]
      ) { shim in
        let answer = try await shim.connect().call(
          ShimStreamAttach.self, .init(stdin: true, stdout: true, stderr: false))
        let first = try SessionClient(path: answer.socketPath)
        try first.send(.stdin, "one\n")
        _ = try first.collect { $0.stdoutText.contains("got one") }
        // EOF without stdin_once only ends this session's input; detaching leaves the container be.
        try first.send(.stdinEOF)
        first.close()

        let again = try await shim.connect().call(
          ShimStreamAttach.self, .init(stdin: true, stdout: true, stderr: false))
        let second = try SessionClient(path: again.socketPath)
        try second.send(.stdin, "two\n")
        let result = try second.collect { $0.stdoutText.contains("got two") }
        #expect(!result.stdoutText.contains("stdin-closed"))
        #expect(try await shim.state().state == .running)
        #expect(shim.readLog().contains("got one") && shim.readLog().contains("got two"))
      }
    }

    @Test func stdinOnceClosesTheContainersStdinWhenTheAttachEnds() async throws {
      try await Self.withRunningContainer(
        script: "cat; echo stdin-closed; exit 5", extra: ["--stdin", "--stdin-once"]
      ) { shim in
        let answer = try await shim.connect().call(
          ShimStreamAttach.self, .init(stdin: true, stdout: true, stderr: false))
        let client = try SessionClient(path: answer.socketPath)
        try client.send(.stdin, "hello\n")
        try client.send(.stdinEOF)
        let result = try client.collect()
        #expect(result.stdoutText == "hello\nstdin-closed\n")
        #expect(result.exitCode == 5)
      }
    }

    @Test func attachToATTYContainerTypesIntoItsTerminalAndResizesIt() async throws {
      try await Self.withRunningContainer(
        script: "read line; echo got $line; stty size; sleep 1000", tty: true, extra: ["--stdin"]
      ) { shim in
        let answer = try await shim.connect().call(
          ShimStreamAttach.self, .init(tty: true, stdin: true, stdout: true, stderr: false))
        let client = try SessionClient(path: answer.socketPath)
        try client.resize(width: 99, height: 33)
        try client.send(.stdin, "typed\n")
        let result = try client.collect { $0.stdoutText.contains("33 99") }
        #expect(result.stdoutText.contains("got typed"))
      }
    }
  }
}

/// A process that has exited but is not yet reaped counts as gone.
func isZombie(_ pid: Int32) -> Bool {
  statusField(pid, "State")?.hasPrefix("Z") ?? true
}
