import CArchive
import CrispLinux

#if canImport(Glibc)
  import Glibc
#endif

/// A failed system call.
struct SystemFailure: Error {
  var operation: String
  var errno: Int32
}

/// Why a directory path inside the layer could not be resolved.
enum ResolveFailure: Error {
  /// A `..` climbs above the layer root, or a symlink leads to a directory the layer does
  /// not contain.
  case escapes
  /// A component is missing and was not to be created.
  case missing
  /// A component is neither a directory nor a symlink.
  case notDirectory
  /// More than `LayerUnpacker.maxSymlinks` symlinks.
  case tooManySymlinks
  case system(SystemFailure)
}

/// The directory one layer is unpacked into, reached only through file descriptors: every
/// path component is opened with `O_NOFOLLOW` from the layer root's descriptor, and
/// symlinks met on the way are resolved by hand inside the layer. Nothing here follows a
/// symlink, uses the working directory or changes process state. One instance per
/// unpack, used by one thread.
final class LayerTree {
  static let directoryFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
  /// Directories a path walk holds open at most (see `walk`).
  static let openWindow = 16

  let rootFD: Int32
  /// Resolved directories by the entry-path components that named them. Entries of a tar
  /// come directory by directory, so most parents are found here. Any removal empties it.
  private var cache: [[UInt8]: Int32] = [:]
  private static let cacheLimit = 64
  /// Descriptors dropped from the cache while an entry may still use them: closed by `endEntry`.
  private var retired: [Int32] = []
  /// Directory times, applied by `applyDirectoryTimes` once every child is written.
  private var directoryTimes: [FileID: PendingTimes] = [:]

  struct FileID: Hashable {
    var device: UInt64
    var inode: UInt64
  }

  struct PendingTimes {
    var components: [[UInt8]]
    var times: (atime: timespec, mtime: timespec)
  }

