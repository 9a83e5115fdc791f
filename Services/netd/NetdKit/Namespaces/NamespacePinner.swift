import CCrispSys
import CrispCore
import CrispIPC
import CrispLinux

#if canImport(Glibc)
  import Glibc
#endif

/// Creates a pod's network, IPC and UTS namespaces and pins each with a bind mount
/// under `<run_root>/ns/<pod>/`, as CRI-O's pinns does: no process holds them. A pod
/// with its own IPC namespace also gets its /dev/shm there (`shm`, a tmpfs): shared
/// memory belongs with the IPC namespace, and frontd mounts nothing.
struct NamespacePinner: Sendable {
  let directory: String
  /// The pod's /dev/shm size, as CRI-O's default.
  static let shmSize = "65536k"

  struct Kinds: OptionSet, Sendable {
    let rawValue: Int32
    static let network = Kinds(rawValue: Int32(CRISP_NS_NET))
    static let ipc = Kinds(rawValue: Int32(CRISP_NS_IPC))
    static let uts = Kinds(rawValue: Int32(CRISP_NS_UTS))
  }

  func podDirectory(_ podID: String) -> String { directory + "/" + podID }

  func paths(_ podID: String, kinds: Kinds) -> PodNamespaces {
    let dir = podDirectory(podID)
    return PodNamespaces(
      network: kinds.contains(.network) ? dir + "/net" : "",
      ipc: kinds.contains(.ipc) ? dir + "/ipc" : "",
      uts: kinds.contains(.uts) ? dir + "/uts" : "")
  }

  /// Pins new namespaces of `kinds`, with the hostname set and the sysctls written
  /// inside them. On failure nothing is left mounted or created.
  func pin(podID: String, kinds: Kinds, hostname: String, sysctls: [(path: String, value: String)])
    throws(CrispError) -> PodNamespaces
  {
    let namespaces = paths(podID, kinds: kinds)
    guard !kinds.isEmpty else { return namespaces }
    // Whatever an earlier, interrupted attempt left: never stack a second pin on it.
    unpin(podID)
    try makePrivateDirectory(directory)
    let dir = podDirectory(podID)
    // Root-only: the pod's shared memory (a 1777 tmpfs) is in it.
    if mkdir(dir, 0o700) != 0 && errno != EEXIST {
      throw CrispError(.internal, "cannot create \(dir): \(Files.errnoText())")
    }
    let files = [namespaces.network, namespaces.ipc, namespaces.uts].filter { !$0.isEmpty }
    for file in files {
      let fd = open(file, O_RDONLY | O_CREAT | O_CLOEXEC, 0o444)
      guard fd >= 0 else {
        let reason = Files.errnoText()
        unpin(podID)
        throw CrispError(.internal, "cannot create \(file): \(reason)")
      }
      close(fd)
    }

    var error = crisp_pin_error()
    let rv = withCMutableStrings(sysctls.map(\.path)) { sysctlPaths in
      withCMutableStrings(sysctls.map(\.value)) { sysctlValues in
        crisp_pin_namespaces(
          kinds.rawValue, namespaces.network, namespaces.ipc, namespaces.uts, hostname,
          constArray(sysctlPaths), constArray(sysctlValues), Int32(sysctls.count), &error)
      }
    }
    if rv != 0 {
      unpin(podID)
      let reason = Files.errnoText(error.error)
      switch error.step {
      case 2: throw CrispError(.invalidArgument, "cannot set hostname \"\(hostname)\": \(reason)")
      case 3, 4:
        let index = Int(error.index)
        let name = index < sysctls.count ? sysctls[index].path.replacingSlashes() : "?"
        throw CrispError(.invalidArgument, "cannot set sysctl \(name): \(reason)")
      case 5: throw CrispError(.internal, "cannot pin namespace: bind mount failed: \(reason)")
      default: throw CrispError(.internal, "cannot create namespaces: \(reason)")
      }
    }
    if kinds.contains(.ipc) {
      let shm = dir + "/shm"
      if mkdir(shm, 0o1777) != 0 && errno != EEXIST {
        let reason = Files.errnoText()
        unpin(podID)
        throw CrispError(.internal, "cannot create \(shm): \(reason)")
      }
      chmod(shm, 0o1777)  // mkdir's mode goes through the umask
      if mount("shm", shm, "tmpfs", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), "mode=1777,size=\(Self.shmSize)") != 0 {
        let reason = Files.errnoText()
        unpin(podID)
        throw CrispError(.internal, "cannot mount the pod's /dev/shm at \(shm): \(reason)")
      }
    }
    return namespaces
  }

  /// Unmounts and removes whatever is pinned for the pod; idempotent.
  func unpin(_ podID: String) {
    let dir = podDirectory(podID)
    umount2(dir + "/shm", Int32(MNT_DETACH))
    rmdir(dir + "/shm")
    for name in ["net", "ipc", "uts"] {
      let file = dir + "/" + name
      _ = crisp_unpin_namespace(file)
      unlink(file)
    }
    rmdir(dir)
  }

  /// Whether a namespace file is still a pinned namespace (a mount, not a plain file).
  static func isPinned(_ path: String) -> Bool {
    var file = stat()
    var parent = stat()
    guard !path.isEmpty, stat(path, &file) == 0 else { return false }
    let dir = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
    guard stat(dir, &parent) == 0 else { return false }
    // A namespace inode lives on the nsfs filesystem, never on the directory's.
    return file.st_dev != parent.st_dev
  }
}

extension String {
  fileprivate func replacingSlashes() -> String { String(map { $0 == "/" ? "." : $0 }) }
}

/// `char *const *` as the `const char *const *` the C call takes.
private func constArray(_ array: UnsafePointer<UnsafeMutablePointer<CChar>?>) -> UnsafePointer<UnsafePointer<CChar>?> {
  UnsafeRawPointer(array).assumingMemoryBound(to: UnsafePointer<CChar>?.self)
}
