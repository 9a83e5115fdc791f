import CrispCore
import NIOCore

/// Channel numbers of the session framing on an exec/attach socket (`SessionFraming`
/// in CrispCore, the contract with the shims).
public typealias SessionChannel = SessionFraming.Channel

/// The largest payload of one session frame; a larger one is a protocol error.
public let maxSessionFramePayload = SessionFraming.maxPayload

public struct SessionFrame: Sendable, Equatable {
  public var channel: UInt8
  public var payload: ByteBuffer

  public init(channel: UInt8, payload: ByteBuffer) {
    self.channel = channel
    self.payload = payload
  }

  public init(_ channel: SessionChannel, payload: ByteBuffer = ByteBuffer()) {
    self.init(channel: channel.rawValue, payload: payload)
  }

  public func write(into buffer: inout ByteBuffer) {
    buffer.writeInteger(channel)
    buffer.writeInteger(UInt32(payload.readableBytes))
    var payload = payload
    buffer.writeBuffer(&payload)
  }
}

public enum SessionFramingError: Error, Equatable, CustomStringConvertible {
  case payloadTooLarge(Int)
  public var description: String {
    switch self {
    case .payloadTooLarge(let length): "session frame of \(length) bytes exceeds \(maxSessionFramePayload)"
    }
  }
}

/// Cuts the backend's byte stream into frames.
public struct SessionFrameDecoder: ByteToMessageDecoder {
  public typealias InboundOut = SessionFrame

  public init() {}

  public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
    guard let frame = try Self.decodeFrame(&buffer) else { return .needMoreData }
    context.fireChannelRead(wrapInboundOut(frame))
    return .continue
  }

  public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
    -> DecodingState
  {
    try decode(context: context, buffer: &buffer)
  }

  public static func decodeFrame(_ buffer: inout ByteBuffer) throws -> SessionFrame? {
    guard let channel = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
      let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self)
    else { return nil }
    guard Int(length) <= maxSessionFramePayload else { throw SessionFramingError.payloadTooLarge(Int(length)) }
    guard buffer.readableBytes >= SessionFraming.headerSize + Int(length) else { return nil }
    buffer.moveReaderIndex(forwardBy: SessionFraming.headerSize)
    return SessionFrame(channel: channel, payload: buffer.readSlice(length: Int(length))!)
  }
}

public final class SessionFrameEncoder: ChannelOutboundHandler {
  public typealias OutboundIn = SessionFrame
  public typealias OutboundOut = ByteBuffer

  public init() {}

  public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    let frame = unwrapOutboundIn(data)
    var header = context.channel.allocator.buffer(capacity: SessionFraming.headerSize)
    header.writeInteger(frame.channel)
    header.writeInteger(UInt32(frame.payload.readableBytes))
    if frame.payload.readableBytes == 0 {
      context.write(wrapOutboundOut(header), promise: promise)
    } else {
      context.write(wrapOutboundOut(header), promise: nil)
      context.write(wrapOutboundOut(frame.payload), promise: promise)
    }
  }
}
