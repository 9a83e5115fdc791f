import CrispCore
import CrispLinux
import Logging
import TOMLKit

#if canImport(Glibc)
  import Glibc
#endif

/// A configuration file that cannot be used, with the file, the key and the reason.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
  public let file: String
  public let key: String?
  public let reason: String

  public var description: String {
    if let key { return "\(file): key '\(key)': \(reason)" }
    return "\(file): \(reason)"
  }
}

extension CrispConfig {
  /// Loads a file. A missing file at the default path means defaults; a missing file
  /// named explicitly is an error.
  public static func load(path: String?) throws(ConfigError) -> CrispConfig {
    let file = path ?? defaultPath
    guard let text = readFile(file) else {
      if path == nil && errno == ENOENT { return CrispConfig() }
      throw ConfigError(file: file, key: nil, reason: "cannot read: \(String(cString: strerror(errno)))")
    }
    return try parse(text, file: file)
  }

  /// Parses TOML text strictly: unknown keys, wrong types and invalid values are refused.
  public static func parse(_ text: String, file: String = "<config>") throws(ConfigError) -> CrispConfig {
    let table: TOMLTable
    do {
      table = try TOMLTable(string: text)
    } catch let error as TOMLParseError {
      throw ConfigError(
        file: file, key: nil,
        reason: "line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
    } catch {
      throw ConfigError(file: file, key: nil, reason: "\(error)")
    }
    var config = CrispConfig()
    var top = TableReader(table: table, prefix: "", file: file)
    try top.string("root", into: &config.root, check: absolutePath)
    try top.string("run_root", into: &config.runRoot, check: runRootPath)
    try top.string("log_level", into: &config.logLevel, check: logLevelName)
    try top.bool("seccomp", into: &config.seccomp)
    try top.string("seccomp_action", into: &config.seccompAction) { value in
      ["errno", "kill", "log"].contains(value) ? nil : "must be \"errno\", \"kill\" or \"log\", got \"\(value)\""
    }

    if var ipc = try top.subtable("ipc") {
      try ipc.int("request_timeout_ms", into: &config.ipc.requestTimeoutMs, range: 1...3_600_000)
      try ipc.int("health_timeout_ms", into: &config.ipc.healthTimeoutMs, range: 1...60_000)
      try ipc.int("server_workers", into: &config.ipc.serverWorkers, range: 1...1024)
      try ipc.int("pull_timeout_ms", into: &config.ipc.pullTimeoutMs, range: 1_000...86_400_000)
      try ipc.finish()
    }
    if var frontd = try top.subtable("frontd") {
      try frontd.string("listen", into: &config.frontd.listen, check: optionalAbsolutePath)
      try frontd.string("socket_group", into: &config.frontd.socketGroup, check: groupName)
      try frontd.string("runtime_path", into: &config.frontd.runtimePath, check: absolutePath)
      try frontd.stringTable("runtime_handlers", into: &config.frontd.runtimeHandlers) { name, path in
        if name == "runc" { return "\"runc\" is runtime_path; name the others differently" }
        if name.isEmpty || !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) {
          return "handler name \"\(name)\" must be letters, digits, '-', '_' or '.'"
        }
        return absolutePath(path)
      }
      try frontd.string("shimd_path", into: &config.frontd.shimdPath, check: optionalAbsolutePath)
      try frontd.string("pause_path", into: &config.frontd.pausePath, check: optionalAbsolutePath)
      try frontd.strings("capabilities", into: &config.frontd.capabilities, check: capabilityName)
      try frontd.string("stream_address", into: &config.frontd.streamAddress) { $0.isEmpty ? "must not be empty" : nil }
      try frontd.int("stream_port", into: &config.frontd.streamPort, range: 0...65535)
      try frontd.string("stream_tls_cert", into: &config.frontd.streamTLSCert, check: optionalAbsolutePath)
      try frontd.string("stream_tls_key", into: &config.frontd.streamTLSKey, check: optionalAbsolutePath)
      try frontd.string("stream_tls_client_ca", into: &config.frontd.streamTLSClientCA, check: optionalAbsolutePath)
      try frontd.int("stream_idle_timeout_ms", into: &config.frontd.streamIdleTimeoutMs, range: 1_000...86_400_000)
      try frontd.int("stream_token_ttl_ms", into: &config.frontd.streamTokenTTLMs, range: 1_000...3_600_000)
      try frontd.int("max_stream_sessions", into: &config.frontd.maxStreamSessions, range: 1...100_000)
      try frontd.int("metrics_port", into: &config.frontd.metricsPort, range: 0...65535)
      try frontd.string("metrics_address", into: &config.frontd.metricsAddress) {
        $0.isEmpty ? "must not be empty" : nil
      }
      if config.frontd.streamTLSCert.isEmpty != config.frontd.streamTLSKey.isEmpty {
        throw frontd.fail("stream_tls_key", "stream_tls_cert and stream_tls_key go together")
      }
      try frontd.string("cgroup_driver", into: &config.frontd.cgroupDriver) { value in
        ["cgroupfs", "systemd"].contains(value) ? nil : "must be \"cgroupfs\" or \"systemd\", got \"\(value)\""
      }
      try frontd.string("seccomp_profile", into: &config.frontd.seccompProfile, check: absolutePath)
      try frontd.bool("seccomp_use_default_when_empty", into: &config.frontd.seccompUseDefaultWhenEmpty)
      try frontd.string("default_log_dir", into: &config.frontd.defaultLogDir, check: absolutePath)
      try frontd.string("log_level", into: &config.frontd.logLevel, check: optionalLogLevelName)
      try frontd.finish()
    }
    if var imaged = try top.subtable("imaged") {
      try imaged.strings("capabilities", into: &config.imaged.capabilities, check: capabilityName)
      try imaged.string("registries_conf", into: &config.imaged.registriesConf, check: absolutePath)
      try imaged.string("auth_file", into: &config.imaged.authFile, check: absolutePath)
      try imaged.string("certs_dir", into: &config.imaged.certsDir, check: absolutePath)
      try imaged.int("max_concurrent_downloads", into: &config.imaged.maxConcurrentDownloads, range: 1...64)
      try imaged.int("max_concurrent_pulls", into: &config.imaged.maxConcurrentPulls, range: 1...1024)
      try imaged.int("max_queued_pulls", into: &config.imaged.maxQueuedPulls, range: 0...1024)
      try imaged.int("pull_progress_timeout_ms", into: &config.imaged.pullProgressTimeoutMs, range: 100...3_600_000)
      try imaged.strings("pinned_images", into: &config.imaged.pinnedImages) { pattern in
        if pattern.isEmpty || pattern == "*" || pattern == "**" { return "must name an image or a pattern" }
        let keyword = pattern.count > 2 && pattern.hasPrefix("*") && pattern.hasSuffix("*")
        let inner = pattern.dropFirst(keyword ? 1 : 0).dropLast(pattern.hasSuffix("*") ? 1 : 0)
        return inner.contains("*")
          ? "\"\(pattern)\": a '*' may end a pattern (a glob) or start and end one (a keyword), nowhere else" : nil
      }
      try imaged.int("max_layer_bytes", into: &config.imaged.maxLayerBytes, range: 1...(1 << 50))
      try imaged.int("max_image_bytes", into: &config.imaged.maxImageBytes, range: 1...(1 << 50))
      try imaged.int("max_layer_entries", into: &config.imaged.maxLayerEntries, range: 1...1_000_000_000)
      try imaged.int("max_path_depth", into: &config.imaged.maxPathDepth, range: 1...4096)
      try imaged.int("min_free_bytes", into: &config.imaged.minFreeBytes, range: 0...(1 << 50))
      try imaged.string("log_level", into: &config.imaged.logLevel, check: optionalLogLevelName)
      try imaged.finish()
    }
    // Each waiting or running pull holds one of imaged's IPC contexts (ipc.server_workers).
    let reserved = 4
    let pulls = config.imaged.maxConcurrentPulls + config.imaged.maxQueuedPulls
    if pulls > config.ipc.serverWorkers - reserved {
      throw ConfigError(
        file: file, key: "imaged.max_queued_pulls",
        reason: "max_concurrent_pulls + max_queued_pulls (\(pulls)) must leave \(reserved) of ipc.server_workers "
          + "(\(config.ipc.serverWorkers)) free for health and status calls")
    }
    if var netd = try top.subtable("netd") {
      try netd.string("cni_config_dir", into: &config.netd.cniConfigDir, check: absolutePath)
      try netd.strings("cni_plugin_dirs", into: &config.netd.cniPluginDirs, check: absolutePath)
      try netd.string("cni_default_network", into: &config.netd.cniDefaultNetwork) { _ in nil }
      try netd.int("cni_plugin_timeout_ms", into: &config.netd.cniPluginTimeoutMs, range: 100...600_000)
      try netd.strings("capabilities", into: &config.netd.capabilities, check: capabilityName)
      try netd.string("log_level", into: &config.netd.logLevel, check: optionalLogLevelName)
      try netd.finish()
    }
    if var shimd = try top.subtable("shimd") {
      try shimd.string("log_level", into: &config.shimd.logLevel, check: optionalLogLevelName)
      try shimd.finish()
    }
    if var tracing = try top.subtable("tracing") {
      try tracing.string("endpoint", into: &config.tracing.endpoint, check: optionalHTTPURL)
      try tracing.double("sampling_ratio", into: &config.tracing.samplingRatio, range: 0...1)
      try tracing.int("export_interval_ms", into: &config.tracing.exportIntervalMs, range: 10...600_000)
      try tracing.finish()
    }
    try top.finish()
    return config
  }

