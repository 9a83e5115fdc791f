import CArchive

#if canImport(Glibc)
  import Glibc
#endif

/// Unpacks one OCI image layer (a tar stream, plain, gzip or zstd) into a directory of its
/// own, an overlayfs lower directory mounted with `userxattr`. Every byte of the layer is
/// treated as hostile:
///
/// - The stream must be whole: gzip members are checked against their CRC and length
///   (zlib), zstd frames by libarchive, and no entry's data may be cut short; the tar may
///   end right after an entry, without padding or end-of-archive blocks, as umoci's do and
///   as Go's archive/tar reads them. Bytes after the compressed stream are an error
///   (`LayerStream`).
/// - Names are normalised as tar does (leading `/` and `./`, empty and `.` components
///   dropped, `..` applied lexically); a `..` that climbs above the layer root is refused.
/// - Every path is walked with `openat(O_NOFOLLOW)` from a descriptor of the layer root.
///   A symlink met as a parent is resolved inside the layer (absolute targets from the
///   layer root, relative ones from the link's directory), and must lead to a directory
///   the layer contains: one that climbs above the root, or that leads nowhere in this
///   layer, is refused. Symlink entries themselves are written as they are.
/// - Hard links must point to something already in the layer, reached the same way.
/// - A later entry replaces an earlier one (a directory over a directory only updates its
///   metadata). Owner, mode (after the owner, which clears setuid), `user.*` (except
///   `user.overlay.*`) and `security.capability` xattrs, and times are applied;
///   directory times at the end. Other xattrs (`trusted.*`, `security.selinux`...) are
///   dropped; xattrs are only set on regular files and directories.
/// - OCI whiteouts become what overlayfs reads: `.wh.<name>` a 0/0 character device,
///   `.wh..wh..opq` the xattr `user.overlay.opaque=y` on its directory; other `.wh..wh.`
///   names (aufs metadata) and sockets are skipped.
///
/// It needs CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_MKNOD and CAP_SETFCAP,
/// nothing more; it never changes directory or other process state, so several layers can
/// be unpacked at once on different threads.
public struct LayerUnpacker: Sendable {
  /// Symlinks followed at most while resolving one entry's parents (the kernel's limit).
  public static let maxSymlinks = 40
  /// Longest normalised entry path, exclusive (PATH_MAX: what Linux tools can reach).
  public static let maxPathLength = 4096

  /// The layer's directory: existing, empty, owned by imaged.
  public let destination: String
  public let limits: UnpackLimits
  /// The input is an uncompressed tar (a pull decompresses by the media type first):
  /// compressed bytes are refused rather than unwrapped.
  public let plainTar: Bool

  /// `destination` is an existing, empty directory owned by imaged.
  public init(destination: String, limits: UnpackLimits = UnpackLimits(), plainTar: Bool = false) {
    self.destination = destination
    self.limits = limits
    self.plainTar = plainTar
  }

  /// Reads one layer from `fd` until EOF (tar, plain or gzip or zstd, detected from the
  /// first bytes) and writes it under `destination`. Blocking: the caller runs it on a
  /// dedicated thread while another thread writes the download into a pipe. Does not
  /// close `fd`.
  ///
  /// On success the descriptor has been read to its end. On error it returns at once,
  /// leaving the rest unread (close the read end so that the writer stops) and a partly
  /// written layer (delete the whole directory).
  public func unpack(fromFileDescriptor fd: Int32) throws(UnpackError) -> UnpackStats {
    // libarchive converts pax names (UTF-8) to the thread's locale charset: in the C
    // locale every non-ASCII name fails. The locale is set for this thread only.
    let utf8Locale = crisp_archive_utf8_locale()
    let previousLocale = utf8Locale != nil ? uselocale(utf8Locale) : nil
    defer {
      if let utf8Locale {
        uselocale(previousLocale)
        freelocale(utf8Locale)
      }
    }

    let tree: LayerTree
    do {
      tree = try LayerTree(root: destination)
    } catch {
      throw .io(entry: ".", operation: error.operation, errno: error.errno)
    }
    defer { tree.close() }
    let reader = try ArchiveReader(fd: fd, plainTar: plainTar)
    defer { reader.close() }

    let writer = EntryWriter(tree: tree, reader: reader)
    var stats = UnpackStats(entries: 0, bytes: 0)
    while let entry = try reader.next() {
      stats.entries += 1
      guard stats.entries <= limits.maxLayerEntries else {
        throw .limitExceeded("layer has more than \(limits.maxLayerEntries) entries (imaged.max_layer_entries)")
      }
      let header = try EntryHeader(entry)
      // (A path too long for Linux is refused by its length, by the writer.)
      let depth = header.path.split(separator: UInt8(ascii: "/")).count
      guard depth <= limits.maxPathDepth || header.path.count >= Self.maxPathLength else {
        throw .limitExceeded(
          "layer entry '\(header.name)' is \(depth) directories deep, more than \(limits.maxPathDepth) "
            + "(imaged.max_path_depth)")
      }
      defer { tree.endEntry() }
      stats.bytes += try writer.write(header)
    }
    do {
      try tree.applyDirectoryTimes()
    } catch {
      throw .io(entry: ".", operation: error.operation, errno: error.errno)
    }
    try reader.finish()
    return stats
  }
}

