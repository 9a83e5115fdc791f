import CrispTestSupport
import Foundation
import Testing

@testable import ImagedKit

// Layers written by tools other than crisp: umoci (which critest's images are built
// with), skopeo's copies of them, and Python's tarfile, cut where other writers end their
// streams. What each wrote must unpack to the tree it was given.

@Suite struct ForeignLayerTests {
  /// A tree whose files are not multiples of 512 bytes, so that every entry has padding.
  private static let files: [String: String] = [
    "etc/motd": "hello from a foreign layer\n",
    "usr/bin/tool": String(repeating: "x", count: 1_000),
    "var/empty": "",
    "last-entry": String(repeating: "z", count: 467),
  ]

  private func makeTree(_ base: String) throws {
    for (path, content) in Self.files {
      let url = URL(fileURLWithPath: base + "/" + path)
      try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
      try content.write(to: url, atomically: false, encoding: .utf8)
    }
    try FileManager.default.createSymbolicLink(atPath: base + "/etc/link", withDestinationPath: "motd")
  }

  private func expectTree(_ layer: String, sourceLocation: SourceLocation = #_sourceLocation) {
    for (path, content) in Self.files {
      #expect(readWholeFile(layer + "/" + path) == content, "\(path)", sourceLocation: sourceLocation)
    }
    #expect(
      (try? FileManager.default.destinationOfSymbolicLink(atPath: layer + "/etc/link")) == "motd",
      sourceLocation: sourceLocation)
  }

  private func unpack(_ file: String, into layer: String) throws(UnpackError) -> UnpackStats {
    let fd = open(file, O_RDONLY | O_CLOEXEC)
    precondition(fd >= 0, "open \(file)")
    defer { close(fd) }
    mkdir(layer, 0o755)
    return try LayerUnpacker(destination: layer).unpack(fromFileDescriptor: fd)
  }

  /// The blob of the last layer of `tag` in an OCI image layout.
  private func lastLayerBlob(layout: String, tag: String) throws -> String {
    func json(_ path: String) throws -> [String: Any] {
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    }
    func blob(_ digest: String) -> String { layout + "/blobs/sha256/" + digest.dropFirst("sha256:".count) }
    let index = try json(layout + "/index.json")
    let manifests = index["manifests"] as! [[String: Any]]
    let entry = try #require(
      manifests.first { ($0["annotations"] as? [String: String])?["org.opencontainers.image.ref.name"] == tag })
    let manifest = try json(blob(entry["digest"] as! String))
    let layers = manifest["layers"] as! [[String: Any]]
    return blob(try #require(layers.last?["digest"] as? String))
  }

  private func run(_ program: String, _ arguments: [String]) throws {
    let (status, output) = try runProgram(program, arguments)
    #expect(status == 0, "\(program) \(arguments.joined(separator: " ")): \(output)")
    if status != 0 { throw RunFailed() }
  }
  private struct RunFailed: Error {}

  @Test func layersWrittenByUmociAndCopiedBySkopeoUnpack() throws {
    let base = try makeTemporaryDirectory(prefix: "crisp-umoci")
    defer { try? FileManager.default.removeItem(atPath: base) }
    try makeTree(base + "/tree")
    let layout = base + "/oci"
    try run("/usr/bin/umoci", ["init", "--layout", layout])
    try run("/usr/bin/umoci", ["new", "--image", layout + ":t"])
    try run("/usr/bin/umoci", ["insert", "--image", layout + ":t", base + "/tree", "/"])
    try run("/usr/bin/umoci", ["insert", "--image", layout + ":t", "--tag", "repacked", base + "/tree/etc", "/etc2"])
    let inserted = try lastLayerBlob(layout: layout, tag: "t")
    let stats = try unpack(inserted, into: base + "/inserted")
    #expect(stats.entries >= Self.files.count)
    expectTree(base + "/inserted")
    _ = try unpack(try lastLayerBlob(layout: layout, tag: "repacked"), into: base + "/second")
    #expect(readWholeFile(base + "/second/etc2/motd") == Self.files["etc/motd"])

    // skopeo copies the image as it is (to another layout, uncompressed on the way).
    try run(
      "/usr/bin/skopeo",
      ["copy", "--quiet", "--dest-decompress", "oci:\(layout):t", "oci:\(base)/copied:t"])
    _ = try unpack(try lastLayerBlob(layout: base + "/copied", tag: "t"), into: base + "/copied-layer")
    expectTree(base + "/copied-layer")
  }

  /// Python's tarfile, whole and cut where umoci ends its streams: right after the last
  /// entry's data (no padding, no end-of-archive blocks) and after its padding.
  @Test func layersWrittenByPythonsTarfileUnpackWhereverTheyEndAfterAnEntry() throws {
    let base = try makeTemporaryDirectory(prefix: "crisp-tarfile")
    defer { try? FileManager.default.removeItem(atPath: base) }
    try makeTree(base + "/tree")
    let script = """
      import sys, tarfile, os
      base = sys.argv[1]
      with tarfile.open(base + "/whole.tar", "w", format=tarfile.PAX_FORMAT) as tar:
          for name in ["etc", "etc/motd", "etc/link", "usr", "usr/bin", "usr/bin/tool", "var", "var/empty", "last-entry"]:
              tar.add(base + "/tree/" + name, arcname=name, recursive=False)
      with tarfile.open(base + "/whole.tar.gz", "w:gz") as tar:
          tar.add(base + "/tree", arcname=".")
      last = tarfile.open(base + "/whole.tar").getmembers()[-1]
      data = open(base + "/whole.tar", "rb").read()
      end = last.offset_data + last.size
      open(base + "/no-padding.tar", "wb").write(data[:end])
      open(base + "/no-trailer.tar", "wb").write(data[:end + (-end % 512)])
      open(base + "/cut-in-data.tar", "wb").write(data[:end - 1])
      """
    try run("/usr/bin/python3", ["-c", script, base])
    for name in ["whole.tar", "whole.tar.gz", "no-padding.tar", "no-trailer.tar"] {
      _ = try unpack(base + "/" + name, into: base + "/" + name + ".d")
      expectTree(base + "/" + name + ".d")
    }
    #expect(throws: UnpackError.self, "an entry whose data is cut short") {
      try unpack(base + "/cut-in-data.tar", into: base + "/cut.d")
    }
  }

  /// zstd's own CLI, once and twice: a layer is compressed once; libarchive would unwrap
  /// nested frames level after level (a decompression bomb's trick).
  @Test func aLayerCompressedTwiceWithZstdIsRefused() throws {
    let base = try makeTemporaryDirectory(prefix: "crisp-zstd")
    defer { try? FileManager.default.removeItem(atPath: base) }
    try makeTree(base + "/tree")
    try run("/usr/bin/tar", ["-C", base + "/tree", "-cf", base + "/layer.tar", "."])
    try run("/usr/bin/zstd", ["-q", base + "/layer.tar", "-o", base + "/layer.tar.zst"])
    try run("/usr/bin/zstd", ["-q", base + "/layer.tar.zst", "-o", base + "/layer.tar.zst.zst"])
    _ = try unpack(base + "/layer.tar.zst", into: base + "/once")
    expectTree(base + "/once")
    let error = #expect(throws: UnpackError.self) { try unpack(base + "/layer.tar.zst.zst", into: base + "/twice") }
    #expect("\(String(describing: error))".contains("more than once"), "\(String(describing: error))")
  }
}
