import CArchive
import CrispCore
import CrispOCI
import Crypto
import Glibc
import Synchronization

/// The middle stage of a layer pull: reads the compressed blob from one pipe,
/// decompresses it with the one filter its media type names (gzip, zstd or none), hashes
/// the uncompressed tar (the layer's diff ID) and writes it into the unpacker's pipe.
/// Runs on its own thread; closes neither descriptor.
///
/// Everything here is the attacker's: libarchive bids its filters again on their own
/// output, so a blob compressed twice (a few KB of gzip of gzip) would be unwrapped level
/// after level into gigabytes. Exactly one filter is allowed, and it must be the one the
/// bytes start with; the uncompressed bytes are counted against the layer's and the
/// image's limits, and the store's free space is watched as they grow.
enum LayerDecompressor {
  struct Result: Sendable {
    var diffID: String
    var bytes: Int64
  }

  enum Compression: String, Sendable {
    case none, gzip, zstd

    /// The compression a layer media type names; nil for one crisp does not unpack.
    init?(mediaType: String) {
      let type = mediaType.lowercased()
      if type.hasSuffix("+gzip") || type.hasSuffix(".tar.gzip") || type.hasSuffix("tar.gz") {
        self = .gzip
      } else if type.hasSuffix("+zstd") || type.hasSuffix(".tar.zstd") {
        self = .zstd
      } else if type.hasSuffix(".tar") || type.hasSuffix(".layer.v1.tar") {
        self = .none
      } else {
        return nil
      }
    }
  }

  /// How often (in uncompressed bytes) the store's free space is looked at.
  static let freeSpaceInterval: Int64 = 64 << 20

  static func run(
    input: Int32, output: Int32, mediaType: String, limits: UnpackLimits, budget: ImageByteBudget,
    storePath: String
  ) throws(CrispError) -> Result {
    guard let compression = Compression(mediaType: mediaType) else {
      throw CrispError(
        .invalidArgument, "layer media type \"\(mediaType)\" is not one crisp unpacks (tar, tar+gzip, tar+zstd)")
    }
    guard let archive = archive_read_new() else { throw CrispError(.internal, "libarchive: out of memory") }
    defer { archive_read_free(archive) }
    switch compression {
    case .gzip: archive_read_support_filter_gzip(archive)
    case .zstd: archive_read_support_filter_zstd(archive)
    case .none: break
    }
    archive_read_support_format_raw(archive)
    guard archive_read_open_fd(archive, input, 1 << 17) == ARCHIVE_OK else {
      throw CrispError(.invalidArgument, "layer is not readable: \(message(archive))")
    }
    var hasher = SHA256()
    var total: Int64 = 0
    var entry: OpaquePointer?
    let header = archive_read_next_header(archive, &entry)
    if header == ARCHIVE_EOF { return Result(diffID: "sha256:" + Digest.hexString(hasher.finalize()), bytes: 0) }
    guard header == ARCHIVE_OK else {
      throw CrispError(.invalidArgument, "layer cannot be decompressed: \(message(archive))")
    }
    // Filters in use, "none" (the bytes as read) included.
    let filters = archive_filter_count(archive)
    let expected: Int32 = compression == .none ? 1 : 2
    guard filters == expected else {
      throw CrispError(
        .invalidArgument,
        filters > expected
          ? "layer is compressed more than once (\(filters - 1) levels); crisp unwraps the one its media type names"
          : "layer media type \"\(mediaType)\" says \(compression.rawValue), but the bytes are not")
    }
    var buffer = [UInt8](repeating: 0, count: 1 << 17)
    var nextFreeSpaceCheck: Int64 = 0
    while true {
      let n = buffer.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress, $0.count) }
      if n == 0 { break }
      if n < 0 { throw CrispError(.invalidArgument, "layer cannot be decompressed: \(message(archive))") }
      // What one level gave must be a tar, not another compressed stream (a media type
      // that says less than the bytes hold): the unpacker would refuse it anyway, but
      // this names the cause.
      if total == 0, let inner = LayerStream.compression(Array(buffer[0..<min(n, 6)])) {
        throw CrispError(
          .invalidArgument,
          "layer is compressed more than once (\(inner) inside the \(compression.rawValue) its media type "
            + "\"\(mediaType)\" names); crisp unwraps one level")
      }
      total += Int64(n)
      guard total <= limits.maxLayerBytes else {
        throw CrispError(
          .resourceExhausted,
          "layer uncompresses to more than \(limits.maxLayerBytes) bytes (imaged.max_layer_bytes)")
      }
      guard budget.take(Int64(n)) else {
        throw CrispError(
          .resourceExhausted,
          "image uncompresses to more than \(budget.limit) bytes (imaged.max_image_bytes)")
      }
      if total >= nextFreeSpaceCheck {
        nextFreeSpaceCheck = total + freeSpaceInterval
        if let free = freeBytes(storePath), free < limits.minFreeBytes {
          throw CrispError(
            .resourceExhausted,
            "only \(free) bytes are free on the image store's filesystem (\(storePath)), "
              + "less than imaged.min_free_bytes (\(limits.minFreeBytes))")
        }
      }
      let written = buffer.withUnsafeBytes { raw in
        let chunk = UnsafeRawBufferPointer(rebasing: raw[0..<n])
        hasher.update(bufferPointer: chunk)
        return Files.writeAll(output, chunk)
      }
      guard written else { throw CrispError(.internal, "layer unpacker stopped reading") }
    }
    return Result(diffID: "sha256:" + Digest.hexString(hasher.finalize()), bytes: total)
  }

  /// Bytes an unprivileged writer may still use on the filesystem of `path`.
  static func freeBytes(_ path: String) -> Int64? {
    var info = statvfs()
    guard statvfs(path, &info) == 0 else { return nil }
    return Int64(info.f_bavail) * Int64(info.f_frsize)
  }

  private static func message(_ archive: OpaquePointer) -> String {
    archive_error_string(archive).map { String(cString: $0) } ?? "unknown libarchive error"
  }
}

/// What one pull may still unpack, shared by its layers, which decompress at once.
final class ImageByteBudget: Sendable {
  let limit: Int64
  private let used = Mutex<Int64>(0)

  init(limit: Int64) { self.limit = limit }

  /// Counts `bytes`; false once the image is over its limit.
  func take(_ bytes: Int64) -> Bool {
    used.withLock { used in
      used += bytes
      return used <= limit
    }
  }
}

/// Limits on what a layer may become, from `[imaged]`; each failure is ResourceExhausted,
/// naming its key.
public struct UnpackLimits: Sendable, Equatable {
  /// Uncompressed bytes of one layer (`max_layer_bytes`).
  public var maxLayerBytes: Int64
  /// Uncompressed bytes of all layers of one image (`max_image_bytes`).
  public var maxImageBytes: Int64
  /// Entries of one layer (`max_layer_entries`).
  public var maxLayerEntries: Int
  /// Components of one entry's path (`max_path_depth`).
  public var maxPathDepth: Int
  /// Free space the image store's filesystem keeps (`min_free_bytes`).
  public var minFreeBytes: Int64

  public init(
    maxLayerBytes: Int64 = 64 << 30, maxImageBytes: Int64 = 128 << 30, maxLayerEntries: Int = 5_000_000,
    maxPathDepth: Int = 512, minFreeBytes: Int64 = 512 << 20
  ) {
    self.maxLayerBytes = maxLayerBytes
    self.maxImageBytes = maxImageBytes
    self.maxLayerEntries = maxLayerEntries
    self.maxPathDepth = maxPathDepth
    self.minFreeBytes = minFreeBytes
  }
}
