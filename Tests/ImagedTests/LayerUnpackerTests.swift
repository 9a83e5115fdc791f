import CArchive
import CrispTestSupport
import Foundation
import Synchronization
import Testing

@testable import ImagedKit

// Layers are built with libarchive's writer, so that a test can craft any name, type,
// owner or link; each test unpacks into `<temp>/layer` and keeps `<temp>/sentinel`, a
// directory beside the layer that must stay empty whatever the layer says.

// MARK: - Building layers

private struct TarEntry {
  var path: [UInt8]
  var type: mode_t = S_IFREG
  var mode: mode_t = 0o644
  var uid: Int64 = 0
  var gid: Int64 = 0
  var mtime: Int = 1_500_000_000
  var content: [UInt8] = []
  var symlink: String? = nil
  var hardlink: String? = nil
  var device: (major: UInt32, minor: UInt32) = (0, 0)
  var xattrs: [(String, [UInt8])] = []
  /// Data segments (offset, length) of a sparse file; `content` holds the whole file.
  var sparse: [(Int64, Int64)] = []

  init(path: String, type: mode_t = S_IFREG) {
    self.path = Array(path.utf8)
    self.type = type
  }

  static func file(
    _ path: String, _ content: String = "", mode: mode_t = 0o644, uid: Int64 = 0, gid: Int64 = 0,
    mtime: Int = 1_500_000_000
  ) -> TarEntry {
    var entry = TarEntry(path: path)
    entry.content = Array(content.utf8)
    entry.mode = mode
    entry.uid = uid
    entry.gid = gid
    entry.mtime = mtime
    return entry
  }

  static func directory(
    _ path: String, mode: mode_t = 0o755, uid: Int64 = 0, gid: Int64 = 0, mtime: Int = 1_500_000_000
  )
    -> TarEntry
  {
    var entry = TarEntry(path: path, type: S_IFDIR)
    entry.mode = mode
    entry.uid = uid
    entry.gid = gid
    entry.mtime = mtime
    return entry
  }

  static func symlink(_ path: String, _ target: String, uid: Int64 = 0, gid: Int64 = 0) -> TarEntry {
    var entry = TarEntry(path: path, type: S_IFLNK)
    entry.mode = 0o777
    entry.symlink = target
    entry.uid = uid
    entry.gid = gid
    return entry
  }

  static func hardlink(_ path: String, _ target: String) -> TarEntry {
    var entry = TarEntry(path: path)
    entry.hardlink = target
    return entry
  }

  static func node(_ path: String, type: mode_t, major: UInt32 = 0, minor: UInt32 = 0, mode: mode_t = 0o600)
    -> TarEntry
  {
    var entry = TarEntry(path: path, type: type)
    entry.device = (major, minor)
    entry.mode = mode
    return entry
  }
}

enum LayerCompression: CaseIterable {
  case none, gzip, zstd
}

/// Collects what libarchive's writer produces.
private final class MemorySink {
  var bytes: [UInt8] = []
}

private func appendToSink(
  _ archive: OpaquePointer?, _ context: UnsafeMutableRawPointer?, _ buffer: UnsafeRawPointer?, _ length: Int
) -> la_ssize_t {
  let sink = Unmanaged<MemorySink>.fromOpaque(context!).takeUnretainedValue()
  sink.bytes.append(contentsOf: UnsafeRawBufferPointer(start: buffer, count: length))
  return length
}

private struct WriterFailed: Error, CustomStringConvertible {
  var description: String
}

/// A layer holding `entries`, in pax (or another tar) format, compressed or not.
private func makeLayer(
  _ entries: [TarEntry], compression: LayerCompression = .none, format: Int32 = ARCHIVE_FORMAT_TAR_PAX_RESTRICTED,
  extraFilter: ((OpaquePointer) -> Int32)? = nil
) throws -> [UInt8] {
  let archive = archive_write_new()!
  defer { archive_write_free(archive) }
  func check(_ status: Int32, _ what: String) throws {
    if status != ARCHIVE_OK {
      throw WriterFailed(description: "\(what): \(String(cString: archive_error_string(archive)))")
    }
  }
  try check(archive_write_set_format(archive, format), "format")
  switch compression {
  case .none: break
  case .gzip: try check(archive_write_add_filter_gzip(archive), "gzip")
  case .zstd: try check(archive_write_add_filter_zstd(archive), "zstd")
  }
  if let extraFilter { try check(extraFilter(archive), "filter") }
  // No zero padding after the compressed stream (a gzip or zstd writer adds none).
  if compression != .none || extraFilter != nil {
    try check(archive_write_set_bytes_in_last_block(archive, 1), "block")
  }
  let sink = MemorySink()
  try check(archive_write_open(archive, Unmanaged.passUnretained(sink).toOpaque(), nil, appendToSink, nil), "open")
  for item in entries {
    let entry = archive_entry_new()!
    defer { archive_entry_free(entry) }
    (item.path + [0]).withUnsafeBufferPointer { name in
      name.withMemoryRebound(to: CChar.self) { archive_entry_copy_pathname(entry, $0.baseAddress) }
    }
    archive_entry_set_filetype(entry, UInt32(item.type))
    archive_entry_set_perm(entry, item.mode)
    archive_entry_set_uid(entry, item.uid)
    archive_entry_set_gid(entry, item.gid)
    archive_entry_set_mtime(entry, item.mtime, 0)
    if let target = item.symlink { archive_entry_copy_symlink(entry, target) }
    if let target = item.hardlink { archive_entry_copy_hardlink(entry, target) }
    if item.type == S_IFCHR || item.type == S_IFBLK {
      archive_entry_set_rdevmajor(entry, dev_t(item.device.major))
      archive_entry_set_rdevminor(entry, dev_t(item.device.minor))
    }
    for (name, value) in item.xattrs {
      value.withUnsafeBytes { archive_entry_xattr_add_entry(entry, name, $0.baseAddress, $0.count) }
    }
    archive_entry_set_size(entry, Int64(item.content.count))
    for (offset, length) in item.sparse { archive_entry_sparse_add_entry(entry, offset, length) }
    try check(archive_write_header(archive, entry), "header \(String(decoding: item.path, as: UTF8.self))")
    if !item.content.isEmpty {
      let written = item.content.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, $0.count) }
      if written != item.content.count { try check(ARCHIVE_FATAL, "data") }
    }
  }
  try check(archive_write_close(archive), "close")
  return sink.bytes
}