/// What the unpacker uses of one archive entry, copied out of libarchive.
struct EntryHeader {
  var path: [UInt8]
  /// `path` as printable text, for errors.
  var name: String
  var fileType: mode_t
  var permissions: mode_t
  var uid: uid_t
  var gid: gid_t
  var atime: timespec
  var mtime: timespec
  var hardlink: [UInt8]?
  var symlink: [UInt8]?
  var device: dev_t
  var size: Int64?
  var xattrs: [(name: [UInt8], value: [UInt8])]

  init(_ entry: OpaquePointer) throws(UnpackError) {
    guard let path = archive_entry_pathname(entry).map(Self.bytes) else {
      throw .archive("an entry has no name")
    }
    self.path = path
    name = TarPath.display(path)
    fileType = archive_entry_filetype(entry)
    permissions = archive_entry_perm(entry) & 0o7777
    let uid = archive_entry_uid(entry)
    let gid = archive_entry_gid(entry)
    // (uid_t)-1 would mean "leave unchanged" to chown.
    guard (0..<Int64(UInt32.max)).contains(uid), (0..<Int64(UInt32.max)).contains(gid) else {
      throw .invalidOwner(entry: name)
    }
    self.uid = uid_t(uid)
    self.gid = gid_t(gid)
    let omit = timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)  // UTIME_OMIT
    mtime =
      archive_entry_mtime_is_set(entry) != 0
      ? timespec(tv_sec: archive_entry_mtime(entry), tv_nsec: archive_entry_mtime_nsec(entry)) : omit
    atime =
      archive_entry_atime_is_set(entry) != 0
      ? timespec(tv_sec: archive_entry_atime(entry), tv_nsec: archive_entry_atime_nsec(entry)) : mtime
    hardlink = archive_entry_hardlink(entry).map(Self.bytes)
    symlink = archive_entry_symlink(entry).map(Self.bytes)
    device = archive_entry_rdev(entry)
    size = archive_entry_size_is_set(entry) != 0 ? archive_entry_size(entry) : nil
    xattrs = []
    if archive_entry_xattr_reset(entry) > 0 {
      var xattrName: UnsafePointer<CChar>? = nil
      var value: UnsafeRawPointer? = nil
      var valueSize = 0
      while archive_entry_xattr_next(entry, &xattrName, &value, &valueSize) == ARCHIVE_OK {
        guard let xattrName else { continue }
        xattrs.append(
          (Self.bytes(xattrName), Array(UnsafeRawBufferPointer(start: value, count: value == nil ? 0 : valueSize))))
      }
    }
  }

  static func bytes(_ string: UnsafePointer<CChar>) -> [UInt8] {
    Array(UnsafeRawBufferPointer(start: string, count: strlen(string)))
  }
}

/// Writes entries into the layer tree, one after the other.
struct EntryWriter {
  let tree: LayerTree
  let reader: ArchiveReader

  static let opaqueXattr = "user.overlay.opaque"

