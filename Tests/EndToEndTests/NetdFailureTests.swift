import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import Testing

/// netd when plugins and callers misbehave.
@Suite struct NetdFailureTests {
  @Test func aFailedCleanupKeepsTheRecordSoTeardownRetries() async throws {
    try await withNetd { netd in
      let marker = netd.dir + "/del-fails"
      try netd.installPlugin(
        "crisp-flaky",
        script: """
          #!/bin/sh
          cat > /dev/null
          if [ "$CNI_COMMAND" = ADD ]; then echo '{"code": 11, "msg": "add refused"}'; exit 1; fi
          if [ -e \(marker) ]; then echo '{"code": 11, "msg": "del refused"}'; exit 1; fi
          exit 0
          """)
      _ = FileManager.default.createFile(atPath: marker, contents: nil)
      try netd.writeBridgeConfig(extraPlugins: [#"{"type": "crisp-flaky"}"#])
      try await netd.start()

      let id = NetdInstance.podID()
      let error = await #expect(throws: CrispError.self) { try await netd.setup(id) }
      #expect(error?.message.contains("add refused") == true)
      // DEL failed too: the pod is still known, so its lease is not lost for good.
      let list = try await netd.client.call(PodNetworkList.self)
      #expect(list.pods.map(\.podID) == [id])
      let failedTeardown = await #expect(throws: CrispError.self) { try await netd.teardown(id) }
      #expect(failedTeardown?.message.contains("del refused") == true)

      try FileManager.default.removeItem(atPath: marker)
      try await netd.teardown(id)
      try netd.expectNothingLeft()
    }
  }

  @Test func podNamesCannotSmuggleCNIArguments() async throws {
    try await withNetd { netd in
      try netd.writeBridgeConfig()
      try await netd.start()
      let injected = await #expect(throws: CrispError.self) {
        try await netd.setup(NetdInstance.podID(), name: "x;IP=\(netd.subnetPrefix).9")
      }
      #expect(injected?.code == .invalidArgument)
      #expect(injected?.message.contains("pod name") == true)
      #expect(netd.leasedIPs().isEmpty)
    }
  }

  @Test func aHungPluginIsKilledAtItsDeadline() async throws {
    try await withNetd { netd in
      // The grandchild keeps stdout open: the deadline must still end the call.
      try netd.installPlugin(
        "crisp-hang",
        script: """
          #!/bin/sh
          cat > /dev/null
          if [ "$CNI_COMMAND" = ADD ]; then sleep 300 & sleep 300; fi
          exit 0
          """)
      try netd.writeBridgeConfig(extraPlugins: [#"{"type": "crisp-hang"}"#])
      // The deadline is each plugin's, the bridge plugin's ADD and DEL included: on a loaded
      // 2-core machine those may take more than half a second.
      let config = try String(contentsOfFile: netd.dir + "/crisp.toml", encoding: .utf8)
      try config.replacingOccurrences(of: "cni_plugin_timeout_ms = 20000", with: "cni_plugin_timeout_ms = 3000")
        .write(toFile: netd.dir + "/crisp.toml", atomically: true, encoding: .utf8)
      try await netd.start()

      let error = await #expect(throws: CrispError.self) { try await netd.setup(NetdInstance.podID()) }
      #expect(error?.code == .deadlineExceeded)
      #expect(error?.message.contains("crisp-hang") == true)
      #expect(netd.leasedIPs().isEmpty)
      #expect(netd.mounts().isEmpty)
    }
  }
}

extension NetdFailureTests {
  @Test func sighupAppliesTheLogLevelFromTheConfigFile() async throws {
    try await withNetd { netd in
      let configPath = netd.dir + "/crisp.toml"
      let config = try String(contentsOfFile: configPath, encoding: .utf8)
      try config.replacingOccurrences(of: "log_level = \"debug\"", with: "log_level = \"info\"")
        .write(toFile: configPath, atomically: true, encoding: .utf8)
      try netd.writeBridgeConfig()
      try await netd.start()
      let first = NetdInstance.podID()
      _ = try await netd.setup(first)
      #expect(!netd.log.contains("CNI plugin finished"))

      try config.write(toFile: configPath, atomically: true, encoding: .utf8)  // back to debug
      try netd.signal(SIGHUP)
      try await waitUntil("netd reloads", timeout: .seconds(10)) { netd.log.contains("configuration reloaded") }
      try await netd.teardown(first)
      #expect(netd.log.contains("CNI plugin finished"))
      try netd.expectNothingLeft()
    }
  }
}
