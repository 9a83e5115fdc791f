import CrispTestSupport
import Foundation
import Testing

/// No other root process, however many capabilities it holds short of CAP_SYS_PTRACE,
/// opens a daemon's memory: each daemon makes itself not dumpable. (A dumpable frontd,
/// which holds no capability, could be rewritten through /proc/<pid>/mem by imaged,
/// netd, a CNI plugin or any capability-less root process, and drive its launcher.)
@Suite struct DaemonMemoryTests {
  /// Opens /proc/<pid>/mem from a root process with every capability but SYS_PTRACE
  /// (a superset of each daemon's) and answers "opened" or the error.
  static func openMemory(_ pid: Int32) throws -> String {
    let result = try runProgram(
      "/usr/bin/setpriv",
      [
        "--bounding-set=-sys_ptrace", "--", "/usr/bin/python3", "-c",
        """
        try:
            open('/proc/\(pid)/mem', 'rb').close(); print('opened')
        except OSError as e:
            print(e.strerror)
        """,
      ])
    return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  @Test func noDaemonsMemoryOpensWithoutCapSysPtrace() async throws {
    // The control: a process with the prober's own capabilities, dumpable, opens.
    let control = Process()
    control.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
    control.arguments = ["--bounding-set=-sys_ptrace", "--", "/bin/sleep", "60"]
    try control.run()
    defer {
      kill(control.processIdentifier, SIGKILL)  // SIGTERM may be ignored, inherited from the test runner
      control.waitUntilExit()
    }
    try await waitUntil("the control runs sleep", timeout: .seconds(5)) {
      readWholeFile("/proc/\(control.processIdentifier)/cmdline").hasPrefix("/bin/sleep")
    }
    #expect(try Self.openMemory(control.processIdentifier) == "opened")

    try await withCrisp { crisp in
      try await crisp.startAll()
      for daemon in CrispInstance.Daemon.allCases {
        let pid = try #require(crisp.pid(daemon))
        #expect(try Self.openMemory(pid) == "Permission denied", "\(daemon.rawValue)")
        #expect(crisp.log(daemon).contains("dumpable=false"), "\(daemon.rawValue) logs it")
      }
    }
  }
}
