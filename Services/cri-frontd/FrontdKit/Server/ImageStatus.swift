import CRIAPI
import CrispIPC
import GRPCCore

extension ImageService {
  /// An unknown image is an empty response, not an error: kubelet asks before pulling.
  func imageStatus(request: Runtime_V1_ImageStatusRequest, context: ServerContext) async throws
    -> Runtime_V1_ImageStatusResponse
  {
    let image = try requireImageName(request.image, hasSpec: request.hasImage, call: "ImageStatus")
    let status = try await imaged(ImageStatus.self, .init(image: image, verbose: request.verbose))
    var response = Runtime_V1_ImageStatusResponse()
    if let found = status.image {
      response.image = Runtime_V1_Image(found)
      if let config = status.configJSON {
        // containerd's shape: the OCI image config under "imageSpec".
        response.info["info"] = "{\"imageSpec\":\(config)}"
      }
    }
    return response
  }
}
