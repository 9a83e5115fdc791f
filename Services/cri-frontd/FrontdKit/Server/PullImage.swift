import CRIAPI
import CrispIPC
import GRPCCore

extension ImageService {
  /// Pulls through imaged and answers the image ID, which kubelet passes back as the
  /// container's image and which ContainerStatus reports as `image_ref`.
  func pullImage(request: Runtime_V1_PullImageRequest, context: ServerContext) async throws
    -> Runtime_V1_PullImageResponse
  {
    let image = try requireImageName(request.image, hasSpec: request.hasImage, call: "PullImage")
    var auth: RegistryAuth?
    if request.hasAuth {
      let a = request.auth
      auth = RegistryAuth(
        username: a.username, password: a.password, auth: a.auth, serverAddress: a.serverAddress,
        identityToken: a.identityToken, registryToken: a.registryToken)
    }
    let start = ContinuousClock.now
    let pulled: ImagePull.Response
    do {
      pulled = try await imaged(ImagePull.self, .init(image: image, auth: auth), timeoutMs: peers.pullTimeoutMs)
    } catch {
      FrontdMetrics.recordPull(duration: ContinuousClock.now - start, bytes: nil)
      throw error
    }
    FrontdMetrics.recordPull(duration: ContinuousClock.now - start, bytes: pulled.image.size)
    var response = Runtime_V1_PullImageResponse()
    response.imageRef = pulled.image.id
    return response
  }
}
