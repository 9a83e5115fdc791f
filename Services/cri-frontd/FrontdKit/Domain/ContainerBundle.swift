import CrispCore
import CrispIPC
import Foundation

/// A container's bundle directory, `<run_root>/containers/<id>/`: `config.json` (the
/// OCI spec frontd built), `rootfs.json` (the overlay imaged prepared, mounted by the
/// shim at `rootfs/`), and the shim's `exit.json` once the container has exited.
struct ContainerBundle {
  let directory: String

  init(paths: CrispPaths, containerID: String) {
    directory = paths.containersDir + "/" + containerID
  }

  var exitFile: String { directory + "/exit.json" }

  /// `rootfs` nil: no image; `rootfs/` is made an empty directory (a pod's infra process).
  func write(spec: [UInt8], rootfs: RootfsMount?) throws(CrispError) {
    do {
      try FileManager.default.createDirectory(
        atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
      try Data(spec).write(to: URL(fileURLWithPath: directory + "/config.json"), options: .atomic)
      if let rootfs {
        try JSONEncoder().encode(rootfs).write(to: URL(fileURLWithPath: directory + "/rootfs.json"), options: .atomic)
      } else {
        try FileManager.default.createDirectory(atPath: directory + "/rootfs", withIntermediateDirectories: true)
      }
    } catch {
      throw CrispError(.internal, "cannot write the bundle \(directory): \(error)")
    }
  }

  /// The exit the shim recorded, if it did.
  func exitRecord() -> ContainerExitRecord? {
    guard let data = FileManager.default.contents(atPath: exitFile) else { return nil }
    return try? JSONDecoder().decode(ContainerExitRecord.self, from: data)
  }

  /// Removes the directory; a root filesystem still mounted in it (its shim died) must
  /// be unmounted first (`ChildProcessRunner.unmount`): frontd itself cannot.
  func remove() {
    try? FileManager.default.removeItem(atPath: directory)
  }
}
