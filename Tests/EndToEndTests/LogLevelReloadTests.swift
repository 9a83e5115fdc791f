import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import Testing

/// SIGHUP makes each daemon read its configuration again and apply its log level,
/// unless --log-level was given; either way the daemon lives on. The debug line that
/// shows the level is debug.syscall's (test hooks), which every daemon can log.
@Suite struct LogLevelReloadTests {
  typealias Daemon = CrispInstance.Daemon

  static func setLogLevel(_ level: String, in crisp: CrispInstance) throws {
    let config = try String(contentsOfFile: crisp.configPath, encoding: .utf8)
    let lines = config.split(separator: "\n", omittingEmptySubsequences: false).map {
      $0.hasPrefix("log_level = ") ? "log_level = \"\(level)\"" : String($0)
    }
    try lines.joined(separator: "\n").write(toFile: crisp.configPath, atomically: true, encoding: .utf8)
  }

  static func debugLines(_ crisp: CrispInstance, _ daemon: Daemon) -> Int {
    crisp.log(daemon).split(separator: "\n").filter { $0.contains(" DEBUG ") && $0.contains("debug.syscall") }.count
  }

  static func reloads(_ crisp: CrispInstance, _ daemon: Daemon) -> Int {
    crisp.log(daemon).split(separator: "\n").filter { $0.contains("configuration reloaded") }.count
  }

  @Test(arguments: [false, true])
  func sighupAppliesTheFilesLevelUnlessGivenOnTheCommandLine(commandLine: Bool) async throws {
    try await withCrisp { crisp in
      try Self.setLogLevel("info", in: crisp)
      let extra = ["--test-hooks"] + (commandLine ? ["--log-level", "info"] : [])
      for daemon in Daemon.allCases { try crisp.start(daemon, arguments: extra) }
      try await crisp.waitForCRI()
      for daemon in Daemon.allCases {
        try await waitUntil("\(daemon.rawValue) answers", timeout: .seconds(20)) {
          (try? await ForbiddenSyscallTests.client(crisp, daemon).call(Health.self)) != nil
        }
        _ = try await ForbiddenSyscallTests.probe(crisp, daemon, "ptrace")
        #expect(Self.debugLines(crisp, daemon) == 0, "\(daemon.rawValue) logs no debug line at info")
      }

      try Self.setLogLevel("debug", in: crisp)
      for daemon in Daemon.allCases {
        let pid = try #require(crisp.pid(daemon))
        kill(pid, SIGHUP)
        try await waitUntil("\(daemon.rawValue) reloads", timeout: .seconds(10)) { Self.reloads(crisp, daemon) == 1 }
        _ = try await ForbiddenSyscallTests.probe(crisp, daemon, "ptrace")
        try await ForbiddenSyscallTests.expectServing(crisp, daemon)
        #expect(crisp.pid(daemon) == pid)
        if commandLine {
          #expect(crisp.log(daemon).contains("(--log-level)"), "\(daemon.rawValue) says why the level stays")
          #expect(Self.debugLines(crisp, daemon) == 0, "\(daemon.rawValue) keeps --log-level info")
        } else {
          #expect(Self.debugLines(crisp, daemon) == 1, "\(daemon.rawValue) logs at debug after SIGHUP")
        }
      }
    }
  }
}
