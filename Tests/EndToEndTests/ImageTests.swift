import CRIAPI
import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// The CRI ImageService end to end: cri-frontd, a real imaged, and a real registry
/// (Debian's docker-registry on 127.0.0.1) holding images the fixture tool built.
@Suite struct ImageTests {
  @Test func pullListStatusAndRemove() async throws {
    try await withRegistry { registry, images in
      try await withCrisp { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
        try await crisp.startAll()
        let name = "\(registry.address)/crisp/busybox:latest"
        let fixture = try images.image("crisp/busybox:latest")

        let id = try await crisp.pull(name)
        #expect(id == fixture.configDigest)

        let listed = try await crisp.listImages()
        #expect(listed.map(\.id) == [id])
        let image = try #require(listed.first)
        #expect(image.repoTags == [name])
        #expect(image.repoDigests == ["\(registry.address)/crisp/busybox@\(fixture.digest)"])
        #expect(image.size > 500_000)
        #expect(image.username == "" && !image.hasUid)
        #expect(!image.pinned)

        // By tag, ID, bare ID, ID prefix and repo digest; unknown names are empty, not errors.
        for reference in [name, id, String(id.dropFirst(7)), String(id.dropFirst(7).prefix(12)), image.repoDigests[0]] {
          #expect(try await crisp.imageStatus(reference).image.id == id, "\(reference)")
        }
        #expect(try await crisp.imageStatus("\(registry.address)/crisp/nothing:here").hasImage == false)
        #expect(try await crisp.listImages(filter: name).map(\.id) == [id])
        #expect(try await crisp.listImages(filter: "\(registry.address)/crisp/nothing:here").isEmpty)

        let verbose = try await crisp.imageStatus(name, verbose: true)
        #expect(verbose.info["info"]?.contains("CRISP_FIXTURE=1") == true)

        let usage = try await crisp.withImages { try await $0.imageFsInfo(.init()) }
        let fs = try #require(usage.imageFilesystems.first)
        #expect(fs.fsID.mountpoint == crisp.imagesDir)
        #expect(fs.usedBytes.value > 1_000_000)
        #expect(fs.inodesUsed.value > 10)

        // The image config's user shows as uid or username.
        try await crisp.pull("\(registry.address)/crisp/busybox:user")
        #expect(try await crisp.imageStatus("\(registry.address)/crisp/busybox:user").image.username == "crispuser")

        try await crisp.removeImage(name)
        #expect(try await crisp.imageStatus(id).hasImage == false)
        // Removal is idempotent, for names and IDs alike.
        try await crisp.removeImage(name)
        try await crisp.removeImage(id)
        try await crisp.removeImage("\(registry.address)/crisp/busybox:user")
        #expect(try await crisp.listImages().isEmpty)
        #expect(crisp.layerDirectories().isEmpty, "layers left: \(crisp.layerDirectories())")
        crisp.expectNoPartialPull()
      }
    }
  }

