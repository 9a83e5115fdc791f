/// Every file and socket crisp uses, derived from the two configurable roots, so a
/// whole instance (tests, `make run`) can live under a temporary directory.
public struct CrispPaths: Sendable, Equatable {
  /// Persistent state (`/var/lib/crisp`).
  public var root: String
  /// Runtime state that a reboot clears (`/run/crisp`).
  public var runRoot: String

  public init(root: String, runRoot: String) {
    self.root = root
    self.runRoot = runRoot
  }

  public var criSocket: String { runRoot + "/crisp.sock" }
  public var frontdLock: String { runRoot + "/cri-frontd.lock" }
  /// frontd's IPC socket (health for crispctl; test hooks).
  public var frontdSocket: String { runRoot + "/cri-frontd.ipc" }
  public var imagedSocket: String { runRoot + "/imaged.ipc" }
  public var netdSocket: String { runRoot + "/netd.ipc" }
  public var eventsSocket: String { runRoot + "/events.ipc" }
  public var shimsDir: String { runRoot + "/shims" }
  public var namespacesDir: String { runRoot + "/ns" }
  public var containersDir: String { runRoot + "/containers" }

  public var database: String { root + "/crisp.db" }
  public var imagesDir: String { root + "/images" }
  public var cniCacheDir: String { root + "/cni" }

  /// A pod's /dev/shm tmpfs, mounted by netd beside the pod's pinned namespaces.
  public func podSharedMemory(_ podID: String) -> String { namespacesDir + "/" + podID + "/shm" }

  public func shimSocket(containerID: String) -> String { shimsDir + "/" + containerID + ".ipc" }

  /// NNG address of a socket path.
  public static func ipcAddress(_ path: String) -> String { "ipc://" + path }
}
