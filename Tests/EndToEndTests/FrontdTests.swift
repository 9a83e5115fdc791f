import CRIAPI
import CrispCore
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// cri-frontd with real imaged and netd processes, over the real CRI socket.
@Suite struct FrontdTests {
  @Test func versionOverTheCRISocket() async throws {
    try await withCrisp { crisp in
      try await crisp.startAll()

      let version = try await crisp.withRuntime { try await $0.version(.init()) }
      #expect(version.runtimeName == "crisp")
      #expect(version.runtimeApiVersion == "v1")
      #expect(version.runtimeVersion == CrispVersion.string)

      let mode = try FileManager.default.attributesOfItem(atPath: crisp.criSocket)[.posixPermissions] as? Int
      #expect(mode == 0o660)
    }
  }

  @Test func statusFollowsNetdAndItsCNIConfig() async throws {
    try await withCrisp { crisp in
      try await crisp.startAll()

      // No CNI configuration yet: the network is not ready, and says where it looked.
      var status = try await crisp.status()
      #expect(status.condition("RuntimeReady")?.status == true)
      let notReady = try #require(status.condition("NetworkReady"))
      #expect(notReady.status == false)
      #expect(notReady.reason == "NetworkPluginNotReady")
      #expect(notReady.message.contains(crisp.cniDir))

      // A configuration written while running is picked up without a restart.
      try crisp.writeCNIConfig()
      status = try await crisp.status()
      #expect(status.condition("NetworkReady")?.status == true)

      // netd stopped: NetworkReady turns false and names netd; back when it returns.
      try await crisp.stop(.netd)
      status = try await crisp.status()
      let down = try #require(status.condition("NetworkReady"))
      #expect(down.status == false)
      #expect(down.message.contains("netd"))
      #expect(status.condition("RuntimeReady")?.status == true)

      try crisp.start(.netd)
      try await waitUntil("NetworkReady is true again", timeout: .seconds(10)) {
        try await crisp.status().condition("NetworkReady")?.status == true
      }
    }
  }

  @Test func runtimeNotReadyWhileImagedIsDown() async throws {
    try await withCrisp { crisp in
      try crisp.writeCNIConfig()
      try await crisp.startAll()
      try await crisp.stop(.imaged, signal: SIGKILL)

      let status = try await crisp.status()
      let runtime = try #require(status.condition("RuntimeReady"))
      #expect(runtime.status == false)
      #expect(runtime.reason == "ImageDaemonUnavailable")
      #expect(runtime.message.contains("imaged"))
      #expect(status.condition("NetworkReady")?.status == true)

      try crisp.start(.imaged)
      try await waitUntil("RuntimeReady is true again", timeout: .seconds(10)) {
        try await crisp.status().condition("RuntimeReady")?.status == true
      }
    }
  }

  @Test func verboseStatusReportsEachDaemon() async throws {
    try await withCrisp { crisp in
      try await crisp.startAll()

      let status = try await crisp.status(verbose: true)
      for daemon in ["cri-frontd", "imaged", "netd"] {
        let json = try #require(status.info[daemon], "no info for \(daemon)")
        let fields = try #require(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(fields["version"] as? String == CrispVersion.string)
        #expect((fields["uptimeSeconds"] as? Double ?? -1) >= 0)
      }
      let imaged = try #require(status.info["imaged"])
      #expect(imaged.contains("\"pid\":\(crisp.pid(.imaged) ?? -1)"))
    }
  }

  @Test func otherRPCsAnswerUnimplementedWithTheirName() async throws {
    try await withCrisp { crisp in
      try await crisp.startAll()

      // Checkpoints need CRIU, which crisp does not use.
      let error = await #expect(throws: RPCError.self) {
        _ = try await crisp.withRuntime { try await $0.checkpointContainer(.init()) }
      }
      #expect(error?.code == .unimplemented)
      #expect(error?.message.contains("CheckpointContainer") == true)
    }
  }

  @Test func aSecondFrontdRefusesToStart() async throws {
    try await withCrisp { crisp in
      try await crisp.startAll()

      let second = try runProgram(binaryPath("cri-frontd"), ["--config", crisp.configPath])
      #expect(second.status != 0)
      #expect(second.output.contains("another cri-frontd is running"))
      // The first one still serves.
      let version = try await crisp.withRuntime { try await $0.version(.init()) }
      #expect(version.runtimeName == "crisp")
    }
  }

  @Test func staleSocketIsReplacedAndSIGTERMRemovesSockets() async throws {
    try await withCrisp { crisp in
      try FileManager.default.createDirectory(atPath: crisp.paths.runRoot, withIntermediateDirectories: true)
      try makeStaleUnixSocket(at: crisp.criSocket)

      try await crisp.startAll()
      let version = try await crisp.withRuntime { try await $0.version(.init()) }
      #expect(version.runtimeApiVersion == "v1")

      for daemon in CrispInstance.Daemon.allCases {
        let status = try await crisp.stop(daemon, signal: SIGTERM)
        #expect(status == 0, "\(daemon) exited with \(status): \(crisp.log(daemon))")
      }
      for socket in [crisp.criSocket, crisp.paths.imagedSocket, crisp.paths.netdSocket] {
        #expect(!FileManager.default.fileExists(atPath: socket), "\(socket) left behind")
      }
    }
  }

  @Test func badConfigurationIsRefusedWithFileKeyAndReason() async throws {
    try await withCrisp { crisp in
      let bad = crisp.dir + "/bad.toml"
      try "[netd]\ncni_conf_dir = \"/etc/cni/net.d\"\n".write(toFile: bad, atomically: true, encoding: .utf8)
      for daemon in ["cri-frontd", "imaged", "netd"] {
        let result = try runProgram(binaryPath(daemon), ["--config", bad])
        #expect(result.status != 0)
        #expect(result.output.contains(bad), "\(daemon): \(result.output)")
        #expect(result.output.contains("netd.cni_conf_dir"), "\(daemon): \(result.output)")
        #expect(result.output.contains("unknown key"), "\(daemon): \(result.output)")
      }
      try "log_level = 3\n".write(toFile: bad, atomically: true, encoding: .utf8)
      let typed = try runProgram(binaryPath("cri-frontd"), ["--config", bad])
      #expect(typed.status != 0)
      #expect(typed.output.contains("log_level"))
      #expect(typed.output.contains("expected a string"))
    }
  }

  @Test func printedDefaultConfigurationStartsCrisp() async throws {
    let printed = try runProgram(binaryPath("cri-frontd"), ["config"])
    #expect(printed.status == 0)
    #expect(printed.output.contains("run_root = \"/run/crisp\""))
    #expect(printed.output.contains("[netd]"))
    #expect(printed.output.contains("# "))
  }
}

/// A socket file nobody listens on, as a killed frontd leaves behind.
func makeStaleUnixSocket(at path: String) throws {
  let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
  var address = sockaddr_un()
  address.sun_family = sa_family_t(AF_UNIX)
  withUnsafeMutableBytes(of: &address.sun_path) { buffer in
    for (i, byte) in path.utf8.enumerated() { buffer[i] = byte }
  }
  let rv = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
  }
  close(fd)
  if rv != 0 { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
}
