import CZlib
import NIOCore

/// One direction's zlib stream for SPDY/3 header blocks: the whole connection shares it, each
/// block ends with a sync flush, and the SPDY/3 dictionary is preset. Owned by one channel
/// handler, so used from one event loop only.
final class SPDYHeaderCompressor {
  private let stream: UnsafeMutablePointer<z_stream>

  init() {
    stream = .allocate(capacity: 1)
    stream.initialize(to: z_stream())
    let status = crisp_deflate_init(stream, Z_DEFAULT_COMPRESSION)
    precondition(status == Z_OK, "deflateInit: \(status)")  // only fails without memory
    let dictStatus = spdy3Dictionary.withUnsafeBufferPointer {
      deflateSetDictionary(stream, $0.baseAddress, uInt($0.count))
    }
    precondition(dictStatus == Z_OK, "deflateSetDictionary: \(dictStatus)")
  }

  deinit {
    deflateEnd(stream)
    stream.deallocate()
  }

  /// Compresses `block` and appends the bytes up to a sync flush point to `output`.
  func compress(_ block: ByteBuffer, into output: inout ByteBuffer) {
    var input = block
    input.withUnsafeMutableReadableBytes { inBytes in
      stream.pointee.next_in = inBytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
      stream.pointee.avail_in = uInt(inBytes.count)
      repeat {
        output.reserveCapacity(minimumWritableBytes: 256 + inBytes.count / 2)
        let written = output.writeWithUnsafeMutableBytes(minimumWritableBytes: 64) { outBytes in
          stream.pointee.next_out = outBytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
          stream.pointee.avail_out = uInt(outBytes.count)
          let status = deflate(stream, Z_SYNC_FLUSH)
          precondition(status == Z_OK || status == Z_BUF_ERROR, "deflate: \(status)")
          return outBytes.count - Int(stream.pointee.avail_out)
        }
        // Output space left over means zlib has flushed everything it had.
        if stream.pointee.avail_out != 0 && stream.pointee.avail_in == 0 { break }
        if written == 0 && stream.pointee.avail_in == 0 { break }
      } while true
      stream.pointee.next_in = nil
    }
  }
}

final class SPDYHeaderDecompressor {
  private let stream: UnsafeMutablePointer<z_stream>
  /// Decompressed size limit of one block: headers are small; a zlib bomb is not.
  let maxBlockSize: Int

  init(maxBlockSize: Int = 256 * 1024) {
    self.maxBlockSize = maxBlockSize
    stream = .allocate(capacity: 1)
    stream.initialize(to: z_stream())
    let status = crisp_inflate_init(stream)
    precondition(status == Z_OK, "inflateInit: \(status)")
  }

  deinit {
    inflateEnd(stream)
    stream.deallocate()
  }

  /// Decompresses one block (all of `block`, which ends at a sync flush point).
  func decompress(_ block: ByteBuffer) throws -> ByteBuffer {
    var input = block
    var output = ByteBuffer()
    if input.readableBytes == 0 { return output }
    try input.withUnsafeMutableReadableBytes { inBytes in
      stream.pointee.next_in = inBytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
      stream.pointee.avail_in = uInt(inBytes.count)
      defer { stream.pointee.next_in = nil }
      while true {
        var status: Int32 = Z_OK
        output.reserveCapacity(minimumWritableBytes: 1024)
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: 1024) { outBytes in
          stream.pointee.next_out = outBytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
          stream.pointee.avail_out = uInt(outBytes.count)
          status = inflate(stream, Z_SYNC_FLUSH)
          return outBytes.count - Int(stream.pointee.avail_out)
        }
        if status == Z_NEED_DICT {
          let dictStatus = spdy3Dictionary.withUnsafeBufferPointer {
            inflateSetDictionary(stream, $0.baseAddress, uInt($0.count))
          }
          guard dictStatus == Z_OK else {
            throw SPDYProtocolError.compression("the peer's header block uses another dictionary")
          }
          continue
        }
        guard status == Z_OK || status == Z_BUF_ERROR else {
          let message = stream.pointee.msg.map { String(cString: $0) } ?? "status \(status)"
          throw SPDYProtocolError.compression(message)
        }
        guard output.readableBytes <= maxBlockSize else {
          throw SPDYProtocolError.badHeaderBlock("decompresses to more than \(maxBlockSize) bytes")
        }
        if stream.pointee.avail_in == 0 && stream.pointee.avail_out != 0 { break }
        if status == Z_BUF_ERROR && stream.pointee.avail_in == 0 { break }
      }
    }
    return output
  }
}
