import CRIAPI
import GRPCCore

/// The Stream* list calls (feature gate CRIListStreaming, KEP 5825): the items of the
/// matching List call, with the same filter, in messages of at most `listChunk` items;
/// no message at all when there are none.
extension RuntimeService {
  /// Pods carry their annotations: 64 of them stay far below gRPC's 4 MiB message limit.
  static let listChunk = 64

  func streamPodSandboxes(
    request: Runtime_V1_StreamPodSandboxesRequest, response: RPCWriter<Runtime_V1_StreamPodSandboxesResponse>,
    context: ServerContext
  ) async throws {
    var list = Runtime_V1_ListPodSandboxRequest()
    if request.hasFilter { list.filter = request.filter }
    let items = try await listPodSandbox(request: list, context: context).items
    try await writeInChunks(items, size: Self.listChunk, to: response) { chunk in
      var message = Runtime_V1_StreamPodSandboxesResponse()
      message.podSandboxes = chunk
      return message
    }
  }

  func streamContainers(
    request: Runtime_V1_StreamContainersRequest, response: RPCWriter<Runtime_V1_StreamContainersResponse>,
    context: ServerContext
  ) async throws {
    var list = Runtime_V1_ListContainersRequest()
    if request.hasFilter { list.filter = request.filter }
    let items = try await listContainers(request: list, context: context).containers
    try await writeInChunks(items, size: Self.listChunk, to: response) { chunk in
      var message = Runtime_V1_StreamContainersResponse()
      message.containers = chunk
      return message
    }
  }
}

extension ImageService {
  func streamImages(
    request: Runtime_V1_StreamImagesRequest, response: RPCWriter<Runtime_V1_StreamImagesResponse>,
    context: ServerContext
  ) async throws {
    var list = Runtime_V1_ListImagesRequest()
    if request.hasFilter { list.filter = request.filter }
    let items = try await listImages(request: list, context: context).images
    try await writeInChunks(items, size: RuntimeService.listChunk, to: response) { chunk in
      var message = Runtime_V1_StreamImagesResponse()
      message.images = chunk
      return message
    }
  }
}

/// Writes `items` as messages of at most `size` items each, in order.
func writeInChunks<Item, Message>(
  _ items: [Item], size: Int, to writer: RPCWriter<Message>, _ message: ([Item]) -> Message
) async throws {
  for start in stride(from: 0, to: items.count, by: size) {
    try await writer.write(message(Array(items[start..<min(start + size, items.count)])))
  }
}
