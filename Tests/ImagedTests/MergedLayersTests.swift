import CArchive
import CrispTestSupport
import Foundation
import Testing

@testable import ImagedKit

/// How imaged reads an image's /etc/passwd and /etc/group: through the overlay of its
/// layers, never outside them, whatever symlinks a hostile image holds. Layers are
/// directories as the unpacker leaves them (whiteouts 0/0 character devices, opaque
/// directories marked with user.overlay.opaque).
@Suite struct MergedLayersTests {
  /// Layer directories, top-most first, under a temporary directory.
  final class Layers {
    let base: String
    let dirs: [String]
    init(count: Int) throws {
      let base = try makeTemporaryDirectory(prefix: "crisp-merged")
      self.base = base
      dirs = (0..<count).map { "\(base)/layer\($0)" }
      for dir in dirs { mkdir(dir, 0o755) }
    }
    deinit { try? FileManager.default.removeItem(atPath: base) }

    func file(_ layer: Int, _ path: String, _ text: String) throws {
      let url = URL(fileURLWithPath: dirs[layer] + "/" + path)
      try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
      try text.write(to: url, atomically: false, encoding: .utf8)
    }
    func directory(_ layer: Int, _ path: String, opaque: Bool = false) throws {
      try FileManager.default.createDirectory(atPath: dirs[layer] + "/" + path, withIntermediateDirectories: true)
      if opaque { #expect(setxattr(dirs[layer] + "/" + path, "user.overlay.opaque", "y", 1, 0) == 0) }
    }
    func symlink(_ layer: Int, _ path: String, _ target: String) throws {
      try FileManager.default.createSymbolicLink(atPath: dirs[layer] + "/" + path, withDestinationPath: target)
    }
    func whiteout(_ layer: Int, _ path: String) {
      #expect(mknod(dirs[layer] + "/" + path, S_IFCHR | 0o600, 0) == 0)
    }
    func read(_ path: String) -> String? {
      MergedLayers.readFile(path, lowers: dirs).map { String(decoding: $0, as: UTF8.self) }
    }
  }

  @Test func theTopMostLayerThatHasAFileWinsThroughMergedDirectories() throws {
    let layers = try Layers(count: 3)
    try layers.file(2, "etc/passwd", "bottom\n")
    try layers.file(1, "etc/group", "middle\n")
    try layers.directory(0, "etc")
    #expect(layers.read("etc/passwd") == "bottom\n")
    #expect(layers.read("/etc/group") == "middle\n")
    try layers.file(0, "etc/passwd", "top\n")
    #expect(layers.read("etc/passwd") == "top\n")
  }

  @Test func whiteoutsAndOpaqueDirectoriesHideLowerLayers() throws {
    let layers = try Layers(count: 2)
    try layers.file(1, "etc/passwd", "lower\n")
    try layers.file(1, "etc/group", "lower\n")
    try layers.directory(0, "etc")
    layers.whiteout(0, "etc/passwd")
    #expect(layers.read("etc/passwd") == nil)
    #expect(layers.read("etc/group") == "lower\n")

    let opaque = try Layers(count: 2)
    try opaque.file(1, "etc/passwd", "lower\n")
    try opaque.directory(0, "etc", opaque: true)
    #expect(opaque.read("etc/passwd") == nil)
  }

  /// An image's `etc -> /etc` points at itself inside the container: a loop, not the host.
  @Test func aSymlinkToTheHostsEtcNeverLeavesTheImage() throws {
    let layers = try Layers(count: 2)
    try layers.file(1, "etc/passwd", "lower\n")
    try layers.symlink(0, "etc", "/etc")
    #expect(layers.read("etc/passwd") == nil)

    let climbing = try Layers(count: 1)
    try climbing.symlink(0, "etc", "../../../../../../../../etc")
    #expect(climbing.read("etc/passwd") == nil)

    // Inside the image, the same links resolve as the container sees them.
    let inside = try Layers(count: 2)
    try inside.file(1, "real/passwd", "image\n")
    try inside.symlink(0, "etc", "/real")
    #expect(inside.read("etc/passwd") == "image\n")
    try inside.symlink(0, "up", "../../../real")
    #expect(inside.read("up/passwd") == "image\n")
  }

  /// `etc/passwd -> /etc/shadow` reads the image's shadow, never the host's.
  @Test func aSymlinkedPasswdResolvesInsideTheImage() throws {
    let layers = try Layers(count: 1)
    try layers.directory(0, "etc")
    try layers.symlink(0, "etc/passwd", "/etc/shadow")
    #expect(layers.read("etc/passwd") == nil, "the image has no /etc/shadow")
    try layers.file(0, "etc/shadow", "image shadow\n")
    #expect(layers.read("etc/passwd") == "image shadow\n")

    let loop = try Layers(count: 1)
    try loop.symlink(0, "a", "b")
    try loop.symlink(0, "b", "a")
    #expect(loop.read("a") == nil)
  }

  @Test func onlyRegularFilesAreRead() throws {
    let layers = try Layers(count: 1)
    try layers.directory(0, "etc/passwd")
    #expect(layers.read("etc/passwd") == nil)
    #expect(mkfifo(layers.dirs[0] + "/fifo", 0o644) == 0)
    #expect(layers.read("fifo") == nil, "a FIFO would block the reader")
    try layers.file(0, "file", "x")
    #expect(layers.read("file/below") == nil)
  }
}