/// `bytes` as one gzip member (libarchive's raw format with the gzip filter).
private func gzipBytes(_ bytes: [UInt8]) throws -> [UInt8] {
  let archive = archive_write_new()!
  defer { archive_write_free(archive) }
  let sink = MemorySink()
  guard archive_write_set_format_raw(archive) == ARCHIVE_OK,
    archive_write_add_filter_gzip(archive) == ARCHIVE_OK,
    archive_write_set_bytes_in_last_block(archive, 1) == ARCHIVE_OK,
    archive_write_open(archive, Unmanaged.passUnretained(sink).toOpaque(), nil, appendToSink, nil) == ARCHIVE_OK
  else { throw WriterFailed(description: "gzip writer") }
  let entry = archive_entry_new()!
  defer { archive_entry_free(entry) }
  archive_entry_set_filetype(entry, UInt32(CRISP_AE_IFREG))
  archive_entry_copy_pathname(entry, "data")
  guard archive_write_header(archive, entry) == ARCHIVE_OK,
    bytes.withUnsafeBytes({ archive_write_data(archive, $0.baseAddress, $0.count) }) == bytes.count,
    archive_write_close(archive) == ARCHIVE_OK
  else { throw WriterFailed(description: String(cString: archive_error_string(archive))) }
  return sink.bytes
}

// MARK: - Unpacking in a scratch directory

/// `<temp>/layer` (the destination) and `<temp>/sentinel` beside it; removed by `remove()`.
private struct Scratch {
  let base: String
  var layer: String { base + "/layer" }
  var sentinel: String { base + "/sentinel" }

  init() throws {
    base = try makeTemporaryDirectory(prefix: "crisp-unpack")
    mkdir(layer, 0o755)
    mkdir(sentinel, 0o755)
  }

  func remove() {
    try? FileManager.default.removeItem(atPath: base)
  }

  func path(_ relative: String) -> String { layer + "/" + relative }

  /// Unpacks `bytes` read from a file.
  func unpack(_ bytes: [UInt8]) throws(UnpackError) -> UnpackStats {
    let file = base + "/layer.input"
    let fd = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    precondition(fd >= 0)
    defer {
      close(fd)
      unlink(file)
    }
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    precondition(written == bytes.count)
    lseek(fd, 0, SEEK_SET)
    return try LayerUnpacker(destination: layer).unpack(fromFileDescriptor: fd)
  }

  func unpack(_ entries: [TarEntry], compression: LayerCompression = .none) throws -> UnpackStats {
    try unpack(try makeLayer(entries, compression: compression))
  }

  /// Expects `entries` to be refused with `expected`, and nothing to appear beside the layer.
  func expectRefusal(
    _ entries: [TarEntry], _ expected: UnpackError, sourceLocation: SourceLocation = #_sourceLocation
  ) throws {
    let layer = try makeLayer(entries)
    #expect(throws: expected, sourceLocation: sourceLocation) { try unpack(layer) }
    expectSentinelEmpty(sourceLocation: sourceLocation)
  }

  func expectSentinelEmpty(sourceLocation: SourceLocation = #_sourceLocation) {
    let found = (try? FileManager.default.contentsOfDirectory(atPath: sentinel)) ?? ["(unreadable)"]
    #expect(found.isEmpty, "written outside the layer: \(found)", sourceLocation: sourceLocation)
  }

  /// Every name in the layer with its type, mode, owner, size, mtime and content or target
  /// (directories the layer does not list get the time they were made: list them all).
  func snapshot() throws -> [String: String] {
    var result: [String: String] = [:]
    for relative in try FileManager.default.subpathsOfDirectory(atPath: layer) {
      let info = try lstatOrThrow(path(relative))
      var line = "\(info.st_mode) \(info.st_uid):\(info.st_gid) \(info.st_size) \(info.st_mtim.tv_sec)"
      switch info.st_mode & S_IFMT {
      case S_IFREG: line += " " + readText(path(relative))
      case S_IFLNK: line += " -> " + (try FileManager.default.destinationOfSymbolicLink(atPath: path(relative)))
      case S_IFCHR, S_IFBLK: line += " dev \(info.st_rdev)"
      default: break
      }
      result[relative] = line
    }
    return result
  }
}

/// Runs `body` with a fresh scratch directory, removed even when `body` throws.
private func withScratch(_ body: (Scratch) throws -> Void) throws {
  let scratch = try Scratch()
  defer { scratch.remove() }
  try body(scratch)
}

private struct StatFailed: Error {
  var path: String
  var errno: Int32
}

