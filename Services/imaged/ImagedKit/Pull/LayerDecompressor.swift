import CArchive
import CrispCore
import CrispOCI
import Crypto
import Glibc

/// The middle stage of a layer pull: reads the compressed blob from one pipe,
/// decompresses it (gzip, zstd, or none, detected from the bytes by libarchive's
/// "raw" reader), hashes the uncompressed tar (the layer's diff ID) and writes it into
/// the unpacker's pipe. Runs on its own thread; closes neither descriptor.
enum LayerDecompressor {
  struct Result: Sendable {
    var diffID: String
    var bytes: Int64
  }

  static func run(input: Int32, output: Int32) throws(CrispError) -> Result {
    guard let archive = archive_read_new() else { throw CrispError(.internal, "libarchive: out of memory") }
    defer { archive_read_free(archive) }
    archive_read_support_filter_gzip(archive)
    archive_read_support_filter_zstd(archive)
    archive_read_support_format_raw(archive)
    guard archive_read_open_fd(archive, input, 1 << 17) == ARCHIVE_OK else {
      throw CrispError(.invalidArgument, "layer is not readable: \(message(archive))")
    }
    var hasher = SHA256()
    var total: Int64 = 0
    var entry: OpaquePointer?
    let header = archive_read_next_header(archive, &entry)
    if header == ARCHIVE_OK {
      var buffer = [UInt8](repeating: 0, count: 1 << 17)
      while true {
        let n = buffer.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress, $0.count) }
        if n == 0 { break }
        if n < 0 { throw CrispError(.invalidArgument, "layer cannot be decompressed: \(message(archive))") }
        let written = buffer.withUnsafeBytes { raw in
          let chunk = UnsafeRawBufferPointer(rebasing: raw[0..<n])
          hasher.update(bufferPointer: chunk)
          return FileSystem.writeAll(output, chunk)
        }
        guard written else { throw CrispError(.internal, "layer unpacker stopped reading") }
        total += Int64(n)
      }
    } else if header != ARCHIVE_EOF {
      throw CrispError(.invalidArgument, "layer cannot be decompressed: \(message(archive))")
    }
    return Result(diffID: "sha256:" + Digest.hexString(hasher.finalize()), bytes: total)
  }

  private static func message(_ archive: OpaquePointer) -> String {
    archive_error_string(archive).map { String(cString: $0) } ?? "unknown libarchive error"
  }
}
