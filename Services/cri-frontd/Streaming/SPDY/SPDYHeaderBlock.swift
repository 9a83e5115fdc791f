import NIOCore

/// The uncompressed form of a SPDY/3 header block: a 32-bit pair count, then for each pair a
/// 32-bit name length, the name, a 32-bit value length, the value (all big-endian).
enum SPDYHeaderBlock {
  static func encode(_ headers: SPDYHeaders, into buffer: inout ByteBuffer) {
    buffer.writeInteger(UInt32(headers.pairs.count))
    for pair in headers.pairs {
      buffer.writeInteger(UInt32(pair.name.utf8.count))
      buffer.writeString(pair.name)
      buffer.writeInteger(UInt32(pair.value.utf8.count))
      buffer.writeString(pair.value)
    }
  }

  /// Parses a whole decompressed block. Names must be non-empty and unique (the draft makes
  /// duplicates a protocol error); NUL-separated values become one pair each.
  static func decode(_ buffer: inout ByteBuffer) throws -> SPDYHeaders {
    guard let count = buffer.readInteger(as: UInt32.self) else {
      throw SPDYProtocolError.badHeaderBlock("no pair count")
    }
    // Each pair takes at least 8 bytes: a count beyond that is a lie, refused before allocating.
    guard Int(count) <= buffer.readableBytes / 8 else {
      throw SPDYProtocolError.badHeaderBlock("\(count) pairs announced in \(buffer.readableBytes) bytes")
    }
    var headers = SPDYHeaders()
    var seen = Set<String>()
    for _ in 0..<count {
      let name = try readString(&buffer, what: "name")
      guard !name.isEmpty else { throw SPDYProtocolError.badHeaderBlock("empty header name") }
      let lower = name.lowercased()
      guard seen.insert(lower).inserted else { throw SPDYProtocolError.badHeaderBlock("duplicate header \(lower)") }
      let value = try readString(&buffer, what: "value of \(lower)")
      for part in value.split(separator: "\0", omittingEmptySubsequences: false) {
        headers.pairs.append((name: lower, value: String(part)))
      }
    }
    guard buffer.readableBytes == 0 else {
      throw SPDYProtocolError.badHeaderBlock("\(buffer.readableBytes) bytes after the last pair")
    }
    return headers
  }

  private static func readString(_ buffer: inout ByteBuffer, what: String) throws -> String {
    guard let length = buffer.readInteger(as: UInt32.self), Int(length) <= buffer.readableBytes,
      let bytes = buffer.readSlice(length: Int(length))
    else { throw SPDYProtocolError.badHeaderBlock("truncated \(what)") }
    guard let string = String(validating: bytes.readableBytesView, as: UTF8.self) else {
      throw SPDYProtocolError.badHeaderBlock("\(what) is not UTF-8")
    }
    return string
  }
}