private func lstatOrThrow(_ path: String) throws -> stat {
  var info = stat()
  guard lstat(path, &info) == 0 else { throw StatFailed(path: path, errno: errno) }
  return info
}

private func exists(_ path: String) -> Bool {
  var info = stat()
  return lstat(path, &info) == 0
}

private func readText(_ path: String) -> String {
  (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(unreadable)"
}

private func xattr(_ path: String, _ name: String) -> [UInt8]? {
  var buffer = [UInt8](repeating: 0, count: 256)
  let count = buffer.withUnsafeMutableBytes { lgetxattr(path, name, $0.baseAddress, $0.count) }
  return count < 0 ? nil : Array(buffer[0..<count])
}

private func deviceNumbers(_ device: dev_t) -> (major: UInt32, minor: UInt32) {
  // glibc's major()/minor() are macros Swift does not import.
  let value = UInt64(device)
  let major = ((value >> 8) & 0xfff) | ((value >> 32) & ~UInt64(0xfff))
  let minor = (value & 0xff) | ((value >> 12) & ~UInt64(0xff))
  return (UInt32(truncatingIfNeeded: major), UInt32(truncatingIfNeeded: minor))
}

// MARK: - Tests

@Suite struct LayerUnpackerTests {
  // MARK: What a layer holds

  @Test func regularFilesKeepContentModeOwnerAndTimes() throws {
    try withScratch { scratch in
      let stats = try scratch.unpack([
        .file("etc/motd", "hello, layer\n", mode: 0o640, uid: 1234, gid: 5678, mtime: 1_234_567_890),
        .file("/abs/leading/slash", "x"),
        .file("./dot/slash", "yz"),
      ])
      #expect(stats == UnpackStats(entries: 3, bytes: 16))
      let info = try lstatOrThrow(scratch.path("etc/motd"))
      #expect(info.st_mode & S_IFMT == S_IFREG)
      #expect(info.st_mode & 0o7777 == 0o640)
      #expect(info.st_uid == 1234)
      #expect(info.st_gid == 5678)
      #expect(info.st_mtim.tv_sec == 1_234_567_890)
      #expect(info.st_size == 13)
      #expect(readText(scratch.path("etc/motd")) == "hello, layer\n")
      #expect(readText(scratch.path("abs/leading/slash")) == "x")
      #expect(readText(scratch.path("dot/slash")) == "yz")
      // Missing parents: 0755, root.
      let parent = try lstatOrThrow(scratch.path("abs/leading"))
      #expect(parent.st_mode & S_IFMT == S_IFDIR)
      #expect(parent.st_mode & 0o7777 == 0o755)
      #expect(parent.st_uid == 0 && parent.st_gid == 0)
    }
  }

  @Test func directoriesKeepModeOwnerAndTimesSetAfterTheirChildren() throws {
    try withScratch { scratch in
      _ = try scratch.unpack([
        .directory("opt/", mode: 0o750, uid: 7, gid: 8, mtime: 1_000_000_000),
        .directory("opt/app/", mode: 0o1777, mtime: 1_100_000_000),
        .file("opt/app/data", "d"),
        .file("opt/other", "o"),
      ])
      let opt = try lstatOrThrow(scratch.path("opt"))
      #expect(opt.st_mode & S_IFMT == S_IFDIR)
      #expect(opt.st_mode & 0o7777 == 0o750)
      #expect(opt.st_uid == 7 && opt.st_gid == 8)
      #expect(opt.st_mtim.tv_sec == 1_000_000_000)
      let app = try lstatOrThrow(scratch.path("opt/app"))
      #expect(app.st_mode & 0o7777 == 0o1777)
      #expect(app.st_mtim.tv_sec == 1_100_000_000)
      #expect(readText(scratch.path("opt/app/data")) == "d")
    }
  }

  @Test func rootEntrySetsTheLayerRootsMetadata() throws {
    try withScratch { scratch in
      _ = try scratch.unpack([.directory("./", mode: 0o750, uid: 3, gid: 4, mtime: 1_000_000_001), .file("f")])
      let root = try lstatOrThrow(scratch.layer)
      #expect(root.st_mode & 0o7777 == 0o750)
      #expect(root.st_uid == 3 && root.st_gid == 4)
      #expect(root.st_mtim.tv_sec == 1_000_000_001)
    }
  }

  @Test func symlinksAreWrittenAsTheyAreAndNotFollowed() throws {
    try withScratch { scratch in
      _ = try scratch.unpack([
        .symlink("bin/sh", "/bin/busybox", uid: 11, gid: 12),
        .symlink("etc/passwd", "../../../../../../etc/passwd"),
        .symlink("out", scratch.sentinel),
      ])
      let info = try lstatOrThrow(scratch.path("bin/sh"))
      #expect(info.st_mode & S_IFMT == S_IFLNK)
      #expect(info.st_uid == 11 && info.st_gid == 12)
      #expect(info.st_mtim.tv_sec == 1_500_000_000)
      #expect(try FileManager.default.destinationOfSymbolicLink(atPath: scratch.path("bin/sh")) == "/bin/busybox")
      #expect(
        try FileManager.default.destinationOfSymbolicLink(atPath: scratch.path("etc/passwd"))
          == "../../../../../../etc/passwd")
      #expect(try FileManager.default.destinationOfSymbolicLink(atPath: scratch.path("out")) == scratch.sentinel)
      scratch.expectSentinelEmpty()
    }
  }

  @Test func hardLinksShareTheInode() throws {
    try withScratch { scratch in
      _ = try scratch.unpack([
        .file("usr/bin/gzip", "gzip binary", mode: 0o755),
        .hardlink("usr/bin/gunzip", "usr/bin/gzip"),
        .hardlink("bin/zcat", "/usr/bin/gzip"),
        .symlink("usr/bin/link", "gzip"),
        .hardlink("usr/bin/link2", "usr/bin/link"),
      ])
      let original = try lstatOrThrow(scratch.path("usr/bin/gzip"))
      let link = try lstatOrThrow(scratch.path("usr/bin/gunzip"))
      let other = try lstatOrThrow(scratch.path("bin/zcat"))
      #expect(link.st_ino == original.st_ino)
      #expect(other.st_ino == original.st_ino)
      #expect(original.st_nlink == 3)
      // A hard link to a symlink links the symlink itself.
      let symlink = try lstatOrThrow(scratch.path("usr/bin/link2"))
      #expect(symlink.st_mode & S_IFMT == S_IFLNK)
      #expect(symlink.st_ino == (try lstatOrThrow(scratch.path("usr/bin/link"))).st_ino)
    }
  }

  @Test func devicesAndFIFOs() throws {
    try withScratch { scratch in
      _ = try scratch.unpack([
        .node("dev/null", type: S_IFCHR, major: 1, minor: 3, mode: 0o666),
        .node("dev/loop0", type: S_IFBLK, major: 7, minor: 0, mode: 0o660),
        .node("run/fifo", type: S_IFIFO, mode: 0o620),
      ])
      let null = try lstatOrThrow(scratch.path("dev/null"))
      #expect(null.st_mode & S_IFMT == S_IFCHR)
      #expect(null.st_mode & 0o7777 == 0o666)
      #expect(deviceNumbers(null.st_rdev) == (1, 3))
      let loop = try lstatOrThrow(scratch.path("dev/loop0"))
      #expect(loop.st_mode & S_IFMT == S_IFBLK)
      #expect(deviceNumbers(loop.st_rdev) == (7, 0))
      let fifo = try lstatOrThrow(scratch.path("run/fifo"))
      #expect(fifo.st_mode & S_IFMT == S_IFIFO)
      #expect(fifo.st_mode & 0o7777 == 0o620)
    }
  }

  @Test func setuidAndSetgidSurviveTheOwnerChange() throws {
    try withScratch { scratch in
      _ = try scratch.unpack([
        .file("usr/bin/su", "su", mode: 0o4755, uid: 1000, gid: 1000),
        .file("usr/bin/wall", "wall", mode: 0o2755, uid: 0, gid: 5),
        .directory("srv/shared/", mode: 0o2775, uid: 1000, gid: 1000),
      ])
      #expect(try lstatOrThrow(scratch.path("usr/bin/su")).st_mode & 0o7777 == 0o4755)
      #expect(try lstatOrThrow(scratch.path("usr/bin/su")).st_uid == 1000)
      #expect(try lstatOrThrow(scratch.path("usr/bin/wall")).st_mode & 0o7777 == 0o2755)
      #expect(try lstatOrThrow(scratch.path("srv/shared")).st_mode & 0o7777 == 0o2775)
    }
  }

  @Test func userXattrsAndCapabilitiesAreKeptOthersDropped() throws {
    // VFS_CAP_REVISION_2 with the effective flag, CAP_NET_BIND_SERVICE permitted.
    let capability: [UInt8] = [0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    var file = TarEntry.file("usr/bin/ping", "ping", mode: 0o755, uid: 1000, gid: 1000)
    file.xattrs = [
      ("user.mime_type", Array("text/plain".utf8)),
      ("security.capability", capability),
      ("trusted.overlay.opaque", Array("y".utf8)),
      ("security.selinux", Array("system_u:object_r:bin_t:s0".utf8)),
      ("user.overlay.redirect", Array("/etc".utf8)),
    ]
    var directory = TarEntry.directory("data/")
    directory.xattrs = [("user.comment", Array("kept".utf8))]
    try withScratch { scratch in
      _ = try scratch.unpack([file, directory])
      let path = scratch.path("usr/bin/ping")
      #expect(xattr(path, "user.mime_type") == Array("text/plain".utf8))
      // Set after the chown to 1000, which would have dropped it.
      #expect(xattr(path, "security.capability") == capability)
      #expect(xattr(path, "trusted.overlay.opaque") == nil)
      #expect(xattr(path, "user.overlay.redirect") == nil)
      // The file system may label files itself; the layer's label must not be there.
      #expect(xattr(path, "security.selinux") != Array("system_u:object_r:bin_t:s0".utf8))
      #expect(xattr(scratch.path("data"), "user.comment") == Array("kept".utf8))
    }
  }

  @Test func plainGzipAndZstdGiveTheSameTree() throws {
    let entries: [TarEntry] = [
      .directory("etc/", mode: 0o755, mtime: 1_400_000_000),
      .file("etc/hostname", "layer\n", mode: 0o644, uid: 1, gid: 2),
      .file("etc/big", String(repeating: "0123456789abcdef", count: 40_000)),
      .symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
      .hardlink("etc/hostname2", "etc/hostname"),
      .directory("dev/", mode: 0o755, mtime: 1_400_000_000),
      .node("dev/zero", type: S_IFCHR, major: 1, minor: 5),
      .file("etc/.wh.removed"),
    ]
    var trees: [LayerCompression: [String: String]] = [:]
    for compression in LayerCompression.allCases {
      try withScratch { scratch in
        let layer = try makeLayer(entries, compression: compression)
        let stats = try scratch.unpack(layer)
        #expect(stats == UnpackStats(entries: entries.count, bytes: 6 + 640_000), "\(compression)")
        trees[compression] = try scratch.snapshot()
      }
    }
    #expect(trees[.none]?.count == 8)
    #expect(trees[.gzip] == trees[.none])
    #expect(trees[.zstd] == trees[.none])
  }

  @Test(arguments: [ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FORMAT_TAR_GNUTAR])
  func longNames(format: Int32) throws {
    let directory = "deeply/" + String(repeating: "nested-directory-name-", count: 5) + "/"
    let name = directory + String(repeating: "f", count: 150)
    let target = "/" + directory + String(repeating: "t", count: 140)
    let entries: [TarEntry] = [
      .file(name, "long", mode: 0o600),
      .symlink(directory + "link", target),
      .hardlink(directory + "hard", name),
    ]
    try withScratch { scratch in
      #expect(name.utf8.count > 200)
      _ = try scratch.unpack(try makeLayer(entries, format: format))
      #expect(readText(scratch.path(name)) == "long")
      #expect(try FileManager.default.destinationOfSymbolicLink(atPath: scratch.path(directory + "link")) == target)
      #expect(
        try lstatOrThrow(scratch.path(directory + "hard")).st_ino == (try lstatOrThrow(scratch.path(name))).st_ino)
    }
  }

  @Test func nonASCIINamesAreKeptByteForByte() throws {
    // pax stores names as UTF-8; ustar headers hold raw bytes (here Latin-1).
    try withScratch { scratch in
      let utf8 = TarEntry.file("café/über", "utf8")
      var latin1 = TarEntry.file("", "latin1")
      latin1.path = [0x61, 0xE9, 0x62]
      let pax = try makeLayerInUTF8Locale([utf8])
      _ = try scratch.unpack(pax)
      #expect(readText(scratch.path("café/über")) == "utf8")
      _ = try scratch.unpack(try makeLayer([latin1], format: ARCHIVE_FORMAT_TAR_USTAR))
      var info = stat()
      #expect(lstat(scratch.layer + "/a\u{FFFD}b", &info) != 0)
      let raw: [CChar] = Array((scratch.layer + "/").utf8CString.dropLast()) + [0x61, -0x17, 0x62, 0]
      #expect(lstat(raw, &info) == 0)
    }
  }

  // MARK: Whiteouts

  @Test func whiteoutsBecomeZeroZeroCharacterDevices() throws {
    try withScratch { scratch in
      _ = try scratch.unpack([
        .file("etc/replaced", "earlier in this layer"),
        .file("etc/.wh.replaced"),
        .file("etc/.wh.gone"),
        .file(".wh.toplevel"),
        .file("etc/.wh..wh.plnk"),
        .file("etc/.wh..wh.aufs"),
      ])
      for name in ["etc/replaced", "etc/gone", "toplevel"] {
        let info = try lstatOrThrow(scratch.path(name))
        #expect(info.st_mode & S_IFMT == S_IFCHR, "\(name)")
        #expect(deviceNumbers(info.st_rdev) == (0, 0), "\(name)")
      }
      #expect(
        try FileManager.default.contentsOfDirectory(atPath: scratch.path("etc")).sorted() == ["gone", "replaced"])
    }
  }

  @Test func opaqueMarkerSetsTheOverlayXattr() throws {
    try withScratch { scratch in
      _ = try scratch.unpack([
        .directory("usr/share/", mode: 0o755),
        .file("usr/share/.wh..wh..opq"),
        .file("usr/share/kept", "k"),
        .file("var/new/.wh..wh..opq"),
      ])
      #expect(xattr(scratch.path("usr/share"), "user.overlay.opaque") == Array("y".utf8))
      #expect(xattr(scratch.path("var/new"), "user.overlay.opaque") == Array("y".utf8))
      #expect(xattr(scratch.path("usr"), "user.overlay.opaque") == nil)
      #expect(!exists(scratch.path("usr/share/.wh..wh..opq")))
      #expect(readText(scratch.path("usr/share/kept")) == "k")
    }
  }

  @Test func whiteoutsWithoutAName() throws {
    try withScratch { scratch in
      try scratch.expectRefusal([.file("etc/.wh..")], .invalidWhiteout(entry: "etc/.wh.."))
      try scratch.expectRefusal([.file(".wh...")], .invalidWhiteout(entry: ".wh..."))
    }
  }

  // MARK: Replacing earlier entries

  @Test func laterEntriesReplaceEarlierOnes() throws {
    try withScratch { scratch in
      _ = try scratch.unpack([
        .file("f", "first", uid: 5),
        .file("f", "second", mode: 0o600),
        .symlink("s", scratch.sentinel + "/written-through-symlink"),
        .file("s", "file over a symlink"),
        .file("d", "file then directory"),
        .directory("d/"),
        .file("d/child", "c"),
        .directory("tree/"),
        .directory("tree/a/b/c/"),
        .file("tree/a/b/c/f", "deep"),
        .node("tree/a/fifo", type: S_IFIFO),
        .symlink("tree/a/b/link", "/"),
        .file("tree", "file over a tree"),
        .directory("keep/", mode: 0o755),
        .file("keep/child", "stays"),
        .directory("keep/", mode: 0o700, uid: 9),
      ])
      #expect(readText(scratch.path("f")) == "second")
      #expect(try lstatOrThrow(scratch.path("f")).st_mode & 0o7777 == 0o600)
      #expect(try lstatOrThrow(scratch.path("f")).st_uid == 0)
      #expect(try lstatOrThrow(scratch.path("s")).st_mode & S_IFMT == S_IFREG)
      #expect(readText(scratch.path("s")) == "file over a symlink")
      #expect(try lstatOrThrow(scratch.path("d")).st_mode & S_IFMT == S_IFDIR)
      #expect(readText(scratch.path("d/child")) == "c")
      #expect(readText(scratch.path("tree")) == "file over a tree")
      #expect(readText(scratch.path("keep/child")) == "stays")
      let keep = try lstatOrThrow(scratch.path("keep"))
      #expect(keep.st_mode & 0o7777 == 0o700 && keep.st_uid == 9)
      scratch.expectSentinelEmpty()
    }
  }

  // MARK: Symlinks as parents

  @Test func symlinkParentsThatStayInsideAreResolvedInTheLayer() throws {
    try withScratch { scratch in
      _ = try scratch.unpack([
        .directory("usr/lib/"),
        .symlink("lib", "usr/lib"),
        .file("lib/x", "through a relative link"),
        .directory("srv/data/"),
        .symlink("data", "/srv/data"),
        .file("data/y", "through an absolute link"),
        .symlink("usr/up", "../srv/./data/.."),
        .file("usr/up/z", "through dot-dots"),
        .symlink("root", "/"),
        .file("root/at-root", "through a link to /"),
        .symlink("chain", "lib"),
        .file("chain/new/w", "through two links, new directory below"),
      ])
      #expect(try lstatOrThrow(scratch.path("lib")).st_mode & S_IFMT == S_IFLNK)
      #expect(readText(scratch.path("usr/lib/x")) == "through a relative link")
      #expect(readText(scratch.path("srv/data/y")) == "through an absolute link")
      #expect(readText(scratch.path("srv/z")) == "through dot-dots")
      #expect(readText(scratch.path("at-root")) == "through a link to /")
      #expect(readText(scratch.path("usr/lib/new/w")) == "through two links, new directory below")
      scratch.expectSentinelEmpty()
    }
  }

  // MARK: Refusals

  @Test func pathsClimbingOutAreRefused() throws {
    try withScratch { scratch in
      try scratch.expectRefusal([.file("../sentinel/x", "x")], .pathEscapes(entry: "../sentinel/x"))
      try scratch.expectRefusal([.file("../../x")], .pathEscapes(entry: "../../x"))
      try scratch.expectRefusal([.file("a/../../x")], .pathEscapes(entry: "a/../../x"))
      try scratch.expectRefusal([.file("/../sentinel/y")], .pathEscapes(entry: "/../sentinel/y"))
      try scratch.expectRefusal(
        [.directory("ok/"), .file("ok/../../sentinel/z")], .pathEscapes(entry: "ok/../../sentinel/z"))
      // A `..` that stays inside is fine.
      _ = try scratch.unpack([.file("a/b/../c", "inside")])
      #expect(readText(scratch.path("a/c")) == "inside")
    }
  }

  @Test func escapingSymlinkParentsAreRefused() throws {
    try withScratch { scratch in
      let targets = [
        scratch.sentinel,  // absolute: the layer holds no such directory
        "../sentinel",
        "../../..",
        "/../..",
        "sub/../../sentinel",
        "/etc",
      ]
      for target in targets {
        try scratch.expectRefusal([.symlink("evil", target), .file("evil/x", "x")], .symlinkEscape(entry: "evil/x"))
        try scratch.expectRefusal(
          [.symlink("evil", target), .directory("evil/d/")], .symlinkEscape(entry: "evil/d/"))
        try scratch.expectRefusal(
          [.symlink("a/evil", target), .symlink("hop", "a/evil"), .file("hop/x")], .symlinkEscape(entry: "hop/x"))
        try scratch.expectRefusal([.symlink("evil", target), .file("evil/.wh.x")], .symlinkEscape(entry: "evil/.wh.x"))
        try scratch.expectRefusal(
          [.symlink("evil", target), .file("evil/.wh..wh..opq")], .symlinkEscape(entry: "evil/.wh..wh..opq"))
      }
      #expect(xattr(scratch.sentinel, "user.overlay.opaque") == nil)
    }
  }

  @Test func symlinkLoopsAreRefused() throws {
    try withScratch { scratch in
      try scratch.expectRefusal(
        [.symlink("a", "b"), .symlink("b", "a"), .file("a/x")], .tooManySymlinks(entry: "a/x"))
    }
  }

  @Test func parentsThatAreFilesAreRefused() throws {
    try withScratch { scratch in
      try scratch.expectRefusal([.file("f"), .file("f/x")], .notADirectory(entry: "f/x"))
    }
  }

  @Test func escapingHardLinksAreRefused() throws {
    try withScratch { scratch in
      try scratch.expectRefusal([.hardlink("h", "../../etc/passwd")], .hardlinkEscape(entry: "h"))
      try scratch.expectRefusal([.hardlink("h", "a/../../../etc/passwd")], .hardlinkEscape(entry: "h"))
      try scratch.expectRefusal(
        [.symlink("evil", "../../.."), .hardlink("h", "evil/etc/passwd")], .hardlinkEscape(entry: "h"))
      try scratch.expectRefusal([.symlink("evil", "/etc"), .hardlink("h", "evil/passwd")], .hardlinkEscape(entry: "h"))
      try scratch.expectRefusal(
        [.symlink("evil", "../sentinel"), .hardlink("h", "evil/file")], .hardlinkEscape(entry: "h"))
      try scratch.expectRefusal(
        [.hardlink("h", "etc/shadow")], .hardlinkTargetMissing(entry: "h", target: "etc/shadow"))
      try scratch.expectRefusal(
        [.directory("etc/"), .hardlink("h", "etc/shadow")], .hardlinkTargetMissing(entry: "h", target: "etc/shadow"))
      // A link through a symlink that stays inside is fine.
      _ = try scratch.unpack([
        .file("etc/passwd", "root:x:0:0"), .symlink("evil", "/etc"), .hardlink("h", "evil/passwd"),
      ])
      #expect(try lstatOrThrow(scratch.path("h")).st_ino == (try lstatOrThrow(scratch.path("etc/passwd"))).st_ino)
    }
  }

  @Test func otherRefusals() throws {
    try withScratch { scratch in
      try scratch.expectRefusal([.symlink(".", "/")], .replacesLayerRoot(entry: "."))
      try scratch.expectRefusal([.file("a/..", "x")], .replacesLayerRoot(entry: "a/.."))
      try scratch.expectRefusal([.file("f", uid: 4_294_967_295)], .invalidOwner(entry: "f"))
      let long = Array(repeating: "d", count: 2100).joined(separator: "/")
      #expect(throws: UnpackError.nameTooLong(entry: TarPath.display(Array(long.utf8)))) {
        try scratch.unpack([.file(long)])
      }
    }
  }

  // MARK: Broken streams

  @Test func brokenStreamsAreErrors() throws {
    let entries: [TarEntry] = (0..<50).map { .file("file\($0)", String(repeating: "payload \($0) ", count: 300)) }
    try withScratch { scratch in
      func expectArchiveError(_ bytes: [UInt8], _ what: String) {
        do {
          let stats = try scratch.unpack(bytes)
          Issue.record("\(what): unpacked \(stats.entries) entries instead of failing")
        } catch {
          guard case .archive(let message) = error else {
            Issue.record("\(what): \(error)")
            return
          }
          #expect(!message.isEmpty)
        }
      }
      let gzip = try makeLayer(entries, compression: .gzip)
      expectArchiveError(Array(gzip.prefix(gzip.count / 2)), "gzip cut in half")
      expectArchiveError(Array(gzip.dropLast(4)), "gzip without its size trailer")
      var badCRC = gzip
      badCRC[badCRC.count - 6] ^= 0x01
      expectArchiveError(badCRC, "gzip with a wrong CRC")
      let zstd = try makeLayer(entries, compression: .zstd)
      expectArchiveError(Array(zstd.prefix(zstd.count - 10)), "zstd cut short")
      let plain = try makeLayer(entries)
      expectArchiveError(Array(plain.prefix(plain.count / 2 + 100)), "tar cut inside an entry")
      // Cut at a block boundary right after an entry: an archive whose writer left out
      // the end blocks (as umoci does), read as Go's archive/tar reads it.
      var blocks = plain
      while blocks.count >= 512 && blocks.suffix(512).allSatisfy({ $0 == 0 }) { blocks.removeLast(512) }
      #expect(throws: Never.self, "tar without end-of-archive blocks") { try scratch.unpack(blocks) }
      expectArchiveError(gzip + [0x00], "gzip followed by a zero byte")
      expectArchiveError(gzip + Array("trailing".utf8), "gzip followed by garbage")
      expectArchiveError(zstd + Array("trailing".utf8), "zstd followed by garbage")
      var corrupt = gzip
      for index in stride(from: 40, to: corrupt.count - 40, by: 97) { corrupt[index] ^= 0x55 }
      expectArchiveError(corrupt, "corrupt gzip")
      var damaged = plain
      damaged[3584 + 5] ^= 0xFF  // the second header (after 512 + 3072 bytes): its checksum fails
      expectArchiveError(damaged, "damaged tar header")
      var generator = SystemRandomNumberGenerator()
      expectArchiveError((0..<100_000).map { _ in UInt8.random(in: 0...255, using: &generator) }, "random bytes")
      expectArchiveError([], "empty stream")
      let bzip2 = try makeLayer(entries, extraFilter: { archive_write_add_filter_bzip2($0) })
      expectArchiveError(bzip2, "bzip2")
      let zip = try makeLayer(entries, format: ARCHIVE_FORMAT_ZIP)
      expectArchiveError(zip, "zip")
      scratch.expectSentinelEmpty()
    }
  }

  @Test func emptyLayerIsFine() throws {
    try withScratch { scratch in
      let none: [TarEntry] = []
      let plain = try scratch.unpack(none)
      let gzip = try scratch.unpack(none, compression: .gzip)
      #expect(plain == UnpackStats(entries: 0, bytes: 0))
      #expect(gzip == UnpackStats(entries: 0, bytes: 0))
    }
  }

  // MARK: Through a pipe

  @Test(arguments: [LayerCompression.none, .gzip, .zstd])
  func unpacksFromAPipeWrittenByAnotherThread(compression: LayerCompression) throws {
    signal(SIGPIPE, SIG_IGN)
    let entries: [TarEntry] =
      (0..<500).map { .file("dir\($0 % 7)/file\($0)", String(repeating: "\($0)", count: $0)) } + [
        .directory("dir3/", mode: 0o700)
      ]
    let expectedBytes = (0..<500).reduce(0) { $0 + String($1).count * $1 }
    var layer = try makeLayer(entries, compression: compression)
    if compression == .none {
      // What follows tar's end-of-archive blocks (record padding) is read too, so that
      // the writer runs to its end.
      layer += [UInt8](repeating: 0, count: 1 << 20)
    }
    try withScratch { scratch in
      var fds: [Int32] = [0, 0]
      #expect(pipe(&fds) == 0)
      let (readEnd, writeEnd) = (fds[0], fds[1])
      let finished = WriterDone()
      let thread = Thread { [layer] in
        var offset = 0
        while offset < layer.count {
          let count = layer[offset..<min(offset + 4096, layer.count)].withUnsafeBytes {
            write(writeEnd, $0.baseAddress, $0.count)
          }
          if count <= 0 { break }
          offset += count
        }
        close(writeEnd)
        finished.value.store(offset == layer.count ? 1 : -1, ordering: .sequentiallyConsistent)
      }
      thread.start()
      defer { close(readEnd) }
      let stats = try LayerUnpacker(destination: scratch.layer).unpack(fromFileDescriptor: readEnd)
      #expect(stats == UnpackStats(entries: 501, bytes: Int64(expectedBytes)))
      #expect(readText(scratch.path("dir2/file499")) == String(repeating: "499", count: 499))
      #expect(try lstatOrThrow(scratch.path("dir3")).st_mode & 0o7777 == 0o700)
      // unpack read to EOF, which comes only once the writer closed its end.
      #expect(finished.value.load(ordering: .sequentiallyConsistent) == 1)
    }
  }

  @Test func multiMemberGzip() throws {
    // Several gzip members one after the other (as eStargz layers are) make one stream.
    let entries: [TarEntry] = (0..<40).map { .file("f\($0)", String(repeating: "member ", count: 100 + $0)) }
    let tar = try makeLayer(entries)
    let cut = tar.count / 3 + 77
    let layer = try gzipBytes(Array(tar[..<cut])) + gzipBytes(Array(tar[cut...]))
    try withScratch { scratch in
      let stats = try scratch.unpack(layer)
      #expect(stats.entries == 40)
      #expect(readText(scratch.path("f39")) == String(repeating: "member ", count: 139))
    }
  }

  @Test func sparseFiles() throws {
    // 64 KiB: 4 KiB of data, a hole, 4 KiB of data, a hole to the end.
    var content = [UInt8](repeating: 0, count: 65536)
    for index in 0..<4096 { content[index] = UInt8(ascii: "a") }
    for index in 32768..<36864 { content[index] = UInt8(ascii: "b") }
    var file = TarEntry.file("sparse")
    file.content = content
    file.sparse = [(0, 4096), (32768, 4096)]
    try withScratch { scratch in
      let stats = try scratch.unpack([file])
      #expect(stats.bytes == 8192)
      let info = try lstatOrThrow(scratch.path("sparse"))
      #expect(info.st_size == 65536)
      #expect(FileManager.default.contents(atPath: scratch.path("sparse")).map { Array($0) } == content)
    }
  }

  @Test func layersUnpackInParallel() async throws {
    let layer = try makeLayer(
      (0..<5).map { .directory("d\($0)/") } + (0..<200).map { .file("d\($0 % 5)/f\($0)", "content \($0)") } + [
        .symlink("l", "d1"), .file("l/x", "x"),
      ],
      compression: .zstd)
    try await withThrowingTaskGroup(of: [String: String].self) { group in
      for _ in 0..<4 {
        group.addTask {
          let scratch = try Scratch()
          defer { scratch.remove() }
          _ = try scratch.unpack(layer)
          return try scratch.snapshot()
        }
      }
      var trees: [[String: String]] = []
      for try await tree in group { trees.append(tree) }
      #expect(trees.count == 4)
      #expect(trees.allSatisfy { $0 == trees[0] })
      #expect(trees[0]["d1/x"] != nil)
    }
  }

  // MARK: Messages

  @Test func errorsDescribeTheEntry() {
    #expect(
      UnpackError.pathEscapes(entry: "../../etc/passwd").description
        == "layer entry '../../etc/passwd' climbs out of the layer")
    #expect(UnpackError.symlinkEscape(entry: "evil/x").description.contains("'evil/x'"))
    #expect(UnpackError.io(entry: "a", operation: "mknodat", errno: EPERM).description.contains("mknodat"))
    #expect(TarPath.display(Array("bad\nname\u{1b}[31m".utf8)) == "bad\\u{a}name\\u{1b}[31m")
    #expect(TarPath.display([0x61, 0xE9, 0x62]) == "a\u{FFFD}b")
  }

  @Test func namesAreNormalisedLikeTar() {
    func components(_ path: String) -> [String]? {
      TarPath.components(Array(path.utf8)).map { $0.map { String(decoding: $0, as: UTF8.self) } }
    }
    #expect(components("/etc/passwd") == ["etc", "passwd"])
    #expect(components("./etc//./passwd/") == ["etc", "passwd"])
    #expect(components("a/b/../c") == ["a", "c"])
    #expect(components("./") == [])
    #expect(components("a/../..") == nil)
    #expect(components("..") == nil)
    #expect(components("...") == ["..."])
  }
}

private final class WriterDone: Sendable {
  let value = Atomic<Int>(0)
}

/// A pax layer written in a UTF-8 locale: libarchive's writer converts names from the
/// thread's locale to UTF-8, and fails on non-ASCII names in the C locale.
private func makeLayerInUTF8Locale(_ entries: [TarEntry]) throws -> [UInt8] {
  let locale = crisp_archive_utf8_locale()
  let previous = uselocale(locale)
  defer {
    uselocale(previous)
    freelocale(locale)
  }
  return try makeLayer(entries)
}
