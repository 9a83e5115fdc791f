import CRIAPI
import CrispCore
import CrispIPC
import CrispLinux
import CrispOCI
import Foundation
import GRPCCore
import SpecBuilder

/// What CreateContainer, the pod infra process and the restart paths share: the pod a
/// spec is built for, the options SpecBuilder gets from this node, the shim launch,
/// and the encoding of the CRI config kept with each container.
extension RuntimeService {
  func podContext(_ pod: PodRecord, _ config: Runtime_V1_PodSandboxConfig) -> PodContext {
    let dir = runtime.podDirectory(pod.id)
    let hostIPC = config.linux.securityContext.namespaceOptions.ipc == .node
    return PodContext(
      podID: pod.id, networkNamespacePath: pod.netns, ipcNamespacePath: pod.ipcns, utsNamespacePath: pod.utsns,
      resolvConfPath: dir + "/resolv.conf", hostnamePath: dir + "/hostname", hostsPath: dir + "/hosts",
      shmPath: hostIPC ? "/dev/shm" : runtime.paths.podSharedMemory(pod.id),
      hostname: readWholeFileOrEmpty(dir + "/hostname").trimmingCharacters(in: .whitespacesAndNewlines),
      cgroupParent: config.linux.cgroupParent)
  }

  /// `handler`: the pod's runtime handler, whose features the spec may use.
  func specOptions(handler: String = "") throws(CrispError) -> SpecOptions {
    let profile = try ContainerSeccompProfile.load(path: runtime.config.frontd.seccompProfile)
    let ownOOM =
      Int(readWholeFileOrEmpty("/proc/self/oom_score_adj").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    // Containers get what the launcher (which starts shimd and runc) holds, not frontd.
    let permitted = readWholeFileOrEmpty("/proc/\(runtime.launcher.pid)/status").split(separator: "\n")
      .first { $0.hasPrefix("CapPrm:") }.flatMap {
        UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16)
      }
    return SpecOptions(
      cgroupDriver: runtime.config.frontd.cgroupDriver == "systemd" ? .systemd : .cgroupfs,
      cgroup: CgroupFeatures.detect(),
      grantableCapabilities: permitted.map { KnownCapabilities.names(inMask: $0) },
      defaultSeccompProfile: profile,
      seccompDefaultWhenUnset: runtime.config.frontd.seccompUseDefaultWhenEmpty,
      kernelVersion: KernelVersion(Self.kernelRelease()),
      minimumOOMScoreAdj: ownOOM,
      recursiveReadOnlyMounts: runtime.handlerFeatures[handler]?.recursiveReadOnlyMounts ?? false)
  }

  static func kernelRelease() -> String {
    var name = utsname()
    uname(&name)
    return withUnsafeBytes(of: name.release) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
  }

  /// Runs `shimd --daemonize`, which answers once the container is created and the
  /// shim serves; the shim itself lives on detached, in its own session.
  /// `logRoot`: the directory `logPath` is below, through which shimd follows no symlink.
  func launchShim(
    id: String, bundle: ContainerBundle, logPath: String, logRoot: String = "", handler: String, tty: Bool = false,
    stdin: Bool = false, stdinOnce: Bool = false
  ) async throws(CrispError) {
    guard let runtimePath = runtime.config.frontd.runtimePath(handler: handler) else {
      throw CrispError(.failedPrecondition, "runtime handler \"\(handler)\" is no longer configured")
    }
    var arguments = [
      "--id", id, "--bundle", bundle.directory, "--run-root", runtime.paths.runRoot,
      "--runtime", runtimePath, "--runtime-root", runtime.runtimeRoot(handler: handler), "--log-path", logPath,
      "--events", CrispPaths.ipcAddress(runtime.paths.eventsSocket), "--log-level",
      runtime.config.shimd.logLevel.isEmpty ? runtime.config.logLevel : runtime.config.shimd.logLevel,
      "--daemonize",
    ]
    if !logRoot.isEmpty { arguments += ["--log-root", logRoot] }
    if tty { arguments.append("--tty") }
    if stdin { arguments.append("--stdin") }
    if stdinOnce { arguments.append("--stdin-once") }
    let output = try await runtime.launcher.run(
      path: runtime.shimdPath, arguments: arguments, environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"],
      timeoutMs: 60_000)
    guard output.status == 0 else {
      let reason = String(decoding: output.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
      throw CrispError(
        .internal,
        "container \(id) could not be created: " + (reason.isEmpty ? "shimd exited with \(output.status)" : reason))
    }
  }

  static func encode(_ config: Runtime_V1_ContainerConfig) throws(CrispError) -> [UInt8] {
    do {
      return try config.serializedBytes()
    } catch {
      throw CrispError(.invalidArgument, "container config cannot be encoded: \(error)")
    }
  }

  static func decodeContainerConfig(_ record: ContainerRecord) throws(CrispError) -> Runtime_V1_ContainerConfig {
    do {
      return try Runtime_V1_ContainerConfig(serializedBytes: record.config)
    } catch {
      throw CrispError(.internal, "stored config of container \(record.id) cannot be decoded: \(error)")
    }
  }
}