  @Test func manifestKindsAndCompressions() async throws {
    try await withRegistry { registry, images in
      try await withCrisp { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
        try await crisp.startAll()
        let base = try images.image("crisp/busybox:latest")

        // zstd and Docker schema2 carry the same files: same diff IDs, so one layer dir.
        let zstd = try await crisp.pull("\(registry.address)/crisp/busybox:zstd")
        #expect(zstd == (try images.image("crisp/busybox:zstd").configDigest))
        let docker = try await crisp.pull("\(registry.address)/crisp/docker:latest")
        #expect(docker == (try images.image("crisp/docker:latest").configDigest))
        #expect(crisp.layerDirectories().count == 1)

        // An OCI index and a Docker manifest list: the linux/amd64 image is chosen.
        for tag in ["latest", "dockerlist"] {
          let id = try await crisp.pull("\(registry.address)/crisp/multi:\(tag)")
          #expect(id == base.configDigest, "crisp/multi:\(tag)")
        }
        let noAmd64 = await #expect(throws: RPCError.self) {
          try await crisp.pull("\(registry.address)/crisp/multi:variants")
        }
        #expect(noAmd64?.code == .notFound)
        #expect(noAmd64?.message.contains("linux/arm/v7") == true)

        // By digest.
        let byDigest = try await crisp.pull("\(registry.address)/crisp/busybox@\(base.digest)")
        #expect(byDigest == base.configDigest)

        let missing = await #expect(throws: RPCError.self) {
          try await crisp.pull("\(registry.address)/crisp/busybox:no-such-tag")
        }
        #expect(missing?.code == .notFound)
        #expect(missing?.message.contains("no-such-tag") == true)

        let invalid = await #expect(throws: RPCError.self) { try await crisp.pull("UPPER/case:bad tag") }
        #expect(invalid?.code == .invalidArgument)
        let empty = await #expect(throws: RPCError.self) { try await crisp.pull("") }
        #expect(empty?.code == .invalidArgument)
      }
    }
  }

  @Test func layersUnpackIntoAWorkingOverlay() async throws {
    try await withRegistry { registry, _ in
      try await withCrisp { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
        try await crisp.startAll()
        let name = "\(registry.address)/crisp/layers:latest"
        let id = try await crisp.pull(name)
        let imaged = try crisp.imagedClient()
        defer { imaged.close() }
        let containerID = String(repeating: "c", count: 64)
        let snapshot = try await imaged.call(SnapshotPrepare.self, .init(containerID: containerID, image: name))
        #expect(snapshot.imageID == id)
        #expect(snapshot.mount.lowerDirs.count == 3)

        let target = crisp.dir + "/rootfs"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        let options = snapshot.mount.options.joined(separator: ",")
        #expect(mount(snapshot.mount.source, target, snapshot.mount.type, 0, options) == 0, "mount: \(errno)")
        defer { umount2(target, Int32(MNT_DETACH)) }

        let fm = FileManager.default
        #expect(fm.fileExists(atPath: target + "/data/keep"))
        #expect(!fm.fileExists(atPath: target + "/data/gone"), "whiteout")
        #expect(!fm.fileExists(atPath: target + "/opaque/old"), "opaque directory")
        #expect(fm.fileExists(atPath: target + "/opaque/new"))
        #expect(fm.fileExists(atPath: target + "/layer3"))
        var a = stat()
        var b = stat()
        #expect(lstat(target + "/hard/a", &a) == 0 && lstat(target + "/hard/b", &b) == 0)
        #expect(a.st_ino == b.st_ino, "hard link")
        var owned = stat()
        #expect(lstat(target + "/owned", &owned) == 0)
        #expect(owned.st_uid == 1000 && owned.st_gid == 2000 && owned.st_mode & 0o7777 == 0o640)
        var suid = stat()
        #expect(lstat(target + "/suid", &suid) == 0 && suid.st_mode & 0o7777 == 0o4755)
        var device = stat()
        #expect(lstat(target + "/dev-null-ish", &device) == 0 && device.st_mode & S_IFMT == S_IFCHR)
        let xattr = try runProgram(
          "/usr/bin/python3",
          ["-c", "import os,sys; print(os.getxattr(sys.argv[1], 'user.crisp').decode())", target + "/xattr"])
        #expect(xattr.output.trimmingCharacters(in: .whitespacesAndNewlines) == "yes", "xattr: \(xattr.output)")

        // A container's changes land in its own upper dir, not in the shared layers.
        try "new".write(toFile: target + "/data/keep", atomically: false, encoding: .utf8)
        #expect(fm.fileExists(atPath: snapshot.mount.upperDir + "/data/keep"))

        // The image cannot go while a container's root filesystem uses it.
        let inUse = await #expect(throws: RPCError.self) { try await crisp.removeImage(name) }
        #expect(inUse?.code == .failedPrecondition)
        #expect(inUse?.message.contains(containerID) == true)

        umount2(target, Int32(MNT_DETACH))
        _ = try await imaged.call(SnapshotRelease.self, .init(containerID: containerID))
        _ = try await imaged.call(SnapshotRelease.self, .init(containerID: containerID))
        #expect(!fm.fileExists(atPath: snapshot.mount.upperDir))
        try await crisp.removeImage(name)
        #expect(crisp.layerDirectories().isEmpty)

        let badID = await #expect(throws: CrispError.self) {
          _ = try await imaged.call(SnapshotPrepare.self, .init(containerID: "../escape", image: id))
        }
        #expect(badID?.code == .invalidArgument)
      }
    }
  }

  @Test func hostileImagesAreRefusedAndLeaveNothing() async throws {
    try await withRegistry { registry, _ in
      try await withCrisp { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
        try await crisp.startAll()
        let cases: [(tag: String, says: String)] = [
          ("evil:traversal", "crisp-evil-traversal"),
          ("evil:symlink", "crisp-evil-symlink"),
          ("evil:relsymlink", "escape"),
          ("evil:hardlink", "passwd"),
          ("bad:digest", "does not match"),
        ]
        for item in cases {
          let error = await #expect(throws: RPCError.self, "\(item.tag)") {
            try await crisp.pull("\(registry.address)/crisp/\(item.tag)")
          }
          #expect(error?.code == .invalidArgument, "\(item.tag): \(String(describing: error))")
          #expect(error?.message.contains(item.says) == true, "\(item.tag): \(error?.message ?? "")")
        }
        for path in ["/tmp/crisp-evil-traversal", "/tmp/crisp-evil-symlink", "/tmp/crisp-evil-relsymlink"] {
          #expect(!FileManager.default.fileExists(atPath: path), "\(path) was written outside the layer")
        }
        #expect(try await crisp.listImages().isEmpty)
        #expect(crisp.layerDirectories().isEmpty, "layers left: \(crisp.layerDirectories())")
        crisp.expectNoPartialPull()
      }
    }
  }

  /// pinned_images as CRI-O reads it: exact names, globs ending in `*`, keywords.
  @Test func pinnedImagePatternsMarkTheImagesTheyMatch() async throws {
    try await withRegistry { registry, _ in
      // Each image below has a config of its own, but for busybox:zstd, which is
      // busybox:latest (one image, two names), so no match can come from another name.
      let patterns = ["\(registry.address)/crisp/busy*", "*/layers:*", "\(registry.address)/crisp/limits:deep"]
      let list = patterns.map { "\"\($0)\"" }.joined(separator: ", ")
      try await withCrisp(imagedConfig: "pinned_images = [\(list)]\nmax_path_depth = 700") { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
        try await crisp.startAll()
        let expected = [
          "crisp/busybox:latest": true, "crisp/busybox:zstd": true, "crisp/layers:latest": true,
          "crisp/limits:deep": true, "crisp/hostile:work": false, "crisp/limits:zeros": false,
        ]
        for (name, pinned) in expected {
          _ = try await crisp.pull("\(registry.address)/\(name)")
          #expect(try await crisp.imageStatus("\(registry.address)/\(name)").image.pinned == pinned, "\(name)")
        }
      }
    }
  }

  @Test func mirrorsServeImagesUnderTheirOwnNames() async throws {
    try await withRegistry { registry, images in
      try await withCrisp(imagedConfig: "pinned_images = [\"registry.k8s.io/pause:3.10\"]") { crisp in
        // The first mirror is down; the second serves; the origin is never asked.
        try crisp.writeRegistriesConf(
          """
          unqualified-search-registries = ["docker.io"]

          [[registry]]
          prefix = "registry.k8s.io"
          location = "registry.k8s.io"
          [[registry.mirror]]
          location = "127.0.0.1:1"
          insecure = true
          [[registry.mirror]]
          location = "\(registry.address)"
          insecure = true

          [[registry]]
          prefix = "docker.io"
          location = "docker.io"
          [[registry.mirror]]
          location = "\(registry.address)"
          insecure = true

          [[registry]]
          prefix = "blocked.example.com"
          blocked = true
          """)
        try await crisp.startAll()

        let pause = try await crisp.pull("registry.k8s.io/pause:3.10")
        #expect(pause == (try images.image("pause:3.10").configDigest))
        let status = try await crisp.imageStatus("registry.k8s.io/pause:3.10")
        #expect(status.image.repoTags == ["registry.k8s.io/pause:3.10"])
        #expect(status.image.pinned)

        // A short name is docker.io's, as kubelet users expect.
        let busybox = try await crisp.pull("busybox")
        #expect(try await crisp.imageStatus("docker.io/library/busybox:latest").image.id == busybox)
        #expect(try await crisp.imageStatus("busybox").image.id == busybox)

        let blocked = await #expect(throws: RPCError.self) { try await crisp.pull("blocked.example.com/x:1") }
        #expect(blocked?.code == .permissionDenied)
        #expect(blocked?.message.contains("blocked") == true)
      }
    }
  }

  @Test func tlsRegistryWithBasicAuth() async throws {
    try await withRegistry(tls: true, auth: .basic) { registry, images in
      try await withCrisp { crisp in
        try crisp.trustRegistryCA(registry)
        try await crisp.startAll()
        let name = "\(registry.address)/crisp/busybox:latest"
        let credentials = try #require(registry.credentials)

        let anonymous = await #expect(throws: RPCError.self) { try await crisp.pull(name) }
        #expect(anonymous?.code == .permissionDenied)

        var auth = Runtime_V1_AuthConfig()
        auth.username = credentials.user
        auth.password = "wrong"
        let wrong = await #expect(throws: RPCError.self) { try await crisp.pull(name, auth: auth) }
        #expect(wrong?.code == .permissionDenied)

        auth.password = credentials.password
        #expect(try await crisp.pull(name, auth: auth) == (try images.image("crisp/busybox:latest").configDigest))
        try await crisp.removeImage(name)

        // The same from the node's auth file, keyed by host:port.
        let encoded = Data("\(credentials.user):\(credentials.password)".utf8).base64EncodedString()
        try #"{"auths": {"\#(registry.address)": {"auth": "\#(encoded)"}}}"#
          .write(toFile: crisp.authFile, atomically: true, encoding: .utf8)
        try await crisp.stop(.imaged)
        try crisp.start(.imaged)
        try await waitUntil("imaged answers", timeout: .seconds(10)) {
          (try? await crisp.listImages()) != nil
        }
        #expect(try await crisp.pull(name) == (try images.image("crisp/busybox:latest").configDigest))
      }
    }
  }

  @Test func registryWithBearerTokenAuth() async throws {
    try await withRegistry(auth: .token) { registry, images in
      try await withCrisp { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
        try await crisp.startAll()
        let name = "\(registry.address)/crisp/busybox:latest"
        let credentials = try #require(registry.credentials)

        let anonymous = await #expect(throws: RPCError.self) { try await crisp.pull(name) }
        #expect(anonymous?.code == .permissionDenied)
        #expect(anonymous?.message.contains("token") == true)

        // The registry challenges, imaged asks the token service with the user's
        // credentials, and pulls with the bearer token.
        var auth = Runtime_V1_AuthConfig()
        auth.username = credentials.user
        auth.password = credentials.password
        #expect(try await crisp.pull(name, auth: auth) == (try images.image("crisp/busybox:latest").configDigest))
        #expect(try await crisp.pull("\(registry.address)/crisp/layers:latest", auth: auth).hasPrefix("sha256:"))
      }
    }
  }

  @Test func concurrentPullsShareOneDownload() async throws {
    try await withRegistry { registry, images in
      try await withCrisp { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
        try await crisp.startAll()
        let name = "\(registry.address)/crisp/layers:latest"
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
          for _ in 0..<6 { group.addTask { try await crisp.pull(name) } }
          return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(ids) == [try images.image("crisp/layers:latest").configDigest])
        // Each of the three layers was stored once.
        let stored = crisp.log(.imaged).components(separatedBy: "layer stored").count - 1
        #expect(stored == 3, "layers stored \(stored) times")
        #expect(crisp.layerDirectories().count == 3)
      }
    }
  }

  @Test func aStalledPullFailsWithAClearError() async throws {
    try await withStalledRegistry { registry, stalled, _ in
      try await withCrisp(imagedConfig: "pull_progress_timeout_ms = 1500") { crisp in
        try crisp.writeRegistriesConf(
          CrispInstance.insecureRegistry(registry.address) + CrispInstance.insecureRegistry(stalled))
        try await crisp.startAll()

        let timedOut = await #expect(throws: RPCError.self) { try await crisp.pull("\(stalled)/crisp/busybox:latest") }
        #expect(timedOut?.code == .deadlineExceeded)
        #expect(timedOut?.message.contains("no progress") == true)
        crisp.expectNoPartialPull()
        #expect(crisp.layerDirectories().isEmpty)
        #expect(try await crisp.listImages().isEmpty)
      }
    }
  }

  @Test func imagedKilledMidPullLeavesNothingAndPullsAgain() async throws {
    try await withStalledRegistry { registry, stalled, images in
      try await withCrisp { crisp in
        try crisp.writeRegistriesConf(
          CrispInstance.insecureRegistry(registry.address) + CrispInstance.insecureRegistry(stalled))
        try await crisp.startAll()

        let pulling = Task { try await crisp.pull("\(stalled)/crisp/busybox:latest") }
        try await waitUntil("the pull is under way", timeout: .seconds(10)) {
          !((try? FileManager.default.contentsOfDirectory(atPath: crisp.imagesDir + "/tmp")) ?? []).isEmpty
        }
        try await crisp.stop(.imaged, signal: SIGKILL)
        let cutOff = await pulling.result
        #expect(throws: RPCError.self) { try cutOff.get() }

        try crisp.start(.imaged)
        try await waitUntil("imaged answers again", timeout: .seconds(10)) { (try? await crisp.listImages()) != nil }
        crisp.expectNoPartialPull()
        #expect(crisp.layerDirectories().isEmpty)
        let id = try await crisp.pull("\(registry.address)/crisp/busybox:latest")
        #expect(id == (try images.image("crisp/busybox:latest").configDigest))
        #expect(crisp.layerDirectories().count == 1)
      }
    }
  }
}