  init(root: String) throws(SystemFailure) {
    let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw SystemFailure(operation: "open \(root)", errno: errno) }
    rootFD = fd
  }

  func close() {
    invalidate()
    endEntry()
    _ = Glibc.close(rootFD)
  }

  /// Closes the descriptors an entry may have borrowed before the cache dropped them.
  func endEntry() {
    for fd in retired { _ = Glibc.close(fd) }
    retired.removeAll(keepingCapacity: true)
  }

  /// Forgets every resolved directory: called whenever something is removed, since a
  /// removal can change what a cached path resolves to.
  func invalidate() {
    retired += cache.values
    cache.removeAll(keepingCapacity: true)
  }

  // MARK: Resolution

  /// The directory `components` names inside the layer, with symlinks resolved inside the
  /// layer root (absolute targets from the root, relative ones from the link's directory).
  /// Missing components of the path are created (0755, root-owned) when `create` is set;
  /// the target of a symlink must exist. The descriptor is borrowed: valid until `endEntry`.
  func directory(_ components: ArraySlice<[UInt8]>, create: Bool) throws(ResolveFailure) -> Int32 {
    if components.isEmpty { return rootFD }
    let key = TarPath.joined(components)
    if let fd = cache[key] { return fd }
    let fd = try walk(components, create: create)
    if cache.count >= Self.cacheLimit { invalidate() }
    cache[key] = fd
    return fd
  }

  private func walk(_ components: ArraySlice<[UInt8]>, create: Bool) throws(ResolveFailure) -> Int32 {
    // The open directories from the root down to the current one (the root itself is not
    // in it), and the components still to resolve, last first; `fromLink` marks those
    // that came from a symlink target.
    // Only the last `openWindow` are held open (-1 marks one closed): a path 600
    // directories deep must not take 600 descriptors. A closed one is opened again
    // through `..` of its child, a real directory reached without symlinks.
    var stack: [Int32] = []
    var pending: [(name: [UInt8], fromLink: Bool)] = components.reversed().map { ($0, false) }
    var symlinks = 0
    func closeAll() {
      for fd in stack where fd >= 0 { _ = Glibc.close(fd) }
      stack.removeAll()
    }
    func push(_ fd: Int32) {
      stack.append(fd)
      let oldest = stack.count - Self.openWindow - 1
      if oldest >= 0, stack[oldest] >= 0 {
        _ = Glibc.close(stack[oldest])
        stack[oldest] = -1
      }
    }

    while let (name, fromLink) = pending.popLast() {
      if name.isEmpty || TarPath.isDot(name) { continue }
      if TarPath.isDotDot(name) {
        guard let top = stack.popLast() else {
          closeAll()
          throw .escapes
        }
        if let parent = stack.indices.last, stack[parent] < 0 {
          stack[parent] = openat(top, "..", Self.directoryFlags)
          if stack[parent] < 0 {
            let failure = SystemFailure(operation: "openat ..", errno: errno)
            _ = Glibc.close(top)
            closeAll()
            throw .system(failure)
          }
        }
        _ = Glibc.close(top)
        continue
      }
      let current = stack.last ?? rootFD
      let fd = withCName(name) { openat(current, $0, Self.directoryFlags) }
      if fd >= 0 {
        push(fd)
        continue
      }
      let openErrno = errno
      switch openErrno {
      case ENOENT:
        guard !fromLink else {
          closeAll()
          throw .escapes
        }
        guard create else {
          closeAll()
          throw .missing
        }
        do {
          push(try makeImplicitDirectory(in: current, name))
        } catch {
          closeAll()
          throw .system(error)
        }
      case ENOTDIR, ELOOP:
        var info = stat()
        guard withCName(name, { fstatat(current, $0, &info, AT_SYMLINK_NOFOLLOW) }) == 0 else {
          let statErrno = errno
          closeAll()
          throw .system(SystemFailure(operation: "fstatat", errno: statErrno))
        }
        guard info.st_mode & S_IFMT == S_IFLNK else {
          closeAll()
          throw .notDirectory
        }
        symlinks += 1
        guard symlinks <= LayerUnpacker.maxSymlinks else {
          closeAll()
          throw .tooManySymlinks
        }
        let target: [UInt8]
        do {
          target = try readLink(in: current, name)
        } catch {
          closeAll()
          throw .system(error)
        }
        let (absolute, parts) = TarPath.linkComponents(target)
        if absolute { closeAll() }
        pending += parts.reversed().map { ($0, true) }
      default:
        closeAll()
        throw .system(SystemFailure(operation: "openat", errno: openErrno))
      }
    }
    guard let result = stack.popLast() else {
      // The path resolved to the root itself (a link to "/" or "..").
      let fd = fcntl(rootFD, F_DUPFD_CLOEXEC, 0)
      guard fd >= 0 else { throw .system(SystemFailure(operation: "dup", errno: errno)) }
      return fd
    }
    closeAll()
    return result
  }

  /// A missing parent: created 0755 and owned by root whatever the umask or a setgid parent say.
  private func makeImplicitDirectory(in parent: Int32, _ name: [UInt8]) throws(SystemFailure) -> Int32 {
    guard withCName(name, { mkdirat(parent, $0, 0o755) }) == 0 else {
      throw SystemFailure(operation: "mkdirat", errno: errno)
    }
    let fd = withCName(name) { openat(parent, $0, Self.directoryFlags) }
    guard fd >= 0 else { throw SystemFailure(operation: "openat", errno: errno) }
    guard fchown(fd, 0, 0) == 0, fchmod(fd, 0o755) == 0 else {
      let failure = SystemFailure(operation: "fchown/fchmod", errno: errno)
      _ = Glibc.close(fd)
      throw failure
    }
    return fd
  }

  func readLink(in parent: Int32, _ name: [UInt8]) throws(SystemFailure) -> [UInt8] {
    let capacity = Int(PATH_MAX) + 1
    var buffer = [UInt8](repeating: 0, count: capacity)
    let count = buffer.withUnsafeMutableBytes { raw in
      withCName(name) { readlinkat(parent, $0, raw.baseAddress!.assumingMemoryBound(to: CChar.self), capacity) }
    }
    guard count >= 0 else { throw SystemFailure(operation: "readlinkat", errno: errno) }
    guard count < capacity else { throw SystemFailure(operation: "readlinkat", errno: ENAMETOOLONG) }
    return Array(buffer[0..<count])
  }

  // MARK: Names in a directory

  /// `lstat` of `name` in `parent`; nil when there is nothing by that name.
  func status(in parent: Int32, _ name: [UInt8]) throws(SystemFailure) -> stat? {
    var info = stat()
    if withCName(name, { fstatat(parent, $0, &info, AT_SYMLINK_NOFOLLOW) }) == 0 { return info }
    if errno == ENOENT { return nil }
    throw SystemFailure(operation: "fstatat", errno: errno)
  }

  /// Removes whatever is at `name` in `parent` (a directory with everything in it).
  func remove(in parent: Int32, _ name: [UInt8]) throws(SystemFailure) {
    guard let info = try status(in: parent, name) else { return }
    invalidate()
    if info.st_mode & S_IFMT == S_IFDIR {
      try removeTree(in: parent, name)
    } else if withCName(name, { unlinkat(parent, $0, 0) }) != 0 {
      throw SystemFailure(operation: "unlinkat", errno: errno)
    }
  }

  /// Removes a non-directory at `name`; leaves a directory alone. Returns whether a
  /// directory is there.
  func removeUnlessDirectory(in parent: Int32, _ name: [UInt8]) throws(SystemFailure) -> Bool {
    guard let info = try status(in: parent, name) else { return false }
    if info.st_mode & S_IFMT == S_IFDIR { return true }
    invalidate()
    if withCName(name, { unlinkat(parent, $0, 0) }) != 0 {
      throw SystemFailure(operation: "unlinkat", errno: errno)
    }
    return false
  }

  /// Deletes a directory tree without recursion and with two descriptors at most: it goes
  /// down into the first subdirectory left, and back up through `..` once one is empty.
  /// Nothing else writes in the layer meanwhile, so `..` is the directory it came from.
  private func removeTree(in parent: Int32, _ name: [UInt8]) throws(SystemFailure) {
    guard DirectoryTree.remove(name, in: parent) else { throw SystemFailure(operation: "remove tree", errno: errno) }
  }

  // MARK: Directory times

  func deferTimes(of info: stat, components: [[UInt8]], atime: timespec, mtime: timespec) {
    let id = FileID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    directoryTimes[id] = PendingTimes(components: components, times: (atime, mtime))
  }

  /// Sets the times of the directory entries, once nothing more is written into them. A
  /// directory removed or replaced since is skipped.
  func applyDirectoryTimes() throws(SystemFailure) {
    for (id, pending) in directoryTimes {
      var times = [pending.times.atime, pending.times.mtime]
      guard let base = pending.components.last else {
        guard futimens(rootFD, &times) == 0 else { throw SystemFailure(operation: "futimens", errno: errno) }
        continue
      }
      guard let parent = try? directory(pending.components.dropLast(), create: false),
        let info = try status(in: parent, base),
        info.st_mode & S_IFMT == S_IFDIR,
        FileID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)) == id
      else { continue }
      let set = withCName(base, { utimensat(parent, $0, &times, AT_SYMLINK_NOFOLLOW) })
      let setErrno = errno
      // Descriptors the resolution retired are closed now, not when the layer closes:
      // a layer of more directories than RLIMIT_NOFILE would otherwise run imaged out
      // of descriptors (every thread, not only this unpack).
      endEntry()
      guard set == 0 else { throw SystemFailure(operation: "utimensat", errno: setErrno) }
    }
    directoryTimes.removeAll()
  }
}

/// Calls `body` with `bytes` as a NUL-terminated C string (names never contain NUL: they
/// come from C strings).
@inline(__always)
func withCName<R, E: Error>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) throws(E) -> R) throws(E) -> R {
  try withUnsafeTemporaryAllocation(of: CChar.self, capacity: bytes.count + 1) { (buffer) throws(E) -> R in
    bytes.withUnsafeBytes { source in
      if let base = source.baseAddress {
        UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: base, byteCount: source.count)
      }
    }
    buffer[bytes.count] = 0
    return try body(buffer.baseAddress!)
  }
}
