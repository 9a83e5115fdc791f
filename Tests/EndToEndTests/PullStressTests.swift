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
    "crisp/multi:dockerlist", "crisp/layers:latest", "crisp/limits:zeros", "crisp/limits:two-layers",
    "crisp/hostile:work",
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
  /// is cancelled soon after it starts (the pull after it takes the next image, so that
  /// every image is also pulled to its end). Answers how many pulls succeeded.
  static func pulls(_ crisp: CrispInstance, registry: String, count: Int, width: Int, cancelEvery: Int) async -> Int {
    await withTaskGroup(of: Bool.self) { group in
      var succeeded = 0
      for index in 0..<count {
        if index >= width, let done = await group.next(), done { succeeded += 1 }
        group.addTask {
          let image = images[(index + index / cancelEvery) % images.count]
          let pull = Task { (try? await crisp.pull("\(registry)/\(image)")) != nil }
          if index % cancelEvery == cancelEvery - 1 {
            try? await Task.sleep(for: .milliseconds(Int.random(in: 5...60)))
            pull.cancel()
          }
          return await pull.value
        }
      }
      for await done in group where done { succeeded += 1 }
      return succeeded
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
        #expect(await Self.pulls(crisp, registry: registry.address, count: 10, width: 10, cancelEvery: 1_000) == 10)
        try await Self.removeAll(crisp)
        let before = Self.usage(crisp, imaged: imaged)

        let succeeded = await Self.pulls(crisp, registry: registry.address, count: 100, width: 10, cancelEvery: 5)
        #expect(succeeded >= 80, "\(succeeded) of the 80 pulls not cancelled succeeded")
        // A cancelled CRI call does not stop imaged's pull (kubelet's neither): it may still
        // record its image; removal is repeated until imaged is done.
        try await waitUntil("every image is removed and imaged is idle", timeout: .seconds(60)) {
          try await Self.removeAll(crisp)
          let temp = (try? FileManager.default.contentsOfDirectory(atPath: crisp.imagesDir + "/tmp")) ?? []
          return try await crisp.listImages().isEmpty && temp.isEmpty && crisp.layerDirectories().isEmpty
        }
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
