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

  /// Nothing (0, 0) when `root` does not exist. Walked by descriptor and raw name bytes
  /// (`DirectoryTree.usage`): a name that is not UTF-8 must not hide what is below it.
  public static func measure(_ root: String) -> DiskUsage { DirectoryTree.usage(root) }
}
