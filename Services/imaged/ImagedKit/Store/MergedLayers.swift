import CArchive
import CCrispSys
import CrispCore

#if canImport(Glibc)
  import Glibc
#endif

/// A file of an image as its container will see it through the overlay of its layers,
/// read without mounting the overlay and without ever leaving the layers: an image's
/// `etc -> /etc` or `etc/passwd -> /etc/shadow` must not make imaged (which holds
/// CAP_DAC_OVERRIDE) read the host's files, nor decide a container's uid from them.
///
/// Each path component is looked up as overlayfs does: in the top-most layer that has
/// it; a directory merges the layers below it until one hides it (a file, a whiteout) or
/// it is opaque; a symlink is followed inside the merged view (absolute targets from its
/// root, `..` never above it), 40 links at most. The file found is opened with
/// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS) from its layer's directory.
enum MergedLayers {
  /// The file's bytes; nil when the merged view has no regular file there (missing,
  /// whited out, a directory, a device, a symlink loop), or it is over `limit`.
  static func readFile(_ path: String, lowers: [String], limit: Int = 4 << 20) -> [UInt8]? {
    guard let (layer, relative) = resolve(path, lowers: lowers) else { return nil }
    let root = open(layer, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard root >= 0 else { return nil }
    defer { close(root) }
    let fd = crisp_open_in_root(root, relative, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 1)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, Int(info.st_size) <= limit else { return nil }
    return readBytes(fd, count: Int(info.st_size))
  }

  /// The layer directory and the path inside it that hold `path` of the merged view.
  static func resolve(_ path: String, lowers: [String]) -> (layer: String, relative: String)? {
    var pending = components(path)
    var prefix: [String] = []
    // The layers in which `prefix` is a directory of the merged view, top-most first;
    // in each, every component of `prefix` is a real directory (never a symlink).
    var candidates = lowers
    var links = 0
    func restart(from components: [String]) {
      pending = components + pending
      prefix = []
      candidates = lowers
    }
    while !pending.isEmpty {
      let name = pending.removeFirst()
      if name == "." { continue }
      if name == ".." {
        restart(from: Array(prefix.dropLast()))
        continue
      }
      let relative = (prefix + [name]).joined(separator: "/")
      var found: (layer: String, info: stat)? = nil
      var directories: [String] = []
      for layer in candidates {
        var info = stat()
        guard lstat(layer + "/" + relative, &info) == 0 else { continue }
        let type = info.st_mode & S_IFMT
        if found == nil { found = (layer, info) }
        guard type == S_IFDIR, let top = found, top.info.st_mode & S_IFMT == S_IFDIR else { break }
        directories.append(layer)
        if isOpaque(layer + "/" + relative) { break }
      }
      guard let found else { return nil }
      switch found.info.st_mode & S_IFMT {
      case S_IFDIR:
        prefix.append(name)
        candidates = directories
      case S_IFLNK:
        links += 1
        guard links <= 40, let target = readLink(found.layer + "/" + relative) else { return nil }
        if target.hasPrefix("/") {
          restart(from: components(target))
        } else {
          pending = components(target) + pending
        }
      case S_IFREG:
        return pending.isEmpty ? (found.layer, relative) : nil
      default:
        // A whiteout (0/0 character device), a device, a FIFO, a socket.
        return nil
      }
    }
    return nil
  }

  private static func components(_ path: String) -> [String] {
    path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
  }

  private static func isOpaque(_ directory: String) -> Bool {
    let fd = open(directory, LayerTree.directoryFlags)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var value: UInt8 = 0
    return fgetxattr(fd, EntryWriter.opaqueXattr, &value, 1) == 1 && value == UInt8(ascii: "y")
  }

  private static func readLink(_ path: String) -> String? {
    var buffer = [UInt8](repeating: 0, count: 4097)
    let count = buffer.withUnsafeMutableBytes { readlink(path, $0.baseAddress!, 4096) }
    guard count > 0 else { return nil }
    return String(decoding: buffer[..<count], as: UTF8.self)
  }
}
