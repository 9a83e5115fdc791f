import CRIAPI
import CrispIPC
import GRPCCore

extension ImageService {
  func listImages(request: Runtime_V1_ListImagesRequest, context: ServerContext) async throws
    -> Runtime_V1_ListImagesResponse
  {
    let filter = request.hasFilter && request.filter.hasImage ? request.filter.image.image : ""
    let listed = try await imaged(ImageList.self, .init(filter: filter))
    var response = Runtime_V1_ListImagesResponse()
    response.images = listed.images.map(Runtime_V1_Image.init)
    return response
  }
}
