import CArchive
import CrispCore

#if canImport(Glibc)
  import Glibc
#endif

/// libarchive's tar reader (ustar, pax, GNU) on the uncompressed layer from a
/// `LayerStream`. Only the tar format is enabled: zip, cpio or anything else fails as
/// unrecognized. One instance per unpack, used by one thread.
final class ArchiveReader {
  private let archive: OpaquePointer
  private let stream: LayerStream
  private var entry: OpaquePointer? = nil
  /// The stream ended in the padding after the last entry's data.
  private var endedAfterLastEntry = false
  /// How much of the current entry's data has been read (by every `readData` call).
  private var receivedOfEntry: Int64 = 0

  /// `plainTar`: the stream is already decompressed (the pull's decompressor did it, by
  /// the media type): compressed bytes here are refused, not unwrapped once more.
  init(fd: Int32, plainTar: Bool = false) throws(UnpackError) {
    stream = try LayerStream(fd: fd, plainTar: plainTar)
    guard let archive = archive_read_new() else { throw .archive("cannot allocate a libarchive reader") }
    self.archive = archive
    var status = archive_read_support_format_tar(archive)
    if status == ARCHIVE_OK {
      status = archive_read_open(archive, Unmanaged.passUnretained(stream).toOpaque(), nil, readUncompressed, nil)
    }
    guard status == ARCHIVE_OK else {
      let message = errorMessage
      archive_read_free(archive)
      throw .archive(message)
    }
  }

  func close() {
    archive_read_free(archive)
    stream.close()
  }

  var errorMessage: String {
    archive_error_string(archive).map { String(cString: $0) } ?? "unknown libarchive error"
  }

  /// The next entry's header, or nil at the end of the archive. The entry is valid until
  /// the next call. A warning (a name that is not valid UTF-8 in a pax header, a malformed
  /// pax record, a damaged header libarchive would skip...) is an error: the layer is
  /// hostile until proven otherwise.
  ///
  /// The archive may end right after an entry's data, with or without its padding and
  /// the two zero blocks: umoci writes such layers, and Go's archive/tar (containerd,
  /// CRI-O) reads them as ending cleanly. An entry whose data is cut short is refused; a
  /// download cut at an entry's end is caught by the blob's digest and the diff_id.
  func next() throws(UnpackError) -> OpaquePointer? {
    if entry != nil {
      // Whatever of the last entry's data is left is read (not skipped), so that its end
      // is told apart from a cut in its data.
      try readData(entryName: currentName) { _, _ in }
    }
    if endedAfterLastEntry { return nil }
    receivedOfEntry = 0
    let status = archive_read_next_header(archive, &entry)
    switch status {
    case ARCHIVE_OK:
      return entry
    case ARCHIVE_EOF:
      entry = nil
      return nil
    default:
      throw .archive(errorMessage)
    }
  }

  private var currentName: String {
    entry.flatMap { archive_entry_pathname($0) }.map { String(cString: $0) } ?? "?"
  }

  /// Hands each block of the current entry's data to `body` (offset in the file, bytes);
  /// sparse files come with holes between the offsets.
  func readData(
    entryName: @autoclosure () -> String,
    _ body: (Int64, UnsafeRawBufferPointer) throws(UnpackError) -> Void
  ) throws(UnpackError) {
    guard let entry else { return }
    let size = archive_entry_size_is_set(entry) != 0 ? Int64(archive_entry_size(entry)) : 0
    var block: UnsafeRawPointer? = nil
    var count = 0
    var offset: la_int64_t = 0
    while true {
      let status = archive_read_data_block(archive, &block, &count, &offset)
      if status == ARCHIVE_EOF { return }
      guard status == ARCHIVE_OK else {
        // libarchive consumes an entry's padding after its last data block; a stream
        // that ends there ends the archive (ARCHIVE_ERRNO_MISC: its "Truncated input").
        if receivedOfEntry >= size, archive_errno(archive) == -1, stream.atEnd {
          endedAfterLastEntry = true
          return
        }
        throw .archive("\(errorMessage) (in entry '\(entryName())')")
      }
      if count > 0 { try body(Int64(offset), UnsafeRawBufferPointer(start: block, count: count)) }
      receivedOfEntry = max(receivedOfEntry, Int64(offset) + Int64(count))
    }
  }

