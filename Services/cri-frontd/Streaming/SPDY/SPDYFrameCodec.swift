import NIOCore

/// Reads SPDY/3 frames from bytes. Stateful only through the header decompressor: every header
/// block is decompressed, even of frames that are refused later, to keep the zlib stream in step.
public struct SPDYFrameDecoder: ByteToMessageDecoder {
  public typealias InboundOut = SPDYFrame

  /// The largest frame payload accepted: kubectl sends data in chunks of at most 32 KiB, and a
  /// frame is buffered whole before it is handled.
  public let maxFrameLength: Int
  private let decompressor: SPDYHeaderDecompressor

  public init(maxFrameLength: Int = 1 << 20) {
    self.maxFrameLength = maxFrameLength
    self.decompressor = SPDYHeaderDecompressor()
  }

  public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
    guard let frame = try decodeFrame(&buffer) else { return .needMoreData }
    context.fireChannelRead(wrapInboundOut(frame))
    return .continue
  }

  public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
    -> DecodingState
  {
    // A truncated frame at EOF is simply dropped: the connection is gone either way.
    try decode(context: context, buffer: &buffer)
  }

  /// Reads one whole frame, or nil (and nothing consumed) when more bytes are needed.
  public func decodeFrame(_ buffer: inout ByteBuffer) throws -> SPDYFrame? {
    guard let word0 = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
      let word1 = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt32.self)
    else { return nil }
    let flags = UInt8(word1 >> 24)
    let length = Int(word1 & 0x00ff_ffff)
    let isControl = word0 & 0x8000_0000 != 0
    if isControl {
      let version = UInt16((word0 >> 16) & 0x7fff)
      guard version == 3 else { throw SPDYProtocolError.unsupportedVersion(version) }
    }
    guard length <= maxFrameLength else {
      throw SPDYProtocolError.frameTooLarge(type: isControl ? "control" : "data", length: length, limit: maxFrameLength)
    }
    guard buffer.readableBytes >= 8 + length else { return nil }
    buffer.moveReaderIndex(forwardBy: 8)
    var payload = buffer.readSlice(length: length)!
    if !isControl {
      return .data(streamID: word0 & 0x7fff_ffff, fin: flags & SPDYFlag.fin != 0, payload: payload)
    }
    let type = UInt16(word0 & 0xffff)
    switch type {
    case SPDYControlType.synStream:
      guard length >= 10 else { throw SPDYProtocolError.badLength(type: "SYN_STREAM", length: length) }
      let streamID = payload.readInteger(as: UInt32.self)! & 0x7fff_ffff
      let associated = payload.readInteger(as: UInt32.self)! & 0x7fff_ffff
      let priority = payload.readInteger(as: UInt8.self)! >> 5
      let slot = payload.readInteger(as: UInt8.self)!
      let headers = try decodeHeaders(payload)
      return .synStream(
        .init(
          streamID: streamID, associatedStreamID: associated, priority: priority, slot: slot,
          fin: flags & SPDYFlag.fin != 0, unidirectional: flags & SPDYFlag.unidirectional != 0, headers: headers))
    case SPDYControlType.synReply, SPDYControlType.headers:
      let name = type == SPDYControlType.synReply ? "SYN_REPLY" : "HEADERS"
      guard length >= 4 else { throw SPDYProtocolError.badLength(type: name, length: length) }
      let streamID = payload.readInteger(as: UInt32.self)! & 0x7fff_ffff
      let headers = try decodeHeaders(payload)
      let fin = flags & SPDYFlag.fin != 0
      return type == SPDYControlType.synReply
        ? .synReply(streamID: streamID, fin: fin, headers: headers)
        : .headers(streamID: streamID, fin: fin, headers: headers)
    case SPDYControlType.rstStream:
      guard length == 8 else { throw SPDYProtocolError.badLength(type: "RST_STREAM", length: length) }
      let streamID = payload.readInteger(as: UInt32.self)! & 0x7fff_ffff
      return .rstStream(streamID: streamID, status: SPDYResetStatus(code: payload.readInteger()!))
    case SPDYControlType.settings:
      guard length >= 4, let count = payload.readInteger(as: UInt32.self), Int(count) * 8 == length - 4 else {
        throw SPDYProtocolError.badLength(type: "SETTINGS", length: length)
      }
      var entries: [SPDYSetting] = []
      for _ in 0..<count {
        let idWord = payload.readInteger(as: UInt32.self)!
        entries.append(
          SPDYSetting(
            flags: UInt8(idWord >> 24), id: idWord & 0x00ff_ffff, value: payload.readInteger(as: UInt32.self)!))
      }
      return .settings(clearPersisted: flags & SPDYFlag.clearSettings != 0, entries: entries)
    case SPDYControlType.ping:
      guard length == 4 else { throw SPDYProtocolError.badLength(type: "PING", length: length) }
      return .ping(id: payload.readInteger()!)
    case SPDYControlType.goAway:
      guard length == 8 else { throw SPDYProtocolError.badLength(type: "GOAWAY", length: length) }
      let last = payload.readInteger(as: UInt32.self)! & 0x7fff_ffff
      return .goAway(lastGoodStreamID: last, status: SPDYGoAwayStatus(code: payload.readInteger()!))
    case SPDYControlType.windowUpdate:
      guard length == 8 else { throw SPDYProtocolError.badLength(type: "WINDOW_UPDATE", length: length) }
      let streamID = payload.readInteger(as: UInt32.self)! & 0x7fff_ffff
      return .windowUpdate(streamID: streamID, delta: payload.readInteger(as: UInt32.self)! & 0x7fff_ffff)
    default:
      return .unknownControl(type: type, flags: flags, payload: payload)
    }
  }

  private func decodeHeaders(_ compressed: ByteBuffer) throws -> SPDYHeaders {
    var block = try decompressor.decompress(compressed)
    return try SPDYHeaderBlock.decode(&block)
  }
}

