import CrispCore
import CrispLinux
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// One option of crisp.toml, written down once: its key, what it means, how the strict
/// loader reads it, how `cri-frontd config` writes its value. The loader, the printed
/// configuration and the README's table all come from `CrispConfig.sections`, so they
/// cannot disagree (ConfigTests checks the README's copy).
struct ConfigOption {
  let key: String
  /// The comment above the key in `cri-frontd config`, and its meaning in the README.
  let help: String
  let read: (inout TableReader, inout CrispConfig) throws(ConfigError) -> Void
  /// The value as TOML.
  let value: (CrispConfig) -> String
}

/// A table of crisp.toml (the top level has no name).
struct ConfigSection {
  let name: String
  let help: String
  let options: [ConfigOption]
}

extension ConfigOption {
  typealias Path<Value> = WritableKeyPath<CrispConfig, Value>

  static func string(_ key: String, _ path: Path<String>, _ help: String, check: @escaping (String) -> String?)
    -> ConfigOption
  {
    ConfigOption(
      key: key, help: help,
      read: { reader, config throws(ConfigError) in
        try reader.string(key, into: &config[keyPath: path], check: check)
      }, value: { tomlString($0[keyPath: path]) })
  }

  static func strings(_ key: String, _ path: Path<[String]>, _ help: String, check: @escaping (String) -> String?)
    -> ConfigOption
  {
    ConfigOption(
      key: key, help: help,
      read: { reader, config throws(ConfigError) in
        try reader.strings(key, into: &config[keyPath: path], check: check)
      }, value: { "[" + $0[keyPath: path].map(tomlString).joined(separator: ", ") + "]" })
  }

  static func int(_ key: String, _ path: Path<Int>, _ range: ClosedRange<Int>, _ help: String) -> ConfigOption {
    ConfigOption(
      key: key, help: help,
      read: { reader, config throws(ConfigError) in
        try reader.int(key, into: &config[keyPath: path], range: range)
      }, value: { "\($0[keyPath: path])" })
  }

  static func double(_ key: String, _ path: Path<Double>, _ range: ClosedRange<Double>, _ help: String)
    -> ConfigOption
  {
    ConfigOption(
      key: key, help: help,
      read: { reader, config throws(ConfigError) in
        try reader.double(key, into: &config[keyPath: path], range: range)
      }, value: { "\($0[keyPath: path])" })
  }

  static func bool(_ key: String, _ path: Path<Bool>, _ help: String) -> ConfigOption {
    ConfigOption(
      key: key, help: help,
      read: { reader, config throws(ConfigError) in
        try reader.bool(key, into: &config[keyPath: path])
      }, value: { "\($0[keyPath: path])" })
  }

  static func choice<Choice: RawRepresentable & CaseIterable>(_ key: String, _ path: Path<Choice>, _ help: String)
    -> ConfigOption where Choice.RawValue == String
  {
    ConfigOption(
      key: key, help: help,
      read: { reader, config throws(ConfigError) in
        try reader.choice(key, into: &config[keyPath: path])
      }, value: { tomlString($0[keyPath: path].rawValue) })
  }

  static func level(_ key: String, _ path: Path<Logger.Level>, _ help: String) -> ConfigOption {
    ConfigOption(
      key: key, help: help,
      read: { reader, config throws(ConfigError) in
        try reader.level(key, into: &config[keyPath: path])
      }, value: { tomlString($0[keyPath: path].rawValue) })
  }

  /// A daemon's own log level: empty follows the top-level `log_level`.
  static func daemonLevel(_ path: Path<Logger.Level?>) -> ConfigOption {
    ConfigOption(
      key: "log_level", help: "This daemon's log level; empty follows the top-level log_level.",
      read: { reader, config throws(ConfigError) in
        try reader.optionalLevel("log_level", into: &config[keyPath: path])
      }, value: { tomlString($0[keyPath: path]?.rawValue ?? "") })
  }

  static func capabilities(_ path: Path<[String]>, _ help: String) -> ConfigOption {
    strings("capabilities", path, help, check: capabilityName)
  }
}

