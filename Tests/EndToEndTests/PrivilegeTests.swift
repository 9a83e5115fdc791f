import CrispConfig
import CrispCore
import CrispIPC
import CrispLinux
import CrispTestSupport
import Foundation
import Testing

/// Each daemon runs with its own capability set and seccomp filter; /proc tells the truth.
@Suite struct PrivilegeTests {
  static func mask(_ names: [String]) throws -> UInt64 {
    try names.reduce(0) { $0 | (1 << UInt64(try Capability(name: $1).value)) }
  }

  @Test func imagedAndNetdRunWithTheirConfiguredSetsAndAFilter() async throws {
    try await withCrisp { crisp in
      try await crisp.startAll()
      let defaults = CrispConfig()
      for (daemon, names) in [
        (CrispInstance.Daemon.imaged, defaults.imaged.capabilities), (.netd, defaults.netd.capabilities),
      ] {
        let pid = try #require(crisp.pid(daemon))
        let status = ProcessStatus(pid: pid)
        let expected = try Self.mask(names)
        #expect(status.capabilityMask("CapEff") == expected, "\(daemon) CapEff \(status.fields["CapEff"] ?? "")")
        #expect(status.capabilityMask("CapPrm") == expected, "\(daemon)")
        #expect(status.capabilityMask("CapBnd") == expected, "\(daemon) CapBnd \(status.fields["CapBnd"] ?? "")")
        #expect(status.capabilityMask("CapAmb") == 0, "\(daemon)")
        #expect(status.fields["Seccomp"] == "2", "\(daemon)")
        #expect(status.fields["NoNewPrivs"] == "1", "\(daemon)")
      }
      // imaged holds nothing for networks, netd nothing for images.
      let imaged = ProcessStatus(pid: try #require(crisp.pid(.imaged))).capabilityMask("CapEff") ?? .max
      #expect(imaged & (1 << UInt64(try Capability(name: "NET_ADMIN").value)) == 0)
      #expect(imaged & (1 << UInt64(try Capability(name: "SYS_ADMIN").value)) == 0)
      let netd = ProcessStatus(pid: try #require(crisp.pid(.netd))).capabilityMask("CapEff") ?? .max
      #expect(netd & (1 << UInt64(try Capability(name: "MKNOD").value)) == 0)
    }
  }

  /// cri-frontd serves with nothing: no capability in any set, no_new_privs, a filter
  /// without mount, umount2, setns and unshare. Its launcher keeps root's powers, and
  /// containers still get theirs (ContainerTests checks the default set from inside).
  @Test func frontdServesWithNoCapabilityAndItsLauncherKeepsThem() async throws {
    try await withCrisp { crisp in
      try await crisp.startAll()
      let frontd = ProcessStatus(pid: try #require(crisp.pid(.frontd)))
      for set in ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"] {
        #expect(frontd.capabilityMask(set) == 0, "cri-frontd \(set) \(frontd.fields[set] ?? "")")
      }
      #expect(frontd.fields["Seccomp"] == "2")
      #expect(frontd.fields["NoNewPrivs"] == "1")
      let log = crisp.log(.frontd)
      #expect(log.contains("mount,umount2,setns,unshare"), "the filter is logged")

      let launchers = (try FileManager.default.contentsOfDirectory(atPath: "/proc")).compactMap { entry -> Int32? in
        guard let pid = Int32(entry) else { return nil }
        let status = ProcessStatus(pid: pid)
        let cmdline = readWholeFile("/proc/\(entry)/cmdline")
        return cmdline.hasSuffix("crisp-launcher\0") || cmdline.contains("crisp-launcher\0")
          ? (status.fields["PPid"] == "\(crisp.pid(.frontd) ?? -1)" ? pid : nil) : nil
      }
      let launcher = ProcessStatus(pid: try #require(launchers.first, "frontd's crisp-launcher"))
      #expect(launcher.fields["Seccomp"] == "0")
      #expect(launcher.capabilityMask("CapEff") != 0)

      // frontd gone: its launcher sees the channel close and exits.
      try await crisp.stop(.frontd, signal: SIGKILL)
      try await waitUntil("the launcher exits with frontd", timeout: .seconds(10)) {
        !FileManager.default.fileExists(atPath: "/proc/\(launchers[0])/cmdline")
          || readWholeFile("/proc/\(launchers[0])/stat").contains(") Z ")
      }
    }
  }

  @Test func aCapabilityListFromTheConfigIsWhatTheDaemonKeeps() async throws {
    try await withCrisp(imagedConfig: "capabilities = [\"CAP_CHOWN\", \"CAP_FOWNER\"]") { crisp in
      try crisp.start(.imaged)
      let client = try IPCClient(peer: "imaged", address: CrispPaths.ipcAddress(crisp.paths.imagedSocket))
      _ = try await client.call(Health.self)
      let status = ProcessStatus(pid: try #require(crisp.pid(.imaged)))
      #expect(status.capabilityMask("CapEff") == (try Self.mask(["CAP_CHOWN", "CAP_FOWNER"])))
      #expect(status.capabilityMask("CapBnd") == (try Self.mask(["CAP_CHOWN", "CAP_FOWNER"])))
    }
  }

  /// netd's children (CNI plugins) inherit its filter: a plugin that calls swapoff or
  /// opens an AF_PACKET socket is refused with EPERM; with `seccomp = false` the same
  /// calls get past the filter (and fail for their own reasons, or succeed).
  @Test(arguments: [true, false])
  func aForbiddenCallFromNetdsProcessesFailsWithEPERM(seccomp: Bool) async throws {
    try await withNetd { netd in
      try netd.installPlugin(
        "crisp-probe",
        script: """
          #!/bin/sh
          cat > /dev/null
          if [ "$CNI_COMMAND" = ADD ]; then
            swap=$(/sbin/swapoff /crisp-no-such-swap 2>&1)
            packet=$(/usr/bin/python3 -c 'import socket
          try:
              socket.socket(socket.AF_PACKET, socket.SOCK_RAW); print("opened")
          except OSError as e:
              print(e.strerror)' 2>&1)
            printf '{"code": 11, "msg": "probe", "details": "swapoff: %s | packet: %s"}' "$swap" "$packet"
            exit 1
          fi
          exit 0
          """)
      try netd.writeBridgeConfig(extraPlugins: [#"{"type": "crisp-probe"}"#])
      if !seccomp {
        let config = try String(contentsOfFile: netd.dir + "/crisp.toml", encoding: .utf8)
        try ("seccomp = false\n" + config).write(toFile: netd.dir + "/crisp.toml", atomically: true, encoding: .utf8)
      }
      try await netd.start()
      let error = await #expect(throws: CrispError.self) { try await netd.setup(NetdInstance.podID()) }
      let message = error?.message ?? ""
      if seccomp {
        // util-linux words EPERM from swapoff as "Not superuser", though netd's children are root.
        #expect(message.contains("swapoff: Not superuser"), "\(message)")
        #expect(message.contains("packet: Operation not permitted"), "\(message)")
      } else {
        #expect(message.contains("swapoff failed: No such file or directory"), "\(message)")
        #expect(message.contains("packet: opened"), "\(message)")
      }
      try netd.expectNothingLeft()
    }
  }
}
