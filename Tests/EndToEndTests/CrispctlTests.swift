import CrispTestSupport
import Foundation
import Testing

/// crispctl against a running instance.
@Suite struct CrispctlTests {
  @Test func statusIPCAndShims() async throws {
    try await withCrisp { crisp in
      try await crisp.startAll()
      let status = try runProgram(binaryPath("crispctl"), ["status", "--config", crisp.configPath])
      #expect(status.status == 0, "\(status.output)")
      for daemon in ["imaged", "netd", "cri-frontd"] {
        #expect(
          status.output.contains("\(daemon): up pid=\(crisp.pid(CrispInstance.Daemon(rawValue: daemon)!) ?? -1)"),
          "\(status.output)")
      }
      #expect(status.output.contains("seccomp="))
      #expect(status.output.contains("effective:"))

      let ping = try runProgram(
        binaryPath("crispctl"), ["ipc", "--config", crisp.configPath, "netd", "ping", #"{"payload":"over ipc"}"#])
      #expect(ping.status == 0)
      #expect(ping.output.contains(#""payload":"over ipc""#))

      let bad = try runProgram(
        binaryPath("crispctl"), ["ipc", "--config", crisp.configPath, "netd", "netd.status", #"{"podID":"../x"}"#])
      #expect(bad.status != 0)
      #expect(bad.output.contains("invalidArgument"))

      let shims = try runProgram(binaryPath("crispctl"), ["shims", "--config", crisp.configPath])
      #expect(shims.status == 0)
      #expect(shims.output.contains("no shims"))

      // With netd stopped, status says so and exits non-zero.
      try await crisp.stop(.netd)
      let down = try runProgram(
        binaryPath("crispctl"), ["status", "--config", crisp.configPath, "--timeout-ms", "300"])
      #expect(down.status != 0)
      #expect(down.output.contains("netd: down"))
    }
  }
}
