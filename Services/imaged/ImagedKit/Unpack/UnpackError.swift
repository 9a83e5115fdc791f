import CrispCore

#if canImport(Glibc)
  import Glibc
#endif

/// What one unpack wrote.
public struct UnpackStats: Sendable, Equatable {
  /// Tar entries read, every kind included (also skipped sockets and aufs metadata).
  public var entries: Int
  /// Bytes of regular file content written.
  public var bytes: Int64

  public init(entries: Int, bytes: Int64) {
    self.entries = entries
    self.bytes = bytes
  }
}

/// Why a layer was refused. Every case but `.archive` names the offending entry, as
/// printable text (`TarPath.display`): control characters are escaped and very long
/// names shortened, so the name can go into a log line as it is.
public enum UnpackError: Error, Sendable, Equatable, CustomStringConvertible {
  /// Not a tar stream (plain, gzip or zstd), or corrupt, or truncated (an entry's data
  /// cut short), or a read error on the fd.
  case archive(String)
  /// The entry's path climbs above the layer root with `..`.
  case pathEscapes(entry: String)
  /// A parent of the entry is a symlink that, resolved inside the layer, climbs above the
  /// layer root or leads to a directory this layer does not contain.
  case symlinkEscape(entry: String)
  /// A hard link whose target climbs above the layer root or goes through an escaping symlink.
  case hardlinkEscape(entry: String)
  /// A hard link to a target the layer does not (yet) contain.
  case hardlinkTargetMissing(entry: String, target: String)
  /// An entry type crisp does not unpack (`type` describes it).
  case unsupportedEntry(entry: String, type: String)
  /// A non-directory entry whose path is the layer root itself (`/`, `./`, `a/..`).
  case replacesLayerRoot(entry: String)
  /// A whiteout (`.wh.<name>`) whose name is empty, `.` or `..`.
  case invalidWhiteout(entry: String)
  /// A parent of the entry exists in the layer and is not a directory (nor a symlink to one).
  case notADirectory(entry: String)
  /// Resolving the entry's parents followed more than `LayerUnpacker.maxSymlinks` symlinks.
  case tooManySymlinks(entry: String)
  /// The entry's normalised path is `LayerUnpacker.maxPathLength` bytes or longer.
  case nameTooLong(entry: String)
  /// A uid or gid that is negative or does not fit a uid_t (4294967295 means "unchanged" to chown).
  case invalidOwner(entry: String)
  /// A system call failed while writing the entry.
  case io(entry: String, operation: String, errno: Int32)
  /// One of `UnpackLimits` (`what` names it and its configuration key).
  case limitExceeded(String)

  public var description: String {
    switch self {
    case .archive(let message):
      return "layer is not a valid tar stream: \(message)"
    case .pathEscapes(let entry):
      return "layer entry '\(entry)' climbs out of the layer"
    case .symlinkEscape(let entry):
      return "layer entry '\(entry)' goes through a symlink that leads outside the layer"
    case .hardlinkEscape(let entry):
      return "layer entry '\(entry)' is a hard link to a path outside the layer"
    case .hardlinkTargetMissing(let entry, let target):
      return "layer entry '\(entry)' is a hard link to '\(target)', which the layer does not contain"
    case .unsupportedEntry(let entry, let type):
      return "layer entry '\(entry)' has an unsupported type (\(type))"
    case .replacesLayerRoot(let entry):
      return "layer entry '\(entry)' would replace the layer root with a non-directory"
    case .invalidWhiteout(let entry):
      return "layer entry '\(entry)' is a whiteout without a valid name"
    case .notADirectory(let entry):
      return "layer entry '\(entry)' has a parent that is not a directory"
    case .tooManySymlinks(let entry):
      return "layer entry '\(entry)' goes through too many symlinks"
    case .nameTooLong(let entry):
      return "layer entry '\(entry)' has a path of \(LayerUnpacker.maxPathLength) bytes or more"
    case .invalidOwner(let entry):
      return "layer entry '\(entry)' has an invalid uid or gid"
    case .io(let entry, let operation, let errno):
      return "cannot unpack layer entry '\(entry)': \(operation) failed: \(Files.errnoText())"
    case .limitExceeded(let what):
      return what
    }
  }
}
