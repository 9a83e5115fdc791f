import CrispTestSupport
import Foundation
import Testing

/// crispctl's view of frontd (its own IPC socket) and of a running container's shim.
extension CrispctlTests {
  @Test func statusShowsFrontdsVersionAndUptimeAndShimsShowTheirContainer() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let status = try runProgram(binaryPath("crispctl"), ["status", "--config", crisp.configPath])
      #expect(status.status == 0, "\(status.output)")
      let frontdPid = crisp.pid(.frontd) ?? -1
      let frontd = status.output.split(separator: "\n").first { $0.hasPrefix("cri-frontd:") } ?? ""
      #expect(frontd.hasPrefix("cri-frontd: up pid=\(frontdPid) version="), "\(status.output)")
      #expect(frontd.contains(" uptime=") && frontd.contains("seccomp=filter no_new_privs=true"), "\(frontd)")
      #expect(status.output.contains("  effective: none\n  bounding:  none"), "\(status.output)")

      let health = try runProgram(
        binaryPath("crispctl"), ["ipc", "--config", crisp.configPath, "cri-frontd", "health"])
      #expect(health.status == 0)
      #expect(health.output.contains(#""daemon":"cri-frontd""#) && health.output.contains(#""pid":\#(frontdPid)"#))

      let image = "\(registry.address)/crisp/busybox:latest"
      _ = try await crisp.pull(image)
      let id = try await crisp.createContainer(
        podID: podID, name: "main", image: image, command: ["sh", "-c", "while true; do sleep 1; done"])
      let created = try runProgram(binaryPath("crispctl"), ["shims", "--config", crisp.configPath])
      #expect(created.output.contains("\(id) pid=") && created.output.contains(" state=created "), "\(created.output)")

      try await crisp.startContainer(id)
      let containerPid = try await crisp.containerStatus(id, verbose: true).info["info"].flatMap { info in
        (try? JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])?["pid"] as? Int
      }
      let running = try runProgram(binaryPath("crispctl"), ["shims", "--config", crisp.configPath])
      #expect(running.status == 0)
      #expect(running.output.contains(" state=running container_pid="), "\(running.output)")
      if let containerPid { #expect(running.output.contains("container_pid=\(containerPid)"), "\(running.output)") }

      try await crisp.stopContainer(id, timeout: 0)
      let exited = try runProgram(binaryPath("crispctl"), ["shims", "--config", crisp.configPath])
      #expect(exited.output.contains(" state=exited ") && exited.output.contains(" exit_code="), "\(exited.output)")
      try await crisp.removeContainer(id)
    }
  }
}
