import CrispCore
import CrispLinux
import Foundation
import SpecBuilder

/// What each runtime handler can do on this node, probed once at start and announced in
/// Status (`runtime_handlers[].features`), so that kubelet and critest use a feature only
/// where it works. The reason for each "no" goes into Status's verbose info.
struct HandlerFeatures: Sendable, Equatable {
  /// `Mount.recursive_read_only`: the runtime takes the `rro` mount option (runc ≥ 1.1
  /// lists it in `runc features`) and the kernel has mount_setattr (5.12).
  var recursiveReadOnlyMounts = false
  var reasons: [String] = []

  static func probe(runtimePath: String, kernel: KernelVersion?) -> HandlerFeatures {
    var features = HandlerFeatures()
    guard let kernel, !(kernel < KernelVersion(major: 5, minor: 12, patch: 0)) else {
      features.reasons.append("recursive read-only mounts: the kernel is older than 5.12 (no mount_setattr)")
      return features
    }
    let output: ChildProcess.Output
    do {
      output = try ChildProcess.runBlocking(
        path: runtimePath, arguments: ["features"], environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"],
        stdin: [], timeoutMs: 5_000)
    } catch {
      features.reasons.append("recursive read-only mounts: \(runtimePath) features failed: \(error.message)")
      return features
    }
    guard output.status == 0,
      let json = try? JSONSerialization.jsonObject(with: Data(output.stdout)) as? [String: Any],
      let options = json["mountOptions"] as? [String]
    else {
      features.reasons.append("recursive read-only mounts: \(runtimePath) features lists no mount options")
      return features
    }
    features.recursiveReadOnlyMounts = options.contains("rro")
    if !features.recursiveReadOnlyMounts {
      features.reasons.append("recursive read-only mounts: \(runtimePath) does not take the rro mount option")
    }
    return features
  }
}