  /// Writes one entry; returns the bytes of file content written.
  func write(_ header: EntryHeader) throws(UnpackError) -> Int64 {
    guard let components = TarPath.components(header.path) else { throw .pathEscapes(entry: header.name) }
    guard TarPath.length(components) < LayerUnpacker.maxPathLength else { throw .nameTooLong(entry: header.name) }
    guard let base = components.last else {
      // The layer root itself ("./", "/").
      if header.hardlink == nil && header.fileType == S_IFDIR {
        try directory(header, components: components)
        return 0
      }
      if header.hardlink == nil && header.fileType == S_IFSOCK { return 0 }
      throw .replacesLayerRoot(entry: header.name)
    }
    let parentComponents = components.dropLast()

    switch TarPath.whiteout(base) {
    case .none:
      break
    case .aufsMetadata:
      return 0
    case .opaque:
      let directory = try resolveParent(parentComponents, header)
      try system(header) { () throws(SystemFailure) in
        guard fsetxattr(directory, Self.opaqueXattr, "y", 1, 0) == 0 else {
          throw SystemFailure(operation: "setxattr \(Self.opaqueXattr)", errno: errno)
        }
      }
      return 0
    case .delete(let deleted):
      guard !deleted.isEmpty, !TarPath.isDot(deleted), !TarPath.isDotDot(deleted) else {
        throw .invalidWhiteout(entry: header.name)
      }
      try whiteout(header, parent: parentComponents, name: deleted)
      return 0
    }

    if let target = header.hardlink {
      try hardlink(header, parent: parentComponents, base: base, target: target)
      return 0
    }
    switch header.fileType {
    case S_IFREG:
      return try regularFile(header, parent: parentComponents, base: base)
    case S_IFDIR:
      try directory(header, components: components)
    case S_IFLNK:
      try symlink(header, parent: parentComponents, base: base)
    case S_IFCHR, S_IFBLK, S_IFIFO:
      try node(header, parent: parentComponents, base: base)
    case S_IFSOCK:
      break
    default:
      throw .unsupportedEntry(entry: header.name, type: "file type 0o" + String(header.fileType, radix: 8))
    }
    return 0
  }

  // MARK: Entry kinds

  private func regularFile(_ header: EntryHeader, parent components: ArraySlice<[UInt8]>, base: [UInt8])
    throws(UnpackError) -> Int64
  {
    let parent = try resolveParent(components, header)
    let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC
    var fd = withCName(base) { openat(parent, $0, flags, 0o600) }
    if fd < 0 && errno == EEXIST {
      try system(header) { () throws(SystemFailure) in try tree.remove(in: parent, base) }
      fd = withCName(base) { openat(parent, $0, flags, 0o600) }
    }
    guard fd >= 0 else { throw .io(entry: header.name, operation: "openat", errno: errno) }
    defer { close(fd) }

    var written: Int64 = 0
    var end: Int64 = 0
    try reader.readData(entryName: header.name) { (offset, block) throws(UnpackError) in
      var done = 0
      while done < block.count {
        let count = pwrite(fd, block.baseAddress! + done, block.count - done, off_t(offset) + off_t(done))
        if count < 0 {
          if errno == EINTR { continue }
          throw .io(entry: header.name, operation: "write", errno: errno)
        }
        done += count
      }
      written += Int64(block.count)
      end = max(end, offset + Int64(block.count))
    }
    try system(header) { () throws(SystemFailure) in
      // A sparse file may end with a hole.
      if let size = header.size, size > end, ftruncate(fd, off_t(size)) != 0 {
        throw SystemFailure(operation: "ftruncate", errno: errno)
      }
      try applyMetadata(fd, header)
      var times = [header.atime, header.mtime]
      guard futimens(fd, &times) == 0 else { throw SystemFailure(operation: "futimens", errno: errno) }
    }
    return written
  }

