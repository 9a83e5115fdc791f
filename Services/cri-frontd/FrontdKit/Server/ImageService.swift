import CRIAPI
import CrispCore
import CrispIPC
import GRPCCore
import Logging

/// The CRI ImageService; its calls are carried out by imaged (one file per RPC).
struct ImageService: Runtime_V1_ImageService.SimpleServiceProtocol {
  let peers: DaemonPeers
  let logger: Logger

  /// Calls imaged, turning its errors into the gRPC status kubelet sees.
  func imaged<M: IPCMethod>(_ method: M.Type, _ request: M.Request, timeoutMs: Int32? = nil) async throws -> M.Response
  {
    do {
      return try await peers.imaged.call(method, request, timeoutMs: timeoutMs)
    } catch {
      throw RPCError(error)
    }
  }
}

extension Runtime_V1_Image {
  /// An image as crictl and kubelet show it: the ID, names, size, and the user it runs
  /// as (numeric `uid`, or a `username` to be resolved in the image).
  init(_ info: ImageInfo) {
    self.init()
    id = info.id
    repoTags = info.repoTags
    repoDigests = info.repoDigests
    size = info.size
    pinned = info.pinned
    spec.image = info.id
    let user = info.config.user.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
    if let numeric = Int64(user) {
      uid.value = numeric
    } else {
      username = user
    }
  }
}

func requireImageName(_ spec: Runtime_V1_ImageSpec, hasSpec: Bool, call: String) throws -> String {
  guard hasSpec, !spec.image.isEmpty else {
    throw RPCError(code: .invalidArgument, message: "\(call): image.image must name an image")
  }
  return spec.image
}
