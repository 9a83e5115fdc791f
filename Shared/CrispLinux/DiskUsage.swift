#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Space a tree takes, as `du` counts it: allocated blocks, not following symlinks, not
/// crossing into other file systems, hard links counted once. Iterative, so a deep tree
/// cannot exhaust the stack. Needs read and search access to every directory: run it
/// where CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE is held, or directories a container
/// made private are missed.
public struct DiskUsage: Sendable, Equatable {
  public var bytes: UInt64
  public var inodes: UInt64

  public init(bytes: UInt64, inodes: UInt64) {
    self.bytes = bytes
    self.inodes = inodes
  }

  /// Nothing (0, 0) when `root` does not exist.
  public static func measure(_ root: String) -> DiskUsage {
    var usage = DiskUsage(bytes: 0, inodes: 0)
    var st = stat()
    guard lstat(root, &st) == 0 else { return usage }
    let device = st.st_dev
    usage.bytes += UInt64(st.st_blocks) * 512
    usage.inodes += 1
    guard (st.st_mode & S_IFMT) == S_IFDIR else { return usage }
    var seenLinks = Set<UInt64>()
    var pending = [root]
    while let directory = pending.popLast() {
      guard let dir = opendir(directory) else { continue }
      while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
          String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
        }
        if name == "." || name == ".." { continue }
        let path = directory + "/" + name
        guard lstat(path, &st) == 0 else { continue }
        let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
        if !isDirectory && st.st_nlink > 1 {
          guard seenLinks.insert(UInt64(st.st_ino)).inserted else { continue }
        }
        usage.bytes += UInt64(st.st_blocks) * 512
        usage.inodes += 1
        if isDirectory && st.st_dev == device { pending.append(path) }
      }
      closedir(dir)
    }
    return usage
  }
}
