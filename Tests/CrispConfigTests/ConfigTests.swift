import CrispConfig
import CrispTestSupport
import Foundation
import Testing

@Suite struct ConfigTests {
  @Test func renderedDefaultsParseBackToTheDefaults() throws {
    let defaults = CrispConfig()
    #expect(try CrispConfig.parse(defaults.renderTOML()) == defaults)
  }

  @Test func renderedCustomValuesRoundTrip() throws {
    var config = CrispConfig()
    config.root = "/srv/crisp \"quoted\""
    config.logLevel = .debug
    config.netd.logLevel = .trace
    config.frontd.cgroupDriver = .systemd
    config.seccompAction = .log
    config.ipc.requestTimeoutMs = 1234
    config.netd.cniPluginDirs = ["/a", "/b\\c"]
    config.frontd.listen = "/tmp/x.sock"
    config.frontd.runtimeHandlers = ["crun": "/usr/bin/crun", "kata-qemu": "/opt/kata/bin/kata-runtime"]
    config.frontd.seccompUseDefaultWhenEmpty = false
    #expect(try CrispConfig.parse(config.renderTOML()) == config)
    #expect(config.frontd.runtimePath(handler: "") == "/usr/sbin/runc")
    #expect(config.frontd.runtimePath(handler: "kata-qemu") == "/opt/kata/bin/kata-runtime")
    #expect(config.frontd.runtimePath(handler: "gvisor") == nil)
  }

  @Test func anEmptyFileMeansDefaults() throws {
    #expect(try CrispConfig.parse("") == CrispConfig())
  }

  @Test func readsEveryKnownKey() throws {
    let config = try CrispConfig.parse(
      """
      root = "/r"
      run_root = "/rr"
      [ipc]
      request_timeout_ms = 10
      [frontd]
      seccomp_use_default_when_empty = false
      [netd]
      cni_config_dir = "/cni"
      cni_plugin_dirs = ["/p1"]
      log_level = "debug"
      """)
    #expect(!config.frontd.seccompUseDefaultWhenEmpty)
    #expect(CrispConfig().frontd.seccompUseDefaultWhenEmpty, "the secure default, as CRI-O's")
    #expect(config.root == "/r")
    #expect(config.paths.criSocket == "/rr/crisp.sock")
    #expect(config.ipc.requestTimeoutMs == 10)
    #expect(config.netd.cniConfigDir == "/cni")
    #expect(config.netd.cniPluginDirs == ["/p1"])
    #expect(config.logLevel(for: .netd) == .debug)
    #expect(config.logLevel(for: .imaged) == .info)
  }

  struct Bad: Sendable, CustomStringConvertible {
    let toml: String
    let key: String?
    let reason: String
    var description: String { toml }
  }

  @Test(arguments: [
    Bad(toml: "rot = \"/x\"", key: "rot", reason: "unknown key"),
    Bad(toml: "[netd]\ncni_conf_dir = \"/x\"", key: "netd.cni_conf_dir", reason: "unknown key"),
    Bad(toml: "[imagd]\n", key: "imagd", reason: "unknown key"),
    Bad(toml: "log_level = 3", key: "log_level", reason: "expected a string, found int"),
    Bad(toml: "[ipc]\nrequest_timeout_ms = \"5s\"", key: "ipc.request_timeout_ms", reason: "expected an integer"),
    Bad(toml: "[ipc]\nserver_workers = 0", key: "ipc.server_workers", reason: "out of range"),
    Bad(toml: "[ipc]\nserver_workers = 16", key: "imaged.max_queued_pulls", reason: "free for health"),
    Bad(toml: "[imaged]\npinned_images = [\"a*b\"]", key: "imaged.pinned_images", reason: "nowhere else"),
    Bad(toml: "[imaged]\npinned_images = [\"*\"]", key: "imaged.pinned_images", reason: "must name"),
    Bad(toml: "[imaged]\npinned_images = [\"*pause\"]", key: "imaged.pinned_images", reason: "nowhere else"),
    Bad(toml: "root = \"relative/path\"", key: "root", reason: "absolute path"),
    Bad(toml: "run_root = \"/tmp/crisp-conformance.nApThM/run\"", key: "run_root", reason: "at most 32"),
    Bad(toml: "log_level = \"loud\"", key: "log_level", reason: "unknown log level"),
    Bad(toml: "[netd]\ncni_plugin_dirs = [\"/ok\", 7]", key: "netd.cni_plugin_dirs", reason: "element 1"),
    Bad(toml: "ipc = 5", key: "ipc", reason: "expected a table"),
    Bad(toml: "[frontd]\nsocket_group = \"no-such-group-crisp\"", key: "frontd.socket_group", reason: "no such group"),
    Bad(toml: "root = ", key: nil, reason: "line 1"),
    Bad(toml: "[frontd]\nruntime_handlers = { crun = \"crun\" }", key: "frontd.runtime_handlers", reason: "absolute"),
    Bad(toml: "[frontd]\nruntime_handlers = { runc = \"/x\" }", key: "frontd.runtime_handlers", reason: "runtime_path"),
    Bad(toml: "[frontd]\nruntime_handlers = { crun = 1 }", key: "frontd.runtime_handlers", reason: "must be a string"),
    Bad(toml: "[frontd]\nruntime_handlers = [\"/x\"]", key: "frontd.runtime_handlers", reason: "table of strings"),
  ])
  func refusesBadFilesNamingFileKeyAndReason(_ bad: Bad) throws {
    let error = #expect(throws: ConfigError.self) { try CrispConfig.parse(bad.toml, file: "/etc/crisp/test.toml") }
    #expect(error?.file == "/etc/crisp/test.toml")
    #expect(error?.key == bad.key)
    #expect(error?.reason.contains(bad.reason) == true, "\(error?.description ?? "")")
    #expect(error?.description.hasPrefix("/etc/crisp/test.toml") == true)
  }