  private func directory(_ header: EntryHeader, components: [[UInt8]]) throws(UnpackError) {
    guard let base = components.last else {
      try system(header) { () throws(SystemFailure) in
        try applyMetadata(tree.rootFD, header)
        try deferTimes(tree.rootFD, header, components: components)
      }
      return
    }
    let parent = try resolveParent(components.dropLast(), header)
    try system(header) { () throws(SystemFailure) in
      if !(try tree.removeUnlessDirectory(in: parent, base)) {
        guard withCName(base, { mkdirat(parent, $0, 0o700) }) == 0 else {
          throw SystemFailure(operation: "mkdirat", errno: errno)
        }
      }
      let fd = withCName(base) { openat(parent, $0, LayerTree.directoryFlags) }
      guard fd >= 0 else { throw SystemFailure(operation: "openat", errno: errno) }
      defer { close(fd) }
      try applyMetadata(fd, header)
      try deferTimes(fd, header, components: components)
    }
  }

  private func symlink(_ header: EntryHeader, parent components: ArraySlice<[UInt8]>, base: [UInt8]) throws(UnpackError)
  {
    let target = header.symlink ?? []
    let parent = try resolveParent(components, header)
    try system(header) { () throws(SystemFailure) in
      try tree.remove(in: parent, base)
      let status = withCName(target) { target in withCName(base) { symlinkat(target, parent, $0) } }
      guard status == 0 else { throw SystemFailure(operation: "symlinkat", errno: errno) }
      try applyMetadata(at: parent, base, header, mode: false)
    }
  }

  private func node(_ header: EntryHeader, parent components: ArraySlice<[UInt8]>, base: [UInt8]) throws(UnpackError) {
    let parent = try resolveParent(components, header)
    try system(header) { () throws(SystemFailure) in
      try tree.remove(in: parent, base)
      let status = withCName(base) { name in
        header.fileType == S_IFIFO
          ? mkfifoat(parent, name, 0o600) : mknodat(parent, name, header.fileType | 0o600, header.device)
      }
      guard status == 0 else { throw SystemFailure(operation: "mknodat", errno: errno) }
      try applyMetadata(at: parent, base, header, mode: true)
    }
  }

  /// `.wh.<name>`: a 0/0 character device named `<name>`, replacing whatever the layer
  /// had there.
  private func whiteout(_ header: EntryHeader, parent components: ArraySlice<[UInt8]>, name: [UInt8])
    throws(UnpackError)
  {
    let parent = try resolveParent(components, header)
    try system(header) { () throws(SystemFailure) in
      try tree.remove(in: parent, name)
      guard withCName(name, { mknodat(parent, $0, S_IFCHR, 0) }) == 0 else {
        throw SystemFailure(operation: "mknodat", errno: errno)
      }
      try applyMetadata(at: parent, name, header, mode: false)
    }
  }

  private func hardlink(
    _ header: EntryHeader, parent components: ArraySlice<[UInt8]>, base: [UInt8], target rawTarget: [UInt8]
  ) throws(UnpackError) {
    let targetName = TarPath.display(rawTarget)
    guard let target = TarPath.components(rawTarget) else { throw .hardlinkEscape(entry: header.name) }
    guard let targetBase = target.last else {
      throw .unsupportedEntry(entry: header.name, type: "hard link to the layer root")
    }
    guard TarPath.length(target) < LayerUnpacker.maxPathLength else { throw .nameTooLong(entry: header.name) }
    let targetParent: Int32
    do {
      targetParent = try tree.directory(target.dropLast(), create: false)
    } catch {
      switch error {
      case .escapes: throw .hardlinkEscape(entry: header.name)
      case .missing, .notDirectory: throw .hardlinkTargetMissing(entry: header.name, target: targetName)
      case .tooManySymlinks: throw .tooManySymlinks(entry: header.name)
      case .system(let failure): throw .io(entry: header.name, operation: failure.operation, errno: failure.errno)
      }
    }
    let targetStatus: stat?
    do {
      targetStatus = try tree.status(in: targetParent, targetBase)
    } catch {
      throw .io(entry: header.name, operation: error.operation, errno: error.errno)
    }
    guard let targetInfo = targetStatus else {
      throw .hardlinkTargetMissing(entry: header.name, target: targetName)
    }
    let parent = try resolveParent(components, header)
    try system(header) { () throws(SystemFailure) in
      if let existing = try tree.status(in: parent, base) {
        if existing.st_dev == targetInfo.st_dev && existing.st_ino == targetInfo.st_ino { return }
        try tree.remove(in: parent, base)
      }
      let status = withCName(targetBase) { from in withCName(base) { linkat(targetParent, from, parent, $0, 0) } }
      guard status == 0 else { throw SystemFailure(operation: "linkat", errno: errno) }
    }
  }