  private static func readFile(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
      let n = fread(&buffer, 1, buffer.count, file)
      if n > 0 { bytes += buffer[0..<n] }
      if n < buffer.count {
        if ferror(file) != 0 { return nil }
        break
      }
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}

// Value checks: each returns the reason a value is refused, or nil.
/// The longest socket path under run_root, each container's shim's, must fit in a Unix
/// socket address (108 bytes with the NUL); a longer one fails only at the first
/// container, with an error from NNG that names no length.
private func runRootPath(_ value: String) -> String? {
  if let notAbsolute = absolutePath(value) { return notAbsolute }
  let longest = CrispPaths(root: "/", runRoot: value).shimSocket(containerID: String(repeating: "0", count: 64))
  let room = 107 - (longest.utf8.count - value.utf8.count)
  guard value.utf8.count <= room else {
    return "is \(value.utf8.count) bytes long, at most \(room): each container's shim listens on "
      + "<run_root>/shims/<64-hex id>.ipc, and a Unix socket path has 107 bytes"
  }
  return nil
}

private func absolutePath(_ value: String) -> String? {
  value.hasPrefix("/") ? nil : "must be an absolute path, got \"\(value)\""
}
private func optionalAbsolutePath(_ value: String) -> String? {
  value.isEmpty ? nil : absolutePath(value)
}
private func logLevelName(_ value: String) -> String? {
  Logger.Level(configName: value) == nil
    ? "unknown log level \"\(value)\" (trace, debug, info, notice, warning, error, critical)" : nil
}
private func optionalLogLevelName(_ value: String) -> String? {
  value.isEmpty ? nil : logLevelName(value)
}
private func capabilityName(_ value: String) -> String? {
  if value == "ALL" { return nil }
  do {
    _ = try Capability(name: value)
    return nil
  } catch {
    return error.message
  }
}
private func optionalHTTPURL(_ value: String) -> String? {
  if value.isEmpty { return nil }
  guard let scheme = value.firstRange(of: "://"), ["http", "https"].contains(value[..<scheme.lowerBound]),
    value[scheme.upperBound...].first.map({ $0 != "/" }) ?? false,
    value.allSatisfy({ $0.isASCII && !$0.isWhitespace })
  else {
    return "must be an http:// or https:// URL with a host, got \"\(value)\""
  }
  return nil
}
private func groupName(_ value: String) -> String? {
  if value.isEmpty { return nil }
  return getgrnam(value) == nil ? "no such group \"\(value)\"" : nil
}

/// Reads the keys of one TOML table, remembering which were used so that `finish()`
/// can refuse the rest by name.
private struct TableReader {
  let table: TOMLTable
  let prefix: String
  let file: String
  var used: Set<String> = []

