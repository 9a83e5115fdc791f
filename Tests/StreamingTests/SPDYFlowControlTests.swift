import Logging
import NIOCore
import NIOEmbedded
import XCTest

@testable import Streaming

/// The connection handler's flow control and stream bookkeeping, on an EmbeddedChannel.
final class SPDYFlowControlTests: XCTestCase {
  private final class Recorder: SPDYStreamDelegate {
    var opened: [UInt32] = []
    var data: [UInt32: Int] = [:]
    var finished: [UInt32] = []
    var resets: [UInt32] = []
    var closed = false
    func spdyStreamOpened(_ streamID: UInt32, headers: SPDYHeaders, connection: SPDYConnectionHandler) -> Bool {
      opened.append(streamID)
      return headers["streamtype"] != "refuse"
    }
    func spdyStreamData(_ streamID: UInt32, data: ByteBuffer) { self.data[streamID, default: 0] += data.readableBytes }
    func spdyStreamRemoteFinished(_ streamID: UInt32) { finished.append(streamID) }
    func spdyStreamReset(_ streamID: UInt32) { resets.append(streamID) }
    func spdyWritable() {}
    func spdyConnectionClosed() { closed = true }
  }

  private func setUp(_ recorder: Recorder) throws -> (EmbeddedChannel, SPDYConnectionHandler) {
    let handler = SPDYConnectionHandler(logger: Logger(label: "test"))
    handler.delegate = recorder
    let channel = EmbeddedChannel(handler: handler)
    return (channel, handler)
  }

  private func outbound(_ channel: EmbeddedChannel) throws -> [SPDYFrame] {
    var frames: [SPDYFrame] = []
    while let frame = try channel.readOutbound(as: SPDYFrame.self) { frames.append(frame) }
    return frames
  }

  private func sentBytes(_ frames: [SPDYFrame], stream: UInt32) -> Int {
    frames.reduce(0) {
      if case .data(stream, _, let payload) = $1 { return $0 + payload.readableBytes }
      return $0
    }
  }

  func testSynStreamGetsReplyAndBadIDsAreReset() throws {
    let recorder = Recorder()
    let (channel, _) = try setUp(recorder)
    try channel.writeInbound(SPDYFrame.synStream(.init(streamID: 1, headers: SPDYHeaders([("streamtype", "stdout")]))))
    XCTAssertEqual(try outbound(channel), [.synReply(streamID: 1, fin: false, headers: SPDYHeaders())])
    // Even (server) IDs and IDs that do not increase are protocol errors.
    try channel.writeInbound(SPDYFrame.synStream(.init(streamID: 2, headers: SPDYHeaders())))
    try channel.writeInbound(SPDYFrame.synStream(.init(streamID: 1, headers: SPDYHeaders())))
    XCTAssertEqual(
      try outbound(channel),
      [.rstStream(streamID: 2, status: .protocolError), .rstStream(streamID: 1, status: .protocolError)])
    try channel.writeInbound(SPDYFrame.synStream(.init(streamID: 5, headers: SPDYHeaders([("streamtype", "refuse")]))))
    XCTAssertEqual(try outbound(channel), [.rstStream(streamID: 5, status: .refusedStream)])
    // Data for a stream that never opened.
    try channel.writeInbound(SPDYFrame.data(streamID: 9, fin: false, payload: ByteBuffer(bytes: [1])))
    XCTAssertEqual(try outbound(channel), [.rstStream(streamID: 9, status: .invalidStream)])
    try channel.writeInbound(SPDYFrame.ping(id: 7))
    XCTAssertEqual(try outbound(channel), [.ping(id: 7)])
    XCTAssertEqual(recorder.opened, [1, 5])
    _ = try channel.finish()
    XCTAssertTrue(recorder.closed)
  }

  /// Without a sign of flow control from the client (spdystream sends none) output is not held
  /// back; once the client sends WINDOW_UPDATE, its windows are honoured.
  func testSendWindowsOnceTheClientSpeaksFlowControl() throws {
    let recorder = Recorder()
    let (channel, handler) = try setUp(recorder)
    try channel.writeInbound(SPDYFrame.synStream(.init(streamID: 1, headers: SPDYHeaders([("streamtype", "stdout")]))))
    _ = try outbound(channel)
    var chunk = ByteBuffer()
    chunk.writeRepeatingByte(7, count: 100_000)
    handler.send(1, chunk)
    XCTAssertEqual(sentBytes(try outbound(channel), stream: 1), 100_000)

    try channel.writeInbound(SPDYFrame.synStream(.init(streamID: 3, headers: SPDYHeaders([("streamtype", "stdout")]))))
    _ = try outbound(channel)
    // The client's session window is now 64 KiB + 1, less the 100 000 bytes already sent:
    // nothing more may go until it grants more.
    try channel.writeInbound(SPDYFrame.windowUpdate(streamID: 0, delta: 1))
    handler.send(3, chunk)
    XCTAssertEqual(sentBytes(try outbound(channel), stream: 3), 0)
    XCTAssertFalse(handler.canSend(3))
    try channel.writeInbound(SPDYFrame.windowUpdate(streamID: 0, delta: 100_000))
    // Session window: 65537 - 100000 + 100000 = 65537; stream window 65536.
    XCTAssertEqual(sentBytes(try outbound(channel), stream: 3), 65536)
    try channel.writeInbound(SPDYFrame.windowUpdate(streamID: 3, delta: 50_000))
    XCTAssertEqual(sentBytes(try outbound(channel), stream: 3), 1)
    try channel.writeInbound(SPDYFrame.windowUpdate(streamID: 0, delta: 50_000))
    XCTAssertEqual(sentBytes(try outbound(channel), stream: 3), 100_000 - 65537)
    XCTAssertTrue(handler.canSend(3))
    // A zero delta is a protocol error: GOAWAY and close.
    try channel.writeInbound(SPDYFrame.windowUpdate(streamID: 3, delta: 0))
    XCTAssertEqual(try outbound(channel).last, .goAway(lastGoodStreamID: 3, status: .protocolError))
  }

  /// Data the client sends is acknowledged with WINDOW_UPDATE for the stream and the session.
  func testReceiveWindowIsReturned() throws {
    let recorder = Recorder()
    let (channel, _) = try setUp(recorder)
    try channel.writeInbound(SPDYFrame.synStream(.init(streamID: 1, headers: SPDYHeaders([("streamtype", "stdin")]))))
    _ = try outbound(channel)
    var chunk = ByteBuffer()
    chunk.writeRepeatingByte(1, count: 20_000)
    for _ in 0..<2 { try channel.writeInbound(SPDYFrame.data(streamID: 1, fin: false, payload: chunk)) }
    XCTAssertEqual(
      try outbound(channel), [.windowUpdate(streamID: 1, delta: 40_000), .windowUpdate(streamID: 0, delta: 40_000)])
    try channel.writeInbound(SPDYFrame.data(streamID: 1, fin: true, payload: chunk))
    XCTAssertEqual(recorder.data[1], 60_000)
    XCTAssertEqual(recorder.finished, [1])
    // Data after FIN.
    try channel.writeInbound(SPDYFrame.data(streamID: 1, fin: false, payload: chunk))
    XCTAssertEqual(try outbound(channel), [.rstStream(streamID: 1, status: .streamAlreadyClosed)])
  }
}
