import CRIAPI
import CrispCore
import Foundation
import GRPCCore

/// The CRI config a pod was created with, as its record keeps it.
extension RuntimeService {
  static func decodePodConfig(_ pod: PodRecord) throws(CrispError) -> Runtime_V1_PodSandboxConfig {
    do {
      return try Runtime_V1_PodSandboxConfig(serializedBytes: pod.config)
    } catch {
      throw CrispError(.internal, "stored config of pod \(pod.id) cannot be decoded: \(error)")
    }
  }
}
