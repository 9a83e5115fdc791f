import CRIAPI
import CrispCore
import CrispOCI

extension SpecBuilder {
  /// The namespaces: network, IPC and UTS joined by path from the pod (the host's when
  /// the pod has none: omitted); PID new (CONTAINER), the pod's infra process's (POD),
  /// the target container's (TARGET), or the host's (NODE: omitted); mount always new;
  /// cgroup new on the unified hierarchy only (runc on v1/hybrid keeps the host's view).
  /// User namespaces are not supported.
  static func namespaces(inputs: SpecInputs) throws(CrispError) -> [RuntimeSpec.LinuxNamespace] {
    let options = inputs.config.linux.securityContext.namespaceOptions
    for (field, context) in [
      (
        "linux.security_context.namespace_options",
        inputs.config.linux.securityContext.hasNamespaceOptions ? options : nil
      ),
      (
        "linux.security_context.namespace_options (pod sandbox)",
        inputs.sandboxConfig.linux.securityContext.hasNamespaceOptions
          ? inputs.sandboxConfig.linux.securityContext.namespaceOptions : nil
      ),
    ] {
      guard let context, context.hasUsernsOptions else { continue }
      let userns = context.usernsOptions
      if userns.mode != .node || !userns.uids.isEmpty || !userns.gids.isEmpty {
        throw CrispError(.invalidArgument, "\(field).userns_options: user namespaces are not supported")
      }
    }

    var result: [RuntimeSpec.LinuxNamespace] = []
    switch options.pid {
    case .container:
      result.append(.init(type: .pid))
    case .pod:
      guard !inputs.pod.pidNamespacePath.isEmpty else {
        throw CrispError(
          .invalidArgument,
          "linux.security_context.namespace_options.pid: POD, but the pod has no shared PID namespace")
      }
      result.append(.init(type: .pid, path: inputs.pod.pidNamespacePath))
    case .target:
      guard !options.targetID.isEmpty else {
        throw CrispError(.invalidArgument, "linux.security_context.namespace_options.target_id: empty for pid TARGET")
      }
      guard !inputs.targetPIDNamespacePath.isEmpty else {
        throw CrispError(
          .invalidArgument,
          "linux.security_context.namespace_options.target_id: container \(options.targetID)"
            + " has no PID namespace to join")
      }
      result.append(.init(type: .pid, path: inputs.targetPIDNamespacePath))
    case .node:
      break
    case .UNRECOGNIZED(let raw):
      throw CrispError(.invalidArgument, "linux.security_context.namespace_options.pid: unknown value \(raw)")
    }
    if !inputs.pod.networkNamespacePath.isEmpty {
      result.append(.init(type: .network, path: inputs.pod.networkNamespacePath))
    }
    if !inputs.pod.ipcNamespacePath.isEmpty { result.append(.init(type: .ipc, path: inputs.pod.ipcNamespacePath)) }
    if !inputs.pod.utsNamespacePath.isEmpty { result.append(.init(type: .uts, path: inputs.pod.utsNamespacePath)) }
    result.append(.init(type: .mount))
    if inputs.options.cgroup.unifiedHierarchy { result.append(.init(type: .cgroup)) }
    return result
  }

  /// The pod's sysctls, each checked to be namespaced and its namespace the pod's own:
  /// `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*` (IPC), `net.*`
  /// (network), `kernel.hostname`/`kernel.domainname` (UTS). Names written with `/`
  /// (`net/ipv4/ip_forward`) are turned to the dotted form.
  static func sysctls(inputs: SpecInputs) throws(CrispError) -> [String: String] {
    var result: [String: String] = [:]
    for (raw, value) in inputs.sandboxConfig.linux.sysctls {
      let name = dottedSysctl(raw)
      let field = "linux.sysctls[\(raw)]"
      if name.hasPrefix("net.") {
        guard !inputs.pod.networkNamespacePath.isEmpty else {
          throw CrispError(.invalidArgument, "\(field): \(name) is not allowed with the host network")
        }
      } else if name.hasPrefix("kernel.shm") || name.hasPrefix("kernel.msg") || name == "kernel.sem"
        || name.hasPrefix("fs.mqueue.")
      {
        guard !inputs.pod.ipcNamespacePath.isEmpty else {
          throw CrispError(.invalidArgument, "\(field): \(name) is not allowed with the host IPC namespace")
        }
      } else if name == "kernel.hostname" || name == "kernel.domainname" {
        guard !inputs.pod.utsNamespacePath.isEmpty else {
          throw CrispError(.invalidArgument, "\(field): \(name) is not allowed with the host UTS namespace")
        }
      } else {
        throw CrispError(.invalidArgument, "\(field): \(name) is not a namespaced sysctl")
      }
      result[name] = value
    }
    return result
  }

  /// Kubernetes' rule: when the first separator is `/`, `/` and `.` swap.
  static func dottedSysctl(_ name: String) -> String {
    guard let first = name.first(where: { $0 == "." || $0 == "/" }), first == "/" else { return name }
    return String(name.map { $0 == "/" ? "." : $0 == "." ? "/" : $0 })
  }

  /// runc's `linux.cgroupsPath`. cgroupfs: `<parent>/crisp-<id>` (an absolute cgroup
  /// path; a systemd slice name as parent is refused). systemd: `<slice>:crisp:<id>`,
  /// the slice being the last component of the parent (kubelet's systemd driver passes
  /// `kubepods-besteffort-pod<uid>.slice`), which must end in `.slice`.
  static func cgroupsPath(inputs: SpecInputs) throws(CrispError) -> String {
    let given = inputs.pod.cgroupParent
    let field = "linux.cgroup_parent"
    switch inputs.options.cgroupDriver {
    case .cgroupfs:
      let parent = given.isEmpty ? (inputs.options.defaultCgroupParent ?? "/crisp") : given
      if parent.hasSuffix(".slice") {
        throw CrispError(
          .invalidArgument, "\(field) \"\(parent)\" is a systemd slice, but the cgroup driver is cgroupfs")
      }
      let clean = cleanPath(parent)
      return (clean == "/" ? "" : clean) + "/crisp-" + inputs.containerID
    case .systemd:
      let parent = given.isEmpty ? (inputs.options.defaultCgroupParent ?? "system.slice") : given
      let slice = parent.split(separator: "/").last.map(String.init) ?? ""
      guard slice.hasSuffix(".slice"), slice.count > ".slice".count else {
        throw CrispError(
          .invalidArgument, "\(field) \"\(parent)\" is not a systemd slice, but the cgroup driver is systemd")
      }
      return slice + ":crisp:" + inputs.containerID
    }
  }
}
