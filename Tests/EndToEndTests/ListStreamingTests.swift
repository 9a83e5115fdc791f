import CRIAPI
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// StreamPodSandboxes, StreamContainers and StreamImages (CRIListStreaming): the List
/// call's items, each once, in messages of at most 64; no message when nothing matches.
@Suite struct ListStreamingTests {
  @Test func streamsAnswerWhatListsAnswerInChunks() async throws {
    try await withContainerRuntime { crisp, registry, firstPod in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      var pods = [firstPod]
      for index in 1..<66 {
        var config = PodSandboxTests.podConfig(name: "p\(index)")
        config.logDirectory = crisp.dir + "/logs"
        config.linux.securityContext.namespaceOptions.network = .node
        pods.append(try await crisp.runPod(config))
      }
      let containers = [
        try await crisp.createContainer(podID: firstPod, name: "a", image: image, command: ["sleep", "100"]),
        try await crisp.createContainer(podID: firstPod, name: "b", image: image, command: ["sleep", "100"]),
      ]

      let podMessages = try await crisp.withRuntime { client in
        try await client.streamPodSandboxes(.init()) { response in
          try await response.messages.reduce(into: [[String]]()) { $0.append($1.podSandboxes.map(\.id)) }
        }
      }
      #expect(podMessages.map(\.count) == [64, 2])
      let listed = try await crisp.withRuntime { try await $0.listPodSandbox(.init()) }.items.map(\.id)
      #expect(podMessages.flatMap { $0 } == listed)
      #expect(Set(listed) == Set(pods))

      var byLabel = Runtime_V1_StreamPodSandboxesRequest()
      byLabel.filter.labelSelector = ["app": "p7"]
      let selected = try await crisp.withRuntime { client in
        try await client.streamPodSandboxes(byLabel) { response in
          try await response.messages.reduce(into: [String]()) { $0 += $1.podSandboxes.map(\.id) }
        }
      }
      #expect(selected == [pods[7]])
      var none = Runtime_V1_StreamPodSandboxesRequest()
      none.filter.id = String(repeating: "e", count: 64)
      let empty = try await crisp.withRuntime { client in
        try await client.streamPodSandboxes(none) { response in
          try await response.messages.reduce(0) { count, _ in count + 1 }
        }
      }
      #expect(empty == 0, "no message at all when nothing matches")

      let streamedContainers = try await crisp.withRuntime { client in
        try await client.streamContainers(.init()) { response in
          try await response.messages.reduce(into: [String]()) { $0 += $1.containers.map(\.id) }
        }
      }
      #expect(streamedContainers.sorted() == containers.sorted())
      let streamedImages = try await crisp.withImages { client in
        try await client.streamImages(.init()) { response in
          try await response.messages.reduce(into: [[String]]()) { $0.append($1.images.flatMap(\.repoTags)) }
        }
      }
      #expect(streamedImages == [[image]])

      for pod in pods { try await crisp.removePod(pod) }
    }
  }
}