/// Writes SPDY/3 frames. Data frames go out as a separate 8-byte header and the payload
/// itself (no copy of the payload).
public final class SPDYFrameEncoder: ChannelOutboundHandler {
  public typealias OutboundIn = SPDYFrame
  public typealias OutboundOut = ByteBuffer

  private let compressor = SPDYHeaderCompressor()

  public init() {}

  public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    let frame = unwrapOutboundIn(data)
    if case .data(let streamID, let fin, let payload) = frame {
      var header = context.channel.allocator.buffer(capacity: 8)
      SPDYFrameEncoder.writeDataHeader(streamID: streamID, fin: fin, length: payload.readableBytes, into: &header)
      if payload.readableBytes == 0 {
        context.write(wrapOutboundOut(header), promise: promise)
      } else {
        context.write(wrapOutboundOut(header), promise: nil)
        context.write(wrapOutboundOut(payload), promise: promise)
      }
      return
    }
    var buffer = context.channel.allocator.buffer(capacity: 64)
    SPDYFrameEncoder.encode(frame, compressor: compressor, into: &buffer)
    context.write(wrapOutboundOut(buffer), promise: promise)
  }

  static func writeDataHeader(streamID: UInt32, fin: Bool, length: Int, into buffer: inout ByteBuffer) {
    precondition(length <= 0x00ff_ffff, "data frame too long: \(length)")
    buffer.writeInteger(streamID & 0x7fff_ffff)
    buffer.writeInteger(UInt32(fin ? SPDYFlag.fin : 0) << 24 | UInt32(length))
  }

  /// Serializes any frame (header blocks compressed with `compressor`, whose state advances).
  static func encode(_ frame: SPDYFrame, compressor: SPDYHeaderCompressor, into buffer: inout ByteBuffer) {
    func control(_ type: UInt16, flags: UInt8, _ body: (inout ByteBuffer) -> Void) {
      var payload = ByteBuffer()
      body(&payload)
      buffer.writeInteger(UInt32(0x8000_0000) | UInt32(3) << 16 | UInt32(type))
      buffer.writeInteger(UInt32(flags) << 24 | UInt32(payload.readableBytes))
      buffer.writeBuffer(&payload)
    }
    func headerBlock(_ headers: SPDYHeaders, _ out: inout ByteBuffer) {
      var raw = ByteBuffer()
      SPDYHeaderBlock.encode(headers, into: &raw)
      compressor.compress(raw, into: &out)
    }
    switch frame {
    case .data(let streamID, let fin, var payload):
      writeDataHeader(streamID: streamID, fin: fin, length: payload.readableBytes, into: &buffer)
      buffer.writeBuffer(&payload)
    case .synStream(let syn):
      let flags = (syn.fin ? SPDYFlag.fin : 0) | (syn.unidirectional ? SPDYFlag.unidirectional : 0)
      control(SPDYControlType.synStream, flags: flags) {
        $0.writeInteger(syn.streamID & 0x7fff_ffff)
        $0.writeInteger(syn.associatedStreamID & 0x7fff_ffff)
        $0.writeInteger(UInt8((syn.priority & 0x7) << 5))
        $0.writeInteger(syn.slot)
        headerBlock(syn.headers, &$0)
      }
    case .synReply(let streamID, let fin, let headers):
      control(SPDYControlType.synReply, flags: fin ? SPDYFlag.fin : 0) {
        $0.writeInteger(streamID & 0x7fff_ffff)
        headerBlock(headers, &$0)
      }
    case .headers(let streamID, let fin, let headers):
      control(SPDYControlType.headers, flags: fin ? SPDYFlag.fin : 0) {
        $0.writeInteger(streamID & 0x7fff_ffff)
        headerBlock(headers, &$0)
      }
    case .rstStream(let streamID, let status):
      control(SPDYControlType.rstStream, flags: 0) {
        $0.writeInteger(streamID & 0x7fff_ffff)
        $0.writeInteger(status.code)
      }
    case .settings(let clear, let entries):
      control(SPDYControlType.settings, flags: clear ? SPDYFlag.clearSettings : 0) {
        $0.writeInteger(UInt32(entries.count))
        for entry in entries {
          $0.writeInteger(UInt32(entry.flags) << 24 | (entry.id & 0x00ff_ffff))
          $0.writeInteger(entry.value)
        }
      }
    case .ping(let id):
      control(SPDYControlType.ping, flags: 0) { $0.writeInteger(id) }
    case .goAway(let last, let status):
      control(SPDYControlType.goAway, flags: 0) {
        $0.writeInteger(last & 0x7fff_ffff)
        $0.writeInteger(status.code)
      }
    case .windowUpdate(let streamID, let delta):
      control(SPDYControlType.windowUpdate, flags: 0) {
        $0.writeInteger(streamID & 0x7fff_ffff)
        $0.writeInteger(delta & 0x7fff_ffff)
      }
    case .unknownControl(let type, let flags, var payload):
      control(type, flags: flags) { $0.writeBuffer(&payload) }
    }
  }
}
