import CRIAPI
import CrispCore
import CrispTestSupport
import Foundation
import GRPCCore
import Synchronization
import Testing

/// What a pulled image may unpack to (`[imaged]` max_layer_bytes, max_image_bytes,
/// max_layer_entries, max_path_depth, min_free_bytes): past any limit, PullImage fails
/// with ResourceExhausted naming the key, and nothing of the image is stored.
@Suite struct PullLimitTests {
  func expectRefusal(
    _ imagedConfig: String, image: String, code: RPCError.Code = .resourceExhausted, naming key: String,
    sourceLocation: SourceLocation = #_sourceLocation
  ) async throws {
    try await withRegistry { registry, _ in
      try await withCrisp(imagedConfig: imagedConfig) { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
        try await crisp.startAll()
        let error = await #expect(throws: RPCError.self, sourceLocation: sourceLocation) {
          try await crisp.pull("\(registry.address)/\(image)")
        }
        #expect(error?.code == code, "\(String(describing: error))", sourceLocation: sourceLocation)
        #expect(error?.message.contains(key) == true, "\(String(describing: error))", sourceLocation: sourceLocation)
        #expect(try await crisp.listImages().isEmpty, sourceLocation: sourceLocation)
        #expect(crisp.layerDirectories().isEmpty, "layers stored: \(crisp.layerDirectories())")
        crisp.expectNoPartialPull(sourceLocation: sourceLocation)
      }
    }
  }

  @Test func aLayerOverMaxLayerBytesIsRefused() async throws {
    try await expectRefusal("max_layer_bytes = 4194304", image: "crisp/limits:zeros", naming: "max_layer_bytes")
  }

  /// Two layers of 3 MiB: each passes max_layer_bytes, the image does not pass max_image_bytes.
  @Test func anImageOverMaxImageBytesIsRefused() async throws {
    try await expectRefusal(
      "max_layer_bytes = 4194304\nmax_image_bytes = 5242880", image: "crisp/limits:two-layers",
      naming: "max_image_bytes")
  }

  @Test func tooManyEntriesOrTooDeepAPathIsRefused() async throws {
    try await expectRefusal("max_layer_entries = 100", image: "crisp/limits:deep", naming: "max_layer_entries")
    try await expectRefusal("max_path_depth = 100", image: "crisp/limits:deep", naming: "max_path_depth")
  }

  @Test func aPullThatWouldFillTheStoresFilesystemStops() async throws {
    try await expectRefusal("min_free_bytes = 1125899906842624", image: "crisp/limits:zeros", naming: "min_free_bytes")
  }

  /// gzip of gzip (a blob of a few KB libarchive would unwrap level after level), gzip
  /// under a plain tar media type, gzip under zstd: one level is unwrapped, by the media type.
  @Test func aLayerCompressedTwiceIsRefused() async throws {
    for image in ["crisp/limits:gzip-twice", "crisp/limits:tar-holding-gzip", "crisp/limits:zstd-over-gzip"] {
      try await expectRefusal("", image: image, code: .invalidArgument, naming: "compressed more than once")
    }
  }

  /// A layer of 600 directories, each given its times at the end, pulled by an imaged
  /// allowed 160 descriptors: the unpacker holds a bounded few, not one per directory.
  @Test func aLayerOfManyDirectoriesUnpacksUnderALowDescriptorLimit() async throws {
    try await withRegistry { registry, _ in
      try await withCrisp(imagedConfig: "max_path_depth = 700") { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
        try await crisp.startAll(imagedWrapper: ["/usr/bin/prlimit", "--nofile=160:160", "--"])
        let imaged = try #require(crisp.pid(.imaged))
        let limits = readWholeFile("/proc/\(imaged)/limits").split(separator: "\n").first {
          $0.hasPrefix("Max open files")
        }
        #expect(limits?.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first == "160")
        _ = try await crisp.pull("\(registry.address)/crisp/limits:deep")
        #expect(try await crisp.listImages().count == 1)
      }
    }
  }

  @Test func withinTheLimitsTheSameImagesPull() async throws {
    try await withRegistry { registry, _ in
      try await withCrisp(imagedConfig: "max_layer_bytes = 16777216\nmax_path_depth = 700") { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
        try await crisp.startAll()
        _ = try await crisp.pull("\(registry.address)/crisp/limits:zeros")
        _ = try await crisp.pull("\(registry.address)/crisp/limits:deep")
        _ = try await crisp.pull("\(registry.address)/crisp/limits:two-layers")
        #expect(try await crisp.listImages().count == 3)
      }
    }
  }
}

/// Pulls that hang (a registry that stalls every blob) must not take imaged's every IPC
/// context: health, and so RuntimeReady, is answered however many pulls kubelet starts.
@Suite struct PullQueueTests {
  @Test func hangingPullsBeyondTheQueueFailAtOnceAndStatusStaysReady() async throws {
    try await withStalledRegistry { _, stalled, _ in
      try await withCrisp(
        imagedConfig: "pull_progress_timeout_ms = 20000\nmax_concurrent_pulls = 2\nmax_queued_pulls = 2"
      ) { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(stalled))
        try await crisp.startAll()
        // More hanging pulls than imaged has IPC contexts (ipc.server_workers = 32).
        let refused = RefusedPulls()
        let pulls = (0..<40).map { _ in
          Task {
            do {
              _ = try await crisp.pull("\(stalled)/crisp/busybox:latest")
            } catch let error as RPCError {
              refused.errors.withLock { $0.append(error) }
            }
          }
        }
        defer { for pull in pulls { pull.cancel() } }
        try await waitUntil("every pull beyond the 4 the queue holds is refused", timeout: .seconds(30)) {
          refused.errors.withLock { $0.count } >= 36
        }
        let errors = refused.errors.withLock { $0 }
        #expect(errors.count == 36)
        #expect(errors.allSatisfy { $0.code == .resourceExhausted && $0.message.contains("max_queued_pulls") })
        let status = try await crisp.status()
        #expect(status.condition("RuntimeReady")?.status == true, "\(status)")
      }
    }
  }
}

private final class RefusedPulls: Sendable {
  let errors = Mutex<[RPCError]>([])
}
