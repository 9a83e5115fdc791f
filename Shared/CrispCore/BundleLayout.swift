/// The files of a container's bundle, `<run_root>/containers/<id>/` (0700): the contract
/// between frontd, which writes the first two, and the container's shimd, which reads
/// them and writes the rest. Written down once, here, for both.
public struct BundleLayout: Sendable, Equatable {
  public let directory: String

  public init(directory: String) {
    self.directory = directory
  }

  public init(paths: CrispPaths, containerID: String) {
    directory = paths.containersDir + "/" + containerID
  }

  /// The OCI runtime spec frontd built.
  public var config: String { directory + "/config.json" }
  /// The overlay imaged prepared (`RootfsMount`, JSON), which shimd mounts at `rootfs`
  /// before `runc create`; absent for a pod's infra process, whose root is an empty
  /// directory.
  public var rootfsMount: String { directory + "/rootfs.json" }
  public var rootfs: String { directory + "/rootfs" }
  /// The container's init, as `runc create --pid-file` writes it.
  public var pidFile: String { directory + "/pid" }
  /// runc's own log while it creates the container.
  public var runcLog: String { directory + "/runc.log" }
  /// shimd's log of this container, when it is not the journal.
  public var shimLog: String { directory + "/shimd.log" }
  /// How the container ended (`ContainerExitRecord`, JSON), written by shimd when the
  /// init exits: what frontd answers once the shim is gone.
  public var exitRecord: String { directory + "/exit.json" }
}