extension CrispConfig {
  /// Every option of crisp.toml, table by table, in the order `cri-frontd config`
  /// prints them.
  static var sections: [ConfigSection] {
    [
      ConfigSection(
        name: "", help: "",
        options: [
          .string(
            "root", \.root, "Persistent state: image store, metadata database, CNI result cache.",
            check: absolutePath),
          .string(
            "run_root", \.runRoot,
            "Runtime state cleared by a reboot: sockets, pinned namespaces, container bundles. Every socket path "
              + "derives from it, so it is at most 32 bytes long.", check: runRootPath),
          .level(
            "log_level", \.logLevel,
            "Log level of every daemon: trace, debug, info, notice, warning, error, critical. --log-level and "
              + "each daemon's own log_level override it."),
          .bool(
            "seccomp", \.seccomp, "Each daemon installs its own seccomp filter before serving (false: debugging only)."),
          .choice(
            "seccomp_action", \.seccompAction,
            "A refused system call fails with EPERM (\"errno\"), kills the daemon (\"kill\"), or is only logged "
              + "(\"log\")."),
        ]),
      ConfigSection(
        name: "ipc", help: "Messages between the daemons (NNG, ipc:// sockets under run_root, mode 0600).",
        options: [
          .int(
            "request_timeout_ms", \.ipc.requestTimeoutMs, 1...3_600_000,
            "Deadline of a request from one daemon to another, in milliseconds."),
          .int(
            "health_timeout_ms", \.ipc.healthTimeoutMs, 1...60_000,
            "Deadline of the health requests behind the CRI Status call, in milliseconds."),
          .int("server_workers", \.ipc.serverWorkers, 1...1024, "Requests each daemon serves at once."),
          .int(
            "pull_timeout_ms", \.ipc.pullTimeoutMs, 1_000...86_400_000,
            "Deadline of an image pull handed to imaged, in milliseconds."),
        ]),
      ConfigSection(
        name: "frontd", help: "cri-frontd: the CRI gRPC server kubelet talks to.",
        options: [
          .string(
            "listen", \.frontd.listen, "The CRI socket; empty means \"<run_root>/crisp.sock\".",
            check: optionalAbsolutePath),
          .string(
            "socket_group", \.frontd.socketGroup,
            "Unix group that owns the CRI socket (mode 0660); empty keeps root's group.", check: groupName),
          .string(
            "runtime_path", \.frontd.runtimePath, "The OCI runtime containers run with (the \"runc\" runtime handler).",
            check: absolutePath),
          ConfigOption(
            key: "runtime_handlers",
            help:
              "More runtime handlers (RunPodSandbox's runtime_handler): name = \"executable\", each an OCI runtime "
              + "with runc's command line, e.g. { crun = \"/usr/bin/crun\" }.",
            read: { reader, config throws(ConfigError) in
              try reader.stringTable("runtime_handlers", into: &config.frontd.runtimeHandlers, check: handlerEntry)
            }, value: { inlineTable($0.frontd.runtimeHandlers) }),
          .string(
            "shimd_path", \.frontd.shimdPath, "The shimd executable; empty means the one installed beside cri-frontd.",
            check: optionalAbsolutePath),
          .string(
            "pause_path", \.frontd.pausePath,
            "crisp-pause, PID 1 of pods that share one PID namespace; empty means the one beside cri-frontd.",
            check: optionalAbsolutePath),
          .capabilities(
            \.frontd.capabilities,
            "Capabilities cri-frontd keeps while serving: none (crisp-launcher, started before frontd drops them, "
              + "runs shimd and the runtime). [\"ALL\"] keeps all, for debugging."),
          .string(
            "stream_address", \.frontd.streamAddress,
            "Address of the streaming server of Exec, Attach and PortForward (kubectl exec/attach/port-forward).",
            check: { $0.isEmpty ? "must not be empty" : nil }),
          .int("stream_port", \.frontd.streamPort, 0...65535, "Port of the streaming server; 0: a free port."),
          .string(
            "stream_tls_cert", \.frontd.streamTLSCert,
            "TLS certificate of the streaming server (with stream_tls_key, or neither).", check: optionalAbsolutePath),
          .string(
            "stream_tls_key", \.frontd.streamTLSKey, "Its key.", check: optionalAbsolutePath),
          .string(
            "stream_tls_client_ca", \.frontd.streamTLSClientCA,
            "A CA client certificates must chain to; empty: no client certificate asked.",
            check: optionalAbsolutePath),
          .int(
            "stream_idle_timeout_ms", \.frontd.streamIdleTimeoutMs, 1_000...86_400_000,
            "A streaming session with no traffic for this long is closed, in milliseconds (kubelet's 4 h)."),
          .int(
            "stream_token_ttl_ms", \.frontd.streamTokenTTLMs, 1_000...3_600_000,
            "How long a URL answered by Exec, Attach or PortForward stays usable, in milliseconds."),
          .int(
            "max_stream_sessions", \.frontd.maxStreamSessions, 1...100_000,
            "Streaming sessions at once; more are refused."),
          .int(
            "metrics_port", \.frontd.metricsPort, 0...65535,
            "Prometheus metrics (GET /metrics: CRI call latencies and errors, image pulls, pod network setup, "
              + "shims, containers and pods by state): the port, 0 for none."),
          .string(
            "metrics_address", \.frontd.metricsAddress,
            "The address the metrics listen on (no authentication: keep it local or firewalled).",
            check: { $0.isEmpty ? "must not be empty" : nil }),
          .choice(
            "cgroup_driver", \.frontd.cgroupDriver,
            "\"cgroupfs\" or \"systemd\": who makes the containers' cgroups; must match kubelet's cgroupDriver."),
          .string(
            "seccomp_profile", \.frontd.seccompProfile,
            "The RuntimeDefault seccomp profile (containers' seccomp.json format; make run and make install put "
              + "deploy/seccomp/default.json there).", check: absolutePath),
          .bool(
            "seccomp_use_default_when_empty", \.frontd.seccompUseDefaultWhenEmpty,
            "A container whose request names no seccomp profile gets seccomp_profile (true, as CRI-O: secure) or "
              + "runs unconfined (false, as containerd; make conformance sets it, since critest expects that)."),
          .string(
            "default_log_dir", \.frontd.defaultLogDir,
            "Container logs when the pod names no log directory (<dir>/<pod>/<container>.log).", check: absolutePath),
          .daemonLevel(\.frontd.logLevel),
        ]),
      ConfigSection(
        name: "imaged", help: "imaged: pulls, stores and unpacks images.",
        options: [
          .capabilities(
            \.imaged.capabilities,
            "Capabilities imaged keeps (bounding, effective, permitted): what a faithful layer unpack needs. "
              + "[\"ALL\"] keeps all."),
          .string(
            "registries_conf", \.imaged.registriesConf,
            "Mirrors, insecure and blocked registries, short-name search registries, in the "
              + "containers-registries.conf(5) v2 format; a missing file means no rules.", check: absolutePath),
          .string(
            "auth_file", \.imaged.authFile,
            "Registry credentials (Docker config.json format) for pulls that bring none; a missing file means "
              + "anonymous.", check: absolutePath),
          .string(
            "certs_dir", \.imaged.certsDir,
            "Per-registry TLS (containers-certs.d(5)): <dir>/<host[:port]>/*.crt are extra CAs, *.cert with *.key "
              + "a client certificate.", check: absolutePath),
          .int(
            "max_concurrent_downloads", \.imaged.maxConcurrentDownloads, 1...64, "Layers downloaded at once per pull."),
          .int(
            "max_concurrent_pulls", \.imaged.maxConcurrentPulls, 1...1024,
            "PullImage requests worked on at once; with max_queued_pulls it leaves 4 of ipc.server_workers free "
              + "for health and status calls."),
          .int(
            "max_queued_pulls", \.imaged.maxQueuedPulls, 0...1024,
            "PullImage requests waiting beyond those; more fail at once (ResourceExhausted)."),
          .int(
            "pull_progress_timeout_ms", \.imaged.pullProgressTimeoutMs, 100...3_600_000,
            "A pull that receives nothing for this long fails, in milliseconds."),
          .strings(
            "pinned_images", \.imaged.pinnedImages,
            "Images kubelet's image garbage collection leaves alone (shown pinned): exact names, globs ending in * "
              + "(\"registry.k8s.io/pause*\"), keywords between two * (\"*pause*\"), as CRI-O's.",
            check: pinnedImagePattern),
          .int(
            "max_layer_bytes", \.imaged.maxLayerBytes, 1...(1 << 50),
            "Uncompressed bytes of one layer; past it a pull fails (ResourceExhausted) and leaves nothing behind."),
          .int(
            "max_image_bytes", \.imaged.maxImageBytes, 1...(1 << 50),
            "Uncompressed bytes of a whole image (the same failure)."),
          .int(
            "max_layer_entries", \.imaged.maxLayerEntries, 1...1_000_000_000,
            "Entries of one layer (the same failure)."),
          .int(
            "max_path_depth", \.imaged.maxPathDepth, 1...4096,
            "Directories in one entry's path (the same failure)."),
          .int(
            "min_free_bytes", \.imaged.minFreeBytes, 0...(1 << 50),
            "Free bytes the image store's filesystem keeps: a pull that would leave less stops, leaving nothing."),
          .daemonLevel(\.imaged.logLevel),
        ]),
      ConfigSection(
        name: "netd", help: "netd: pod network namespaces and CNI plugins.",
        options: [
          .string(
            "cni_config_dir", \.netd.cniConfigDir,
            "CNI network configurations (.conflist, .conf, .json); the first in lexical order is used.",
            check: absolutePath),
          .strings(
            "cni_plugin_dirs", \.netd.cniPluginDirs, "Directories searched for CNI plugin executables, in order.",
            check: absolutePath),
          .string(
            "cni_default_network", \.netd.cniDefaultNetwork,
            "The network pods join, by name; empty takes the first configuration file.", check: { _ in nil }),
          .int(
            "cni_plugin_timeout_ms", \.netd.cniPluginTimeoutMs, 100...600_000,
            "How long one CNI plugin may run before it is killed, in milliseconds."),
          .capabilities(
            \.netd.capabilities, "Capabilities netd keeps; its CNI plugins get no more. [\"ALL\"] keeps all."),
          .daemonLevel(\.netd.logLevel),
        ]),
      ConfigSection(
        name: "shimd", help: "shimd: one monitor process per container.",
        options: [.daemonLevel(\.shimd.logLevel)]),
      ConfigSection(
        name: "tracing",
        help:
          "OpenTelemetry traces (OTLP/HTTP + protobuf) from cri-frontd, imaged and netd (services crisp-frontd, "
          + "crisp-imaged, crisp-netd): a span per CRI call, child spans for the calls between daemons, kubelet's "
          + "traceparent continued.",
        options: [
          .string(
            "endpoint", \.tracing.endpoint,
            "The collector's URL, e.g. \"http://127.0.0.1:4318\" (\"/v1/traces\" is added when the path does not "
              + "name it). Empty: tracing off.", check: optionalHTTPURL),
          .double(
            "sampling_ratio", \.tracing.samplingRatio, 0...1,
            "Share of new traces recorded (0 to 1); a call that arrives in a sampled trace is always recorded."),
          .int(
            "export_interval_ms", \.tracing.exportIntervalMs, 10...600_000,
            "Finished spans are sent in batches this often, in milliseconds."),
        ]),
    ]
  }
}

