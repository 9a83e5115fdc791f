extension CrispConfig {
  /// The configuration as commented TOML, as `crio config` prints it: every option,
  /// its meaning and its value. `CrispConfig.parse(render())` gives back the same value.
  public func renderTOML() -> String {
    var out = """
      # crisp configuration (/etc/crisp/crisp.toml).
      # Printed by `cri-frontd config`; every option is shown with its value.
      # Unknown keys and wrong types are refused at start.

      # Persistent state: image store, metadata database, CNI result cache.
      root = \(quote(root))

      # Runtime state cleared by a reboot: sockets, pinned namespaces, container bundles.
      run_root = \(quote(runRoot))

      # Log level of every daemon: trace, debug, info, notice, warning, error, critical.
      # Each daemon's table may override it with its own log_level.
      log_level = \(quote(logLevel))

      # Each daemon installs its own seccomp filter before serving (false: debugging only).
      seccomp = \(seccomp)
      # A refused system call fails with EPERM ("errno"), kills the daemon ("kill"), or is
      # only logged ("log").
      seccomp_action = \(quote(seccompAction))

      # Messages between the daemons (NNG, ipc:// sockets under run_root, mode 0600).
      [ipc]
      # Deadline of a request from one daemon to another, in milliseconds.
      request_timeout_ms = \(ipc.requestTimeoutMs)
      # Deadline of the health requests behind the CRI Status call, in milliseconds.
      health_timeout_ms = \(ipc.healthTimeoutMs)
      # Requests each daemon serves at once.
      server_workers = \(ipc.serverWorkers)
      # Deadline of an image pull handed to imaged, in milliseconds.
      pull_timeout_ms = \(ipc.pullTimeoutMs)

      # cri-frontd: the CRI gRPC server kubelet talks to.
      [frontd]
      # The CRI socket; empty means "<run_root>/crisp.sock".
      listen = \(quote(frontd.listen))
      # Unix group that owns the CRI socket (mode 0660); empty keeps root's group.
      socket_group = \(quote(frontd.socketGroup))
      # The OCI runtime containers run with (the "runc" runtime handler).
      runtime_path = \(quote(frontd.runtimePath))
      # More runtime handlers (RunPodSandbox's runtime_handler): name = "executable",
      # each an OCI runtime with runc's command line, e.g. { crun = "/usr/bin/crun" }.
      runtime_handlers = \(inlineTable(frontd.runtimeHandlers))
      # The shimd executable; empty means the one installed beside cri-frontd.
      shimd_path = \(quote(frontd.shimdPath))
      # crisp-pause, PID 1 of pods that share one PID namespace; empty means beside cri-frontd.
      pause_path = \(quote(frontd.pausePath))
      # Capabilities cri-frontd keeps while serving: none (crisp-launcher, started before
      # frontd drops them, runs shimd and the runtime). ["ALL"] keeps all, for debugging.
      capabilities = [\(frontd.capabilities.map(quote).joined(separator: ", "))]
      # The streaming server of Exec, Attach and PortForward (kubectl exec/attach/port-forward):
      # address and port (0: a free port).
      stream_address = \(quote(frontd.streamAddress))
      stream_port = \(frontd.streamPort)
      # TLS: certificate and key (both or neither); a CA client certificates must chain to.
      stream_tls_cert = \(quote(frontd.streamTLSCert))
      stream_tls_key = \(quote(frontd.streamTLSKey))
      stream_tls_client_ca = \(quote(frontd.streamTLSClientCA))
      # A session with no traffic for this long is closed, in milliseconds.
      stream_idle_timeout_ms = \(frontd.streamIdleTimeoutMs)
      # How long a URL answered by Exec, Attach or PortForward stays usable, in milliseconds.
      stream_token_ttl_ms = \(frontd.streamTokenTTLMs)
      # Streaming sessions at once; more are refused.
      max_stream_sessions = \(frontd.maxStreamSessions)
      # Prometheus metrics (GET /metrics: CRI call latencies and errors, image pulls, pod
      # network setup, shims, containers and pods by state): the port, 0 for none.
      metrics_port = \(frontd.metricsPort)
      # The address it listens on (no authentication: keep it local or firewalled).
      metrics_address = \(quote(frontd.metricsAddress))
      # "cgroupfs" or "systemd": must match kubelet's cgroupDriver.
      cgroup_driver = \(quote(frontd.cgroupDriver))
      # The RuntimeDefault seccomp profile (containers' seccomp.json format).
      seccomp_profile = \(quote(frontd.seccompProfile))
      # A container whose request names no seccomp profile gets seccomp_profile (true, as
      # CRI-O) or runs unconfined (false, as containerd).
      seccomp_use_default_when_empty = \(frontd.seccompUseDefaultWhenEmpty)
      # Container logs when the pod names no log directory (<dir>/<pod>/<container>.log).
      default_log_dir = \(quote(frontd.defaultLogDir))
      log_level = \(quote(frontd.logLevel))

      # imaged: pulls, stores and unpacks images.
      [imaged]
      # Capabilities imaged keeps (bounding, effective, permitted); ["ALL"] keeps all.
      capabilities = [\(imaged.capabilities.map(quote).joined(separator: ", "))]
      # Mirrors, insecure and blocked registries, short-name search registries, in the
      # containers-registries.conf(5) v2 format; a missing file means no rules.
      registries_conf = \(quote(imaged.registriesConf))
      # Registry credentials (Docker config.json format) for pulls that bring none.
      auth_file = \(quote(imaged.authFile))
      # Per-registry TLS (containers-certs.d(5)): <dir>/<host[:port]>/*.crt are extra CAs,
      # *.cert with *.key a client certificate.
      certs_dir = \(quote(imaged.certsDir))
      # Layers downloaded at once per pull.
      max_concurrent_downloads = \(imaged.maxConcurrentDownloads)
      # PullImage requests worked on at once, and waiting beyond those; more fail at once.
      # Both together leave 4 of ipc.server_workers free for health and status calls.
      max_concurrent_pulls = \(imaged.maxConcurrentPulls)
      max_queued_pulls = \(imaged.maxQueuedPulls)
      # A pull that receives nothing for this long fails, in milliseconds.
      pull_progress_timeout_ms = \(imaged.pullProgressTimeoutMs)
      # Images kubelet's image garbage collection leaves alone: exact names, globs ending
      # in * ("registry.k8s.io/pause*"), keywords between two * ("*pause*"), as CRI-O.
      pinned_images = [\(imaged.pinnedImages.map(quote).joined(separator: ", "))]
      # What an image may unpack to; past any limit a pull fails (ResourceExhausted) and
      # leaves nothing behind: uncompressed bytes of one layer and of a whole image,
      # entries of one layer, directories in one entry's path.
      max_layer_bytes = \(imaged.maxLayerBytes)
      max_image_bytes = \(imaged.maxImageBytes)
      max_layer_entries = \(imaged.maxLayerEntries)
      max_path_depth = \(imaged.maxPathDepth)
      # Free bytes the image store's filesystem keeps: a pull that would leave less stops.
      min_free_bytes = \(imaged.minFreeBytes)
      log_level = \(quote(imaged.logLevel))

      # netd: pod network namespaces and CNI plugins.
      [netd]
      # CNI network configurations (.conflist, .conf, .json); the first in lexical order is used.
      cni_config_dir = \(quote(netd.cniConfigDir))
      # Directories searched for CNI plugin executables, in order.
      cni_plugin_dirs = [\(netd.cniPluginDirs.map(quote).joined(separator: ", "))]
      # The network pods join, by name; empty takes the first configuration file.
      cni_default_network = \(quote(netd.cniDefaultNetwork))
      # How long one CNI plugin may run before it is killed, in milliseconds.
      cni_plugin_timeout_ms = \(netd.cniPluginTimeoutMs)
      # Capabilities netd keeps; its CNI plugins get no more. ["ALL"] keeps all.
      capabilities = [\(netd.capabilities.map(quote).joined(separator: ", "))]
      log_level = \(quote(netd.logLevel))

      # shimd: one monitor process per container.
      [shimd]
      log_level = \(quote(shimd.logLevel))

      # OpenTelemetry traces (OTLP/HTTP + protobuf) from cri-frontd, imaged and netd
      # (services crisp-frontd, crisp-imaged, crisp-netd): a span per CRI call, child spans
      # for the calls between daemons, kubelet's traceparent continued.
      [tracing]
      # The collector's URL, e.g. "http://127.0.0.1:4318" ("/v1/traces" is added when the
      # path does not name it). Empty: tracing off.
      endpoint = \(quote(tracing.endpoint))
      # Share of new traces recorded (0 to 1); a call that arrives in a sampled trace is
      # always recorded.
      sampling_ratio = \(tracing.samplingRatio)
      # Finished spans are sent in batches this often, in milliseconds.
      export_interval_ms = \(tracing.exportIntervalMs)

      """
    if !out.hasSuffix("\n") { out += "\n" }
    return out
  }
}

/// A TOML basic string.
private func quote(_ value: String) -> String {
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

private func inlineTable(_ values: [String: String]) -> String {
  values.isEmpty
    ? "{}"
    : "{ " + values.sorted { $0.key < $1.key }.map { "\($0.key) = \(quote($0.value))" }.joined(separator: ", ") + " }"
}
