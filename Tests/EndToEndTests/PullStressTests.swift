import CRIAPI
import CrispCore
import CrispLinux
import CrispTestSupport
import Foundation
import Testing

/// 100 pulls of 10 images, 10 at a time, every fifth one cancelled midway, then every
/// image removed: imaged's descriptors, memory and store come back to where they were.
@Suite struct PullStressTests {
  static let images = [
    "crisp/busybox:latest", "crisp/busybox:zstd", "crisp/busybox:user", "crisp/docker:latest", "crisp/multi:latest",
    "crisp/multi:dockerlist", "crisp/layers:latest", "crisp/limits:zeros", "crisp/limits:deep", "crisp/hostile:work",
  ]

  struct Usage: CustomStringConvertible {
    var descriptors: Int
    var residentKiB: Int
    var storeBytes: UInt64
    var description: String { "\(descriptors) fds, \(residentKiB) KiB resident, store \(storeBytes) bytes" }
  }

  static func usage(_ crisp: CrispInstance, imaged pid: Int32) -> Usage {
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    let status = readWholeFile("/proc/\(pid)/status")
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    let resident = Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    // The database's write-ahead log keeps its high-water size (bounded by SQLite's
    // checkpoints), so the store is measured without it: blobs, layers, snapshots, temp.
    let store = ["blobs", "layers", "snapshots", "tmp", "empty"].reduce(UInt64(0)) {
      $0 + DiskUsage.measure(crisp.imagesDir + "/" + $1).bytes
    }
    return Usage(descriptors: fds, residentKiB: resident, storeBytes: store)
  }

  /// Pulls `count` images (round robin), `width` at a time; every `cancelEvery`-th pull
  /// is cancelled soon after it starts.
  static func pulls(_ crisp: CrispInstance, registry: String, count: Int, width: Int, cancelEvery: Int) async {
    await withTaskGroup(of: Void.self) { group in
      for index in 0..<count {
        if index >= width { await group.next() }
        group.addTask {
          let pull = Task { _ = try? await crisp.pull("\(registry)/\(images[index % images.count])") }
          if index % cancelEvery == cancelEvery - 1 {
            try? await Task.sleep(for: .milliseconds(Int.random(in: 5...60)))
            pull.cancel()
          }
          await pull.value
        }
      }
    }
  }

  static func removeAll(_ crisp: CrispInstance) async throws {
    for image in try await crisp.listImages() { try await crisp.removeImage(image.id) }
  }

  @Test func aHundredPullsWithCancellationsLeaveImagedAsTheyFoundIt() async throws {
    try await withRegistry { registry, _ in
      try await withCrisp { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
        try await crisp.startAll()
        let imaged = try #require(crisp.pid(.imaged))
        // One round first: the HTTP client's pool, NNG's contexts and the allocator warm up.
        await Self.pulls(crisp, registry: registry.address, count: 10, width: 10, cancelEvery: 1_000)
        try await Self.removeAll(crisp)
        let before = Self.usage(crisp, imaged: imaged)

        await Self.pulls(crisp, registry: registry.address, count: 100, width: 10, cancelEvery: 5)
        #expect(try await crisp.listImages().count >= 1, "pulls that were not cancelled stored their images")
        try await Self.removeAll(crisp)
        #expect(try await crisp.listImages().isEmpty)
        crisp.expectNoPartialPull()
        #expect(crisp.layerDirectories().isEmpty, "layers left: \(crisp.layerDirectories())")
        var after = Self.usage(crisp, imaged: imaged)
        try await waitUntil("imaged's descriptors come back", timeout: .seconds(30)) {
          after = Self.usage(crisp, imaged: imaged)
          return after.descriptors <= before.descriptors + 4
        }
        print("pull stress: before \(before); after \(after)")
        let left = (FileManager.default.subpaths(atPath: crisp.imagesDir) ?? []).filter {
          !$0.hasPrefix("images.db")
        }.sorted().prefix(40)
        #expect(
          after.storeBytes <= before.storeBytes + (64 << 10), "before \(before), after \(after), store holds \(left)")
        #expect(after.residentKiB <= before.residentKiB + (24 << 10), "before \(before), after \(after)")
      }
    }
  }
}