// Value checks: each returns the reason a value is refused, or nil.

/// The longest socket path under run_root, each container's shim's, must fit in a Unix
/// socket address (108 bytes with the NUL); a longer one fails only at the first
/// container, with an error from NNG that names no length.
func runRootPath(_ value: String) -> String? {
  if let notAbsolute = absolutePath(value) { return notAbsolute }
  let longest = CrispPaths(root: "/", runRoot: value).shimSocket(containerID: String(repeating: "0", count: 64))
  let room = 107 - (longest.utf8.count - value.utf8.count)
  guard value.utf8.count <= room else {
    return "is \(value.utf8.count) bytes long, at most \(room): each container's shim listens on "
      + "<run_root>/shims/<64-hex id>.ipc, and a Unix socket path has 107 bytes"
  }
  return nil
}

func absolutePath(_ value: String) -> String? {
  value.hasPrefix("/") ? nil : "must be an absolute path, got \"\(value)\""
}

func optionalAbsolutePath(_ value: String) -> String? {
  value.isEmpty ? nil : absolutePath(value)
}

func capabilityName(_ value: String) -> String? {
  if value == "ALL" { return nil }
  do {
    _ = try Capability(name: value)
    return nil
  } catch {
    return error.message
  }
}

func optionalHTTPURL(_ value: String) -> String? {
  if value.isEmpty { return nil }
  guard let scheme = value.firstRange(of: "://"), ["http", "https"].contains(value[..<scheme.lowerBound]),
    value[scheme.upperBound...].first.map({ $0 != "/" }) ?? false,
    value.allSatisfy({ $0.isASCII && !$0.isWhitespace })
  else {
    return "must be an http:// or https:// URL with a host, got \"\(value)\""
  }
  return nil
}

