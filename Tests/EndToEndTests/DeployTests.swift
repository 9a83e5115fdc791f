import CrispIPC
import CrispTestSupport
import Foundation
import Testing

/// What `make install` puts on a node.
@Suite struct DeployTests {
  static let deployDir = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("deploy").path

  @Test func systemdUnitsPassVerify() throws {
    let units = try FileManager.default.contentsOfDirectory(atPath: Self.deployDir + "/systemd").sorted()
    #expect(units.contains("crisp-frontd.service"))
    #expect(units.contains("crisp-imaged.service"))
    #expect(units.contains("crisp-netd.service"))

    // Verify the units as installed, with ExecStart= pointing at the binaries just built.
    let dir = try makeTemporaryDirectory(prefix: "crisp-units")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let binDir = URL(fileURLWithPath: binaryPath("cri-frontd")).deletingLastPathComponent().path
    for unit in units {
      let text = try String(contentsOfFile: Self.deployDir + "/systemd/" + unit, encoding: .utf8)
      try text.replacingOccurrences(of: "/usr/local/bin/", with: binDir + "/")
        .write(toFile: dir + "/" + unit, atomically: true, encoding: .utf8)
    }
    let result = try runProgram("/usr/bin/systemd-analyze", ["verify"] + units.map { dir + "/" + $0 })
    #expect(result.status == 0, "\(result.output)")
    // Unknown keys and bad values are only warnings to systemd: refuse those too.
    #expect(result.output.isEmpty, "\(result.output)")

    let frontd = try String(contentsOfFile: Self.deployDir + "/systemd/crisp-frontd.service", encoding: .utf8)
    #expect(frontd.contains("After=crisp-imaged.service crisp-netd.service"))
    #expect(frontd.contains("KillMode=process"))
  }

  @Test func defaultConfigFileIsWhatCriFrontdPrints() throws {
    let shipped = try String(contentsOfFile: Self.deployDir + "/crisp.toml", encoding: .utf8)
    let printed = try runProgram(binaryPath("cri-frontd"), ["config"])
    #expect(printed.status == 0)
    #expect(shipped == printed.output, "deploy/crisp.toml is out of date: run `make deploy/crisp.toml`")
  }
}

extension DeployTests {
  @Test func shippedCNIConfigIsAValidBridgeNetwork() async throws {
    let file = Self.deployDir + "/cni/10-crisp-bridge.conflist"
    let data = try #require(FileManager.default.contents(atPath: file))
    let json = try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
    let plugins = json["plugins"] as? [[String: Any]] ?? []
    #expect(plugins.map { $0["type"] as? String } == ["bridge", "portmap", "loopback"])
    #expect(plugins.first?["bridge"] as? String == "crisp0")
    #expect((plugins[1]["capabilities"] as? [String: Bool])?["portMappings"] == true)

    // netd accepts it as is (readiness only: setting up a pod on it would touch the
    // node's own crisp0 bridge, which tests never do).
    try await withNetd { netd in
      try FileManager.default.copyItem(atPath: file, toPath: netd.cniDir + "/10-crisp-bridge.conflist")
      try await netd.start()
      let health = try await netd.client.call(Health.self)
      #expect(health.ready, "\(health.message ?? "")")
    }
  }
}

extension DeployTests {
  /// `make run` runs `deploy/crisp-run .build/release CONFIG` from the checkout: a relative
  /// binary directory, from which frontd finds crisp-pause, shimd and crisp-launcher. A
  /// pod that shares one PID namespace (the CRI default) binds crisp-pause into itself.
  @Test func crispStartedAsMakeRunDoesRunsPodsAndShowsEachDaemonByName() async throws {
    try await withCrisp { crisp in
      try crisp.writeFrontdConfig("seccomp_profile = \"\(Self.deployDir)/seccomp/default.json\"")
      try crisp.writeBridgeCNIConfig()
      try await crisp.startThroughCrispRun()

      // After their capability re-exec, ps, pgrep and pidof find each daemon by name.
      let children = crisp.crispRunChildren()
      for daemon in CrispInstance.Daemon.allCases {
        #expect(children[daemon.rawValue] != nil, "\(daemon.rawValue) among crisp-run's children: \(children)")
      }

      var config = PodSandboxTests.podConfig(name: "shared-pid")
      config.linux.securityContext.namespaceOptions.pid = .pod
      let id = try await crisp.runPod(config)
      #expect(try await crisp.podStatus(id).status.state == .sandboxReady)
      try await crisp.removePod(id)
    }
  }
}