  /// After the tar archive's end: reads the rest of the uncompressed stream, so that the
  /// compressed stream's end is checked (gzip CRC and length, zstd frame), then the rest of
  /// the descriptor, so that whoever writes into it (the download) runs to its end.
  func finish() throws(UnpackError) {
    do {
      while try !stream.next().isEmpty {}
    } catch {
      throw .archive("\(error.message) (after the end of the tar archive)")
    }
    stream.drain()
  }
}

/// The tar reader's read callback: the next block of the uncompressed layer, 0 at its end,
/// -1 on error (with the error set on the tar reader).
private func readUncompressed(
  _ archive: OpaquePointer?, _ context: UnsafeMutableRawPointer?, _ buffer: UnsafeMutablePointer<UnsafeRawPointer?>?
) -> la_ssize_t {
  guard let context, let buffer else { return -1 }
  let stream = Unmanaged<LayerStream>.fromOpaque(context).takeUnretainedValue()
  do {
    let block = try stream.next()
    buffer.pointee = block.baseAddress
    return block.count
  } catch {
    crisp_archive_set_error(archive, error.errno, error.message)
    return -1
  }
}

struct StreamError: Error {
  var message: String
  var errno: Int32 = EINVAL
}

/// The uncompressed bytes of a layer read from a file descriptor. The first bytes say
/// the compression:
///
/// - gzip: zlib's inflate, member after member (multi-member streams such as eStargz
///   included), each checked against its CRC-32 and length (libarchive's gzip filter
///   skips that check). Bytes after the last member are an error, as with zstd (and
///   containerd).
/// - anything else: libarchive's zstd filter (which checks frame checksums) or none, with
///   the "raw" format. xz, bzip2 and lz4 are refused by name.
///
/// Blocks are handed out without copying; each is valid until the next call.
final class LayerStream {
  private let fd: Int32
  private let input: UnsafeMutableRawPointer
  private let inputCapacity = 1 << 20
  /// Bytes read from `fd` and not consumed yet: `input[inputStart ..< inputStart + inputCount]`.
  private var inputStart = 0
  private var inputCount = 0

  private var gzip: UnsafeMutablePointer<z_stream>? = nil
  private var output: UnsafeMutableRawPointer? = nil
  private let outputCapacity = 1 << 18
  private var inMember = false
  private var members = 0
  private var finished = false

  private var decompressor: OpaquePointer? = nil

  init(fd: Int32, plainTar: Bool = false) throws(UnpackError) {
    self.fd = fd
    input = .allocate(byteCount: inputCapacity, alignment: 64)
    do throws(StreamError) {
      _ = try fill(atLeast: 6)
      let magic = Array(UnsafeRawBufferPointer(start: input + inputStart, count: min(inputCount, 6)))
      if plainTar {
        if let name = Self.compression(magic) {
          throw StreamError(message: "the decompressed layer is itself compressed (\(name)); crisp unwraps one level")
        }
        try startLibarchive(zstd: false)
      } else if magic.starts(with: [0x1f, 0x8b]) {
        try startGzip()
      } else if let name = Self.unsupportedCompression(magic) {
        throw StreamError(message: "the layer is compressed with \(name); crisp unpacks gzip, zstd or plain tar")
      } else {
        try startLibarchive()
      }
    } catch {
      close()
      throw .archive(error.message)
    }
  }

