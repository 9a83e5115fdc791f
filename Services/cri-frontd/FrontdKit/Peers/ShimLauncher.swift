import CrispConfig
import CrispCore
import CrispLinux
import SpecBuilder

/// What a shim is started with: the container, its bundle, its log, its runtime.
struct ShimLaunch: Sendable, Equatable {
  var containerID: String
  var bundleDirectory: String
  /// Empty: no log (a pod's infra process).
  var logPath: String
  /// The directory `logPath` is below, through which shimd follows no symlink.
  var logRoot: String = ""
  var handler: String
  var tty = false
  var stdin = false
  var stdinOnce = false
}

/// Starts shims, and cleans up after one that died. A protocol so that the lifecycle
/// can be tested with a fake; `LauncherShims` is the real one, through crisp-launcher.
protocol ShimLauncher: Sendable {
  /// Starts the container's shimd, which answers once the container is created and
  /// the shim serves.
  func launch(_ shim: ShimLaunch) async throws(CrispError)
  /// Deletes what the runtime still holds of a container whose shim died, and unmounts
  /// its root filesystem (`rootfs`, when it had one). Best effort.
  func cleanUpAfterDeadShim(containerID: String, handler: String, rootfs: String?) async
  /// The capabilities what the launcher starts may have (nil: unknown).
  func grantableCapabilities() -> [String]?
}

/// Shims and the runtime started by crisp-launcher for frontd, which may not start
/// them itself (see Launcher).
struct LauncherShims: ShimLauncher {
  let launcher: Launcher
  let config: CrispConfig

  static let umountPath = "/usr/bin/umount"

  /// The shimd executable: configured, or the one beside this cri-frontd.
  static func shimdPath(_ config: CrispConfig) -> String {
    config.frontd.shimdPath.isEmpty ? besideFrontd("shimd") : config.frontd.shimdPath
  }

  /// An executable installed beside this cri-frontd, by absolute path: it is bound
  /// into pods and handed to runc, whose working directory is not frontd's.
  static func besideFrontd(_ name: String) -> String {
    (ProcessControl.executableDirectory ?? "/usr/local/bin") + "/" + name
  }

  /// What crisp-launcher may run: shimd, every runtime handler's binary, and umount
  /// (to unmount a root filesystem a dead shim left).
  static func launchable(_ config: CrispConfig) -> [String] {
    [shimdPath(config), config.frontd.runtimePath]
      + config.frontd.runtimeHandlers.keys.sorted().compactMap { config.frontd.runtimeHandlers[$0] } + [umountPath]
  }

  /// Each runtime handler keeps its containers' state in its own directory (`--root`):
  /// runtimes do not share a state format.
  static func runtimeRoot(_ paths: CrispPaths, handler: String) -> String {
    handler.isEmpty || handler == "runc" ? paths.runRoot + "/runc" : paths.runRoot + "/runtimes/" + handler
  }

  func launch(_ shim: ShimLaunch) async throws(CrispError) {
    guard let runtimePath = config.frontd.runtimePath(handler: shim.handler) else {
      throw CrispError(.failedPrecondition, "runtime handler \"\(shim.handler)\" is no longer configured")
    }
    let paths = config.paths
    var arguments = [
      "--id", shim.containerID, "--bundle", shim.bundleDirectory, "--run-root", paths.runRoot,
      "--runtime", runtimePath, "--runtime-root", Self.runtimeRoot(paths, handler: shim.handler),
      "--log-path", shim.logPath, "--events", CrispPaths.ipcAddress(paths.eventsSocket), "--log-level",
      config.logLevel(for: .shimd).rawValue, "--daemonize",
    ]
    if !shim.logRoot.isEmpty { arguments += ["--log-root", shim.logRoot] }
    if shim.tty { arguments.append("--tty") }
    if shim.stdin { arguments.append("--stdin") }
    if shim.stdinOnce { arguments.append("--stdin-once") }
    let output = try await launcher.run(
      path: Self.shimdPath(config), arguments: arguments, environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"],
      timeoutMs: 60_000)
    guard output.status == 0 else {
      let reason = String(decoding: output.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
      throw CrispError(
        .internal,
        "container \(shim.containerID) could not be created: "
          + (reason.isEmpty ? "shimd exited with \(output.status)" : reason))
    }
  }

  func cleanUpAfterDeadShim(containerID: String, handler: String, rootfs: String?) async {
    if let path = config.frontd.runtimePath(handler: handler) {
      _ = try? await launcher.run(
        path: path,
        arguments: ["--root", Self.runtimeRoot(config.paths, handler: handler), "delete", "--force", containerID],
        environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"], timeoutMs: 30_000)
    }
    if let rootfs {
      _ = try? await launcher.run(
        path: Self.umountPath, arguments: ["--lazy", rootfs], environment: [:], timeoutMs: 10_000)
    }
  }

  func grantableCapabilities() -> [String]? {
    // Containers get what the launcher (which starts shimd and runc) holds, not frontd.
    let permitted = (Files.text("/proc/\(launcher.pid)/status") ?? "").split(separator: "\n")
      .first { $0.hasPrefix("CapPrm:") }.flatMap {
        UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16)
      }
    return permitted.map { KnownCapabilities.names(inMask: $0) }
  }
}
