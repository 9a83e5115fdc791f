import CRIAPI
import CrispIPC
import GRPCCore

extension ImageService {
  /// Space and inodes the image store uses; kubelet's image garbage collection reads it.
  func imageFsInfo(request: Runtime_V1_ImageFsInfoRequest, context: ServerContext) async throws
    -> Runtime_V1_ImageFsInfoResponse
  {
    let usage = try await imaged(ImageFsUsage.self, Empty())
    var filesystem = Runtime_V1_FilesystemUsage()
    filesystem.timestamp = usage.timestamp
    filesystem.fsID.mountpoint = usage.mountpoint
    filesystem.usedBytes.value = usage.usedBytes
    filesystem.inodesUsed.value = usage.inodesUsed
    var response = Runtime_V1_ImageFsInfoResponse()
    response.imageFilesystems = [filesystem]
    return response
  }
}