  init(table: TOMLTable, prefix: String, file: String) {
    self.table = table
    self.prefix = prefix
    self.file = file
  }

  func fullKey(_ key: String) -> String { prefix.isEmpty ? key : prefix + "." + key }

  func fail(_ key: String, _ reason: String) -> ConfigError {
    ConfigError(file: file, key: fullKey(key), reason: reason)
  }

  mutating func value(_ key: String) -> TOMLValueConvertible? {
    used.insert(key)
    return table[key]
  }

  mutating func string(_ key: String, into target: inout String, check: (String) -> String?) throws(ConfigError) {
    guard let value = value(key) else { return }
    guard let string = value.string else { throw fail(key, "expected a string, found \(value.type)") }
    if let reason = check(string) { throw fail(key, reason) }
    target = string
  }

  mutating func strings(_ key: String, into target: inout [String], check: (String) -> String?) throws(ConfigError) {
    guard let value = value(key) else { return }
    guard let array = value.array else { throw fail(key, "expected an array of strings, found \(value.type)") }
    var result: [String] = []
    for (index, element) in array.enumerated() {
      guard let string = element.string else {
        throw fail(key, "element \(index) must be a string, found \(element.type)")
      }
      if let reason = check(string) { throw fail(key, "element \(index): \(reason)") }
      result.append(string)
    }
    target = result
  }

