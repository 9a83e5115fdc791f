import CrispCore
import CrispIPC
import Foundation

/// A container's bundle as frontd writes it and reads what the shim left
/// (`BundleLayout` names the files).
struct ContainerBundle {
  let layout: BundleLayout

  init(paths: CrispPaths, containerID: String) {
    layout = BundleLayout(paths: paths, containerID: containerID)
  }

  var directory: String { layout.directory }

  /// `rootfs` nil: no image; `rootfs/` is made an empty directory (a pod's infra process).
  func write(spec: [UInt8], rootfs: RootfsMount?) throws(CrispError) {
    do {
      try FileManager.default.createDirectory(
        atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
      try Data(spec).write(to: URL(fileURLWithPath: layout.config), options: .atomic)
      if let rootfs {
        try JSONEncoder().encode(rootfs).write(to: URL(fileURLWithPath: layout.rootfsMount), options: .atomic)
      } else {
        try FileManager.default.createDirectory(atPath: layout.rootfs, withIntermediateDirectories: true)
      }
    } catch {
      throw CrispError(.internal, "cannot write the bundle \(directory): \(error)")
    }
  }

  /// The exit the shim recorded, if it did.
  func exitRecord() -> ContainerExitRecord? {
    guard let data = FileManager.default.contents(atPath: layout.exitRecord) else { return nil }
    return try? JSONDecoder().decode(ContainerExitRecord.self, from: data)
  }

  /// Removes the directory; a root filesystem still mounted in it (its shim died) must
  /// be unmounted first (`ChildProcessRunner.unmount`): frontd itself cannot.
  func remove() {
    try? FileManager.default.removeItem(atPath: directory)
  }
}