/// A registry with the standard images, and in front of it a proxy whose layer
/// downloads stall after 8 KiB (Tests/Fixtures/stallproxy.py): `body` gets the
/// registry, the proxy's address and the images.
func withStalledRegistry(_ body: (LocalRegistry, String, FixtureImages) async throws -> Void) async throws {
  try await withRegistry { registry, images in
    let proxy = Process()
    proxy.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    proxy.arguments = [fixturePath("stallproxy.py"), "--upstream", registry.address, "--stall-after", "8192"]
    let output = Pipe()
    proxy.standardOutput = output
    try proxy.run()
    defer { proxy.killIfRunning() }
    let port = String(decoding: output.fileHandleForReading.readLine(), as: UTF8.self)
    try #require(Int(port) != nil, "stall proxy printed \(port)")
    try await body(registry, "127.0.0.1:\(port)", images)
  }
}

extension FileHandle {
  /// Bytes up to the next newline (or end of file).
  fileprivate func readLine() -> Data {
    var line = Data()
    while true {
      let byte = readData(ofLength: 1)
      if byte.isEmpty || byte == Data("\n".utf8) { return line }
      line.append(byte)
    }
  }
}

/// A file under Tests/Fixtures.
func fixturePath(_ name: String) -> String {
  URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/" + name).path
}
