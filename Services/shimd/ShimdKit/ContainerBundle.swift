import CrispCgroups
import CrispCore
import CrispIPC

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif
#if canImport(Glibc)
  import Glibc
#endif

/// The OCI bundle frontd prepared, as shimd reads it (`BundleLayout` names its files):
/// the runtime spec and the root filesystem to mount; shimd adds runc's pid file and
/// log, its own log and the exit record.
struct ContainerBundle: Sendable {
  let path: String
  let layout: BundleLayout
  /// `config.json` as frontd wrote it: parsed again only for an exec, so that the
  /// parsed tree does not stay in memory for the container's life.
  let configBytes: [UInt8]
  let cgroupsPath: String
  /// `root.path`, absolute.
  let rootfsPath: String
  let wantsTerminal: Bool
  /// The root filesystem to mount before `runc create`; nil when `rootfs.json` is
  /// absent (the bundle's root is then used as it is).
  let rootfsMount: RootfsMount?

  init(path: String) throws(CrispError) {
    self.path = path
    layout = BundleLayout(directory: path)
    configBytes = try Files.read(layout.config)
    let config = try Self.parse(configBytes, path: layout.config)
    cgroupsPath = config["linux"]?["cgroupsPath"]?.string ?? ""
    let root = config["root"]?["path"]?.string ?? "rootfs"
    rootfsPath = root.hasPrefix("/") ? root : path + "/" + root
    wantsTerminal = config["process"]?["terminal"]?.bool ?? false
    let rootfsFile = layout.rootfsMount
    if Files.exists(rootfsFile) {
      let bytes = try Files.read(rootfsFile)
      do {
        rootfsMount = try JSONDecoder().decode(RootfsMount.self, from: Data(bytes))
      } catch {
        throw CrispError(.invalidArgument, "\(rootfsFile) is not a RootfsMount: \(error)")
      }
    } else {
      rootfsMount = nil
    }
  }

  var pidFile: String { layout.pidFile }
  var exitFile: String { layout.exitRecord }
  var runcLog: String { layout.runcLog }
  var shimLog: String { layout.shimLog }

  private static func parse(_ bytes: [UInt8], path: String) throws(CrispError) -> JSONValue {
    let config: JSONValue
    do {
      config = try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    } catch {
      throw CrispError(.invalidArgument, "\(path) is not valid JSON: \(error)")
    }
    guard config.isObject, config["process"]?.isObject == true else {
      throw CrispError(.invalidArgument, "\(path) has no process object")
    }
    return config
  }

  /// `slice:prefix:name`: runc must then be run with `--systemd-cgroup`.
  var usesSystemdCgroup: Bool { ContainerCgroup.isSystemdForm(cgroupsPath) }

  /// The container's own `process` with `args` replaced: what `runc exec --process`
  /// runs for an ExecSync (no terminal) or a streaming exec (a terminal of
  /// `width`×`height` cells, set by runc before the command starts, when both are
  /// given).
  func execProcess(arguments: [String], terminal: Bool = false, width: UInt16 = 0, height: UInt16 = 0)
    throws(CrispError) -> [UInt8]
  {
    let config = try Self.parse(configBytes, path: layout.config)
    guard var process = config["process"] else { throw CrispError(.internal, "config.json has no process") }
    process["args"] = .array(arguments.map(JSONValue.string))
    process["terminal"] = .bool(terminal)
    process["consoleSize"] = nil
    if terminal && width > 0 && height > 0 {
      process["consoleSize"] = .object(["width": .uint(UInt64(width)), "height": .uint(UInt64(height))])
    }
    // As CRI-O and containerd do: a terminal program needs TERM.
    if terminal, case .array(var env)? = process["env"] ?? .array([]),
      !env.contains(where: { $0.string?.hasPrefix("TERM=") == true })
    {
      env.append(.string("TERM=xterm"))
      process["env"] = .array(env)
    }
    do {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
      return Array(try encoder.encode(process))
    } catch {
      throw CrispError(.internal, "cannot encode the exec process: \(error)")
    }
  }

  // MARK: root filesystem

  /// Mounts `rootfs.json` at the root path (making the directory if needed). A mount
  /// left there by an earlier shim that died is detached first.
  func mountRootfs() throws(CrispError) {
    guard let mount = rootfsMount else { return }
    let target = rootfsPath
    try makeDirectories(target, mode: 0o755)
    if Self.isMountPoint(target) { _ = umount2(target, Int32(MNT_DETACH)) }
    let type = mount.type.isEmpty ? "overlay" : mount.type
    let source = mount.source.isEmpty ? type : mount.source
    let data = mount.options.joined(separator: ",")
    guard Glibc.mount(source, target, type, 0, data) == 0 else {
      let reason = Files.errnoText()
      throw CrispError(
        .internal, "cannot mount the root filesystem (\(type) on \(target), options \(data)): \(reason)")
    }
  }

  /// Unmounts the root filesystem; nothing mounted is fine.
  func unmountRootfs() throws(CrispError) {
    guard rootfsMount != nil else { return }
    let target = rootfsPath
    for _ in 0..<8 {
      guard Self.isMountPoint(target) else { return }
      if umount2(target, 0) != 0 {
        let code = errno
        if code == EINVAL || code == ENOENT { return }
        if code == EBUSY {
          guard umount2(target, Int32(MNT_DETACH)) == 0 else {
            throw CrispError(.internal, "cannot unmount \(target): \(Files.errnoText())")
          }
        } else {
          throw CrispError(.internal, "cannot unmount \(target): \(Files.errnoText(code))")
        }
      }
    }
  }

  /// Whether `path` is the mount point of a mount in this mount namespace.
  static func isMountPoint(_ path: String) -> Bool {
    guard let mountinfo = Files.text("/proc/self/mountinfo") else { return false }
    for line in mountinfo.split(separator: "\n") {
      let fields = line.split(separator: " ", maxSplits: 5)
      if fields.count > 4, unescapeMountPath(fields[4]) == path { return true }
    }
    return false
  }

  /// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
  static func unescapeMountPath(_ field: Substring) -> String {
    guard field.contains("\\") else { return String(field) }
    var bytes: [UInt8] = []
    let utf8 = Array(field.utf8)
    var i = 0
    while i < utf8.count {
      if utf8[i] == UInt8(ascii: "\\"), i + 4 <= utf8.count,
        let value = UInt8(String(decoding: utf8[(i + 1)..<(i + 4)], as: UTF8.self), radix: 8)
      {
        bytes.append(value)
        i += 4
      } else {
        bytes.append(utf8[i])
        i += 1
      }
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}