  // MARK: Helpers

  /// The directory `components` names, created if missing, with failures named after the entry.
  private func resolveParent(_ components: ArraySlice<[UInt8]>, _ header: EntryHeader) throws(UnpackError) -> Int32 {
    do {
      return try tree.directory(components, create: true)
    } catch {
      switch error {
      case .escapes, .missing: throw .symlinkEscape(entry: header.name)
      case .notDirectory: throw .notADirectory(entry: header.name)
      case .tooManySymlinks: throw .tooManySymlinks(entry: header.name)
      case .system(let failure): throw .io(entry: header.name, operation: failure.operation, errno: failure.errno)
      }
    }
  }

  /// Runs file system calls for `header`, turning a failed call into `UnpackError.io`.
  private func system(_ header: EntryHeader, _ body: () throws(SystemFailure) -> Void) throws(UnpackError) {
    do {
      try body()
    } catch {
      throw .io(entry: header.name, operation: error.operation, errno: error.errno)
    }
  }

  /// Owner, then mode (chown clears setuid and setgid), then xattrs (chown also drops
  /// security.capability), on an open regular file or directory.
  private func applyMetadata(_ fd: Int32, _ header: EntryHeader) throws(SystemFailure) {
    guard fchown(fd, header.uid, header.gid) == 0 else { throw SystemFailure(operation: "fchown", errno: errno) }
    guard fchmod(fd, header.permissions) == 0 else { throw SystemFailure(operation: "fchmod", errno: errno) }
    for (name, value) in header.xattrs where Self.keepsXattr(name) {
      let status = value.withUnsafeBytes { bytes in
        withCName(name) { fsetxattr(fd, $0, bytes.baseAddress, bytes.count, 0) }
      }
      guard status == 0 else {
        throw SystemFailure(operation: "setxattr " + TarPath.display(name), errno: errno)
      }
    }
  }

  /// Owner, mode (unless a symlink, whose mode Linux ignores) and times of a node that is
  /// not opened (symlink, device, FIFO, whiteout), by name in its verified parent, never
  /// following a symlink. The node was created just now by this thread, so `fchmodat`
  /// (which has no working no-follow flag) meets that node and not a symlink.
  private func applyMetadata(at parent: Int32, _ name: [UInt8], _ header: EntryHeader, mode: Bool) throws(SystemFailure)
  {
    try withCName(name) { (name) throws(SystemFailure) in
      guard fchownat(parent, name, header.uid, header.gid, AT_SYMLINK_NOFOLLOW) == 0 else {
        throw SystemFailure(operation: "fchownat", errno: errno)
      }
      if mode, fchmodat(parent, name, header.permissions, 0) != 0 {
        throw SystemFailure(operation: "fchmodat", errno: errno)
      }
      var times = [header.atime, header.mtime]
      guard utimensat(parent, name, &times, AT_SYMLINK_NOFOLLOW) == 0 else {
        throw SystemFailure(operation: "utimensat", errno: errno)
      }
    }
  }

  private func deferTimes(_ fd: Int32, _ header: EntryHeader, components: [[UInt8]]) throws(SystemFailure) {
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw SystemFailure(operation: "fstat", errno: errno) }
    tree.deferTimes(of: info, components: components, atime: header.atime, mtime: header.mtime)
  }

  /// The xattrs a layer may set: `user.*` but overlayfs's own `user.overlay.*` (the layer
  /// is a lower directory mounted with `userxattr`: those would steer overlayfs), and
  /// file capabilities. `trusted.*` needs CAP_SYS_ADMIN, `security.selinux` is the host's
  /// business; the rest has no use in a container image.
  static func keepsXattr(_ name: [UInt8]) -> Bool {
    if name == Array("security.capability".utf8) { return true }
    return name.starts(with: "user.".utf8) && !name.starts(with: "user.overlay.".utf8)
  }
}