  /// A table of string values with free keys (`{ name = "value", ... }`).
  mutating func stringTable(
    _ key: String, into target: inout [String: String], check: (String, String) -> String?
  ) throws(ConfigError) {
    guard let value = value(key) else { return }
    guard let table = value.table else { throw fail(key, "expected a table of strings, found \(value.type)") }
    var result: [String: String] = [:]
    for name in table.keys.sorted() {
      guard let string = table[name]?.string else {
        throw fail(key, "\(name) must be a string, found \(table[name]?.type.description ?? "nothing")")
      }
      if let reason = check(name, string) { throw fail(key, reason) }
      result[name] = string
    }
    target = result
  }

  mutating func bool(_ key: String, into target: inout Bool) throws(ConfigError) {
    guard let value = value(key) else { return }
    guard let bool = value.bool else { throw fail(key, "expected true or false, found \(value.type)") }
    target = bool
  }

  mutating func int(_ key: String, into target: inout Int, range: ClosedRange<Int>) throws(ConfigError) {
    guard let value = value(key) else { return }
    guard let int = value.int else { throw fail(key, "expected an integer, found \(value.type)") }
    guard range.contains(int) else {
      throw fail(key, "\(int) is out of range \(range.lowerBound)...\(range.upperBound)")
    }
    target = int
  }

  /// A number; an integer is taken as one too (`1` for `1.0`).
  mutating func double(_ key: String, into target: inout Double, range: ClosedRange<Double>) throws(ConfigError) {
    guard let value = value(key) else { return }
    guard let number = value.double ?? value.int.map(Double.init) else {
      throw fail(key, "expected a number, found \(value.type)")
    }
    guard range.contains(number) else {
      throw fail(key, "\(number) is out of range \(range.lowerBound)...\(range.upperBound)")
    }
    target = number
  }

  mutating func subtable(_ key: String) throws(ConfigError) -> TableReader? {
    guard let value = value(key) else { return nil }
    guard let table = value.table else { throw fail(key, "expected a table [\(fullKey(key))], found \(value.type)") }
    return TableReader(table: table, prefix: fullKey(key), file: file)
  }

  func finish() throws(ConfigError) {
    for key in table.keys.sorted() where !used.contains(key) {
      throw fail(key, "unknown key")
    }
  }
}
