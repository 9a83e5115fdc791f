import CRIAPI
import CrispIPC
import GRPCCore

extension ImageService {
  /// Idempotent: removing an image that is not there succeeds, as kubelet expects.
  func removeImage(request: Runtime_V1_RemoveImageRequest, context: ServerContext) async throws
    -> Runtime_V1_RemoveImageResponse
  {
    let image = try requireImageName(request.image, hasSpec: request.hasImage, call: "RemoveImage")
    let removed = try await imaged(ImageRemove.self, .init(image: image))
    if removed.deleted { logger.info("image removed", metadata: ["image": "\(image)"]) }
    return Runtime_V1_RemoveImageResponse()
  }
}