func groupName(_ value: String) -> String? {
  if value.isEmpty { return nil }
  return getgrnam(value) == nil ? "no such group \"\(value)\"" : nil
}

func handlerEntry(_ name: String, _ path: String) -> String? {
  if name == "runc" { return "\"runc\" is runtime_path; name the others differently" }
  if name.isEmpty || !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) {
    return "handler name \"\(name)\" must be letters, digits, '-', '_' or '.'"
  }
  return absolutePath(path)
}

func pinnedImagePattern(_ pattern: String) -> String? {
  if pattern.isEmpty || pattern == "*" || pattern == "**" { return "must name an image or a pattern" }
  let keyword = pattern.count > 2 && pattern.hasPrefix("*") && pattern.hasSuffix("*")
  let inner = pattern.dropFirst(keyword ? 1 : 0).dropLast(pattern.hasSuffix("*") ? 1 : 0)
  return inner.contains("*")
    ? "\"\(pattern)\": a '*' may end a pattern (a glob) or start and end one (a keyword), nowhere else" : nil
}

/// A TOML basic string.
func tomlString(_ value: String) -> String {
  var out = "\""
  for scalar in value.unicodeScalars {
    switch scalar {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\n": out += "\\n"
    case "\t": out += "\\t"
    default:
      if scalar.value < 0x20 || scalar.value == 0x7f {
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      } else {
        out.unicodeScalars.append(scalar)
      }
    }
  }
  return out + "\""
}

func inlineTable(_ values: [String: String]) -> String {
  values.isEmpty
    ? "{}"
    : "{ " + values.sorted { $0.key < $1.key }.map { "\($0.key) = \(tomlString($0.value))" }.joined(separator: ", ")
      + " }"
}