  @Test func aMissingFileNamedExplicitlyIsAnError() throws {
    let error = #expect(throws: ConfigError.self) { try CrispConfig.load(path: "/nonexistent/crisp.toml") }
    #expect(error?.reason.contains("No such file") == true)
  }

  @Test func loadsAFile() throws {
    let dir = try makeTemporaryDirectory(prefix: "crisp-config")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try "run_root = \"/tmp/rr\"\n".write(toFile: dir + "/c.toml", atomically: true, encoding: .utf8)
    #expect(try CrispConfig.load(path: dir + "/c.toml").runRoot == "/tmp/rr")
  }
}

extension ConfigTests {
  @Test func refusesUnknownCapabilitiesAndSeccompActions() throws {
    let cap = #expect(throws: ConfigError.self) {
      try CrispConfig.parse("[netd]\ncapabilities = [\"CAP_NET_ADMIN\", \"CAP_FLY\"]")
    }
    #expect(cap?.key == "netd.capabilities")
    #expect(cap?.reason.contains("CAP_FLY") == true)
    let action = #expect(throws: ConfigError.self) { try CrispConfig.parse("seccomp_action = \"ignore\"") }
    #expect(action?.key == "seccomp_action")
    let seccomp = #expect(throws: ConfigError.self) { try CrispConfig.parse("seccomp = \"no\"") }
    #expect(seccomp?.reason.contains("true or false") == true)
    #expect(try CrispConfig.parse("seccomp = false\n[imaged]\ncapabilities = [\"ALL\"]").seccomp == false)
  }
}

/// The README's table of options is the one the option list prints: a key added,
/// renamed or given a new default without the README following fails here.
extension ConfigTests {
  @Test func theReadmesTableOfOptionsIsTheOneTheOptionListPrints() throws {
    let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let readme = try String(contentsOf: package.appendingPathComponent("README.md"), encoding: .utf8)
    let start = try #require(readme.range(of: "| key | default | meaning |\n"))
    let rest = readme[start.lowerBound...]
    let end = rest.range(of: "\n\n")?.lowerBound ?? rest.endIndex
    let table = String(rest[..<end]) + "\n"
    #expect(table == CrispConfig.markdownTable(), "run `cri-frontd config --markdown` and put its output in the README")
  }

  @Test func everyPrintedKeyIsReadAndAWrongTypeIsRefusedByName() throws {
    // Each key of the printed file, given a value of a type no option takes, is refused
    // naming that key: the loader reads every key the printer writes.
    let printed = CrispConfig().renderTOML()
    var table = ""
    var keys: [String] = []
    for line in printed.split(separator: "\n") where !line.hasPrefix("#") {
      if line.hasPrefix("[") {
        table = String(line.dropFirst().dropLast())
      } else if let equals = line.firstIndex(of: "=") {
        let key = line[..<equals].trimmingCharacters(in: .whitespaces)
        keys.append(table.isEmpty ? key : table + "." + key)
      }
    }
    #expect(keys.count > 50)
    for key in keys {
      let parts = key.split(separator: ".")
      let toml = parts.count == 1 ? "\(key) = 2026-12-07" : "[\(parts[0])]\n\(parts[1]) = 2026-12-07"
      let error = #expect(throws: ConfigError.self, "\(key)") { try CrispConfig.parse(toml) }
      #expect(error?.key == key, "\(key): \(String(describing: error))")
    }
  }
}