  /// The compression the first bytes of a stream show, if any.
  static func compression(_ magic: [UInt8]) -> String? {
    if magic.starts(with: [0x1f, 0x8b]) { return "gzip" }
    if magic.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) { return "zstd" }
    return unsupportedCompression(magic)
  }

  static func unsupportedCompression(_ magic: [UInt8]) -> String? {
    if magic.starts(with: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) { return "xz" }
    if magic.starts(with: [0x42, 0x5a, 0x68]) { return "bzip2" }
    if magic.starts(with: [0x04, 0x22, 0x4d, 0x18]) { return "lz4" }
    return nil
  }

  func close() {
    if let gzip {
      inflateEnd(gzip)
      gzip.deallocate()
      self.gzip = nil
    }
    output?.deallocate()
    output = nil
    if let decompressor {
      archive_read_free(decompressor)
      self.decompressor = nil
    }
  }

  deinit {
    close()
    input.deallocate()
  }

  /// The uncompressed stream has ended (`next` gave an empty block).
  private(set) var atEnd = false

  /// The next uncompressed block; empty at the end of the stream.
  func next() throws(StreamError) -> UnsafeRawBufferPointer {
    let block = try produce()
    if block.isEmpty { atEnd = true }
    return block
  }

  private func produce() throws(StreamError) -> UnsafeRawBufferPointer {
    if gzip != nil { return try nextGzip() }
    guard let decompressor else { return UnsafeRawBufferPointer(start: nil, count: 0) }
    var block: UnsafeRawPointer? = nil
    var size = 0
    var offset: la_int64_t = 0
    while true {
      let status = archive_read_data_block(decompressor, &block, &size, &offset)
      if status == ARCHIVE_EOF { return UnsafeRawBufferPointer(start: nil, count: 0) }
      guard status == ARCHIVE_OK else {
        throw StreamError(message: Self.errorMessage(decompressor), errno: archive_errno(decompressor))
      }
      if size > 0 { return UnsafeRawBufferPointer(start: block, count: size) }
    }
  }

  /// Reads and discards whatever is left on the descriptor.
  func drain() {
    inputCount = 0
    while read(fd, input, inputCapacity) > 0 || errno == EINTR {}
  }

  // MARK: Raw input

  /// Makes at least `count` unconsumed bytes available unless the descriptor ends first;
  /// returns whether they are.
  private func fill(atLeast count: Int) throws(StreamError) -> Bool {
    if inputCount >= count { return true }
    if inputStart > 0 {
      memmove(input, input + inputStart, inputCount)
      inputStart = 0
    }
    while inputCount < count {
      let got = read(fd, input + inputCount, inputCapacity - inputCount)
      if got == 0 { return false }
      if got < 0 {
        if errno == EINTR { continue }
        throw StreamError(
          message: "read from the layer stream failed: \(Files.errnoText())", errno: errno)
      }
      inputCount += got
    }
    return true
  }

  // MARK: gzip

  private func startGzip() throws(StreamError) {
    let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    stream.initialize(to: z_stream())
    guard crisp_inflate_init_gzip(stream) == Z_OK else {
      stream.deallocate()
      throw StreamError(message: "cannot initialise zlib", errno: ENOMEM)
    }
    gzip = stream
    output = .allocate(byteCount: outputCapacity, alignment: 64)
  }

  private func nextGzip() throws(StreamError) -> UnsafeRawBufferPointer {
    guard let stream = gzip, let output else { return UnsafeRawBufferPointer(start: nil, count: 0) }
    while !finished {
      if !inMember {
        // Between members: the stream ends, or another member starts.
        if members > 0, try !fill(atLeast: 1) {
          finished = true
          break
        }
        guard try fill(atLeast: 2),
          input.load(fromByteOffset: inputStart, as: UInt8.self) == 0x1f,
          input.load(fromByteOffset: inputStart + 1, as: UInt8.self) == 0x8b
        else {
          throw StreamError(message: "data after the end of the gzip stream")
        }
        if members > 0 { inflateReset(stream) }
        members += 1
        inMember = true
      }
      if inputCount == 0, try !fill(atLeast: 1) {
        throw StreamError(message: "truncated gzip stream")
      }
      stream.pointee.next_in = (input + inputStart).assumingMemoryBound(to: Bytef.self)
      stream.pointee.avail_in = uInt(inputCount)
      stream.pointee.next_out = output.assumingMemoryBound(to: Bytef.self)
      stream.pointee.avail_out = uInt(outputCapacity)
      let status = inflate(stream, Z_NO_FLUSH)
      let consumed = inputCount - Int(stream.pointee.avail_in)
      let produced = outputCapacity - Int(stream.pointee.avail_out)
      inputStart += consumed
      inputCount -= consumed
      switch status {
      case Z_OK:
        break
      case Z_STREAM_END:
        inMember = false
      case Z_BUF_ERROR where consumed > 0 || produced > 0:
        break
      default:
        let detail = stream.pointee.msg.map { String(cString: $0) } ?? "zlib error \(status)"
        throw StreamError(message: "corrupt gzip stream: \(detail)")
      }
      if produced > 0 { return UnsafeRawBufferPointer(start: output, count: produced) }
    }
    return UnsafeRawBufferPointer(start: nil, count: 0)
  }

  // MARK: zstd or none, through libarchive

  private func startLibarchive(zstd: Bool = true) throws(StreamError) {
    guard let decompressor = archive_read_new() else {
      throw StreamError(message: "cannot allocate a libarchive reader", errno: ENOMEM)
    }
    self.decompressor = decompressor
    var status = zstd ? archive_read_support_filter_zstd(decompressor) : ARCHIVE_OK
    if status == ARCHIVE_OK { status = archive_read_support_format_raw(decompressor) }
    if status == ARCHIVE_OK {
      status = archive_read_open(decompressor, Unmanaged.passUnretained(self).toOpaque(), nil, readRaw, nil)
    }
    if status == ARCHIVE_OK {
      var rawEntry: OpaquePointer? = nil
      status = archive_read_next_header(decompressor, &rawEntry)
    }
    guard status == ARCHIVE_OK else {
      throw StreamError(message: Self.errorMessage(decompressor))
    }
    // libarchive bids its filters again on what one produced: zstd inside zstd would be
    // unwrapped level after level (a few KB of nested frames become gigabytes). A layer
    // is compressed once: "none", or "none" under one zstd.
    guard archive_filter_count(decompressor) <= 2 else {
      throw StreamError(message: "the layer is compressed more than once (nested zstd); crisp unwraps one level")
    }
  }

  static func errorMessage(_ archive: OpaquePointer) -> String {
    archive_error_string(archive).map { String(cString: $0) } ?? "unknown libarchive error"
  }

  /// For libarchive's read callback: the bytes already read (while looking at the magic),
  /// then the descriptor's, chunk by chunk.
  fileprivate func nextRaw() throws(StreamError) -> UnsafeRawBufferPointer {
    if inputCount == 0 {
      inputStart = 0
      if try !fill(atLeast: 1) { return UnsafeRawBufferPointer(start: nil, count: 0) }
    }
    let block = UnsafeRawBufferPointer(start: input + inputStart, count: inputCount)
    inputStart += inputCount
    inputCount = 0
    return block
  }
}

/// The zstd/none decompressor's read callback.
private func readRaw(
  _ archive: OpaquePointer?, _ context: UnsafeMutableRawPointer?, _ buffer: UnsafeMutablePointer<UnsafeRawPointer?>?
) -> la_ssize_t {
  guard let context, let buffer else { return -1 }
  let stream = Unmanaged<LayerStream>.fromOpaque(context).takeUnretainedValue()
  do {
    let block = try stream.nextRaw()
    buffer.pointee = block.baseAddress
    return block.count
  } catch {
    crisp_archive_set_error(archive, error.errno, error.message)
    return -1
  }
}
