import CZlib
import Foundation
import NIOCore
import NIOEmbedded
import XCTest

@testable import Streaming

final class SPDYFramingTests: XCTestCase {
  private func bytes(_ hex: String) -> [UInt8] {
    var result: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
      let next = hex.index(index, offsetBy: 2)
      result.append(UInt8(hex[index..<next], radix: 16)!)
      index = next
    }
    return result
  }

  private func encode(_ frame: SPDYFrame, _ compressor: SPDYHeaderCompressor) -> ByteBuffer {
    var buffer = ByteBuffer()
    SPDYFrameEncoder.encode(frame, compressor: compressor, into: &buffer)
    return buffer
  }

  /// The DICTID every SPDY/3 implementation puts in its first header block's zlib header.
  func testDictionaryIsTheSPDY3One() {
    XCTAssertEqual(spdy3Dictionary.count, 1423)
    let adler = spdy3Dictionary.withUnsafeBufferPointer { adler32(1, $0.baseAddress, uInt($0.count)) }
    XCTAssertEqual(adler, 0xe3c6_a7c2)
    var block = ByteBuffer()
    SPDYHeaderBlock.encode(SPDYHeaders([("streamtype", "error")]), into: &block)
    var out = ByteBuffer()
    SPDYHeaderCompressor().compress(block, into: &out)
    XCTAssertEqual(Array(out.readableBytesView.dropFirst(2).prefix(4)), [0xe3, 0xc6, 0xa7, 0xc2])
  }

  /// A SYN_STREAM whose header block CPython's zlib compressed (level 9, SPDY/3 dictionary,
  /// sync flush): an encoder that shares no code with ours.
  func testKnownAnswerSynStreamFromAnotherEncoder() throws {
    let block = bytes("78f9e3c6a7c202e50e703a2b294a4dcc851625c0149b920f2e8881e5721198b630b03000000000ffff")
    var frame = ByteBuffer(bytes: [0x80, 0x03, 0x00, 0x01, 0x01, 0x00, 0x00, UInt8(10 + block.count)])
    frame.writeBytes([0, 0, 0, 3, 0, 0, 0, 0, 0x60, 0])
    frame.writeBytes(block)
    let decoded = try SPDYFrameDecoder().decodeFrame(&frame)
    XCTAssertEqual(
      decoded,
      .synStream(
        .init(streamID: 3, priority: 3, fin: true, headers: SPDYHeaders([("streamtype", "stdout"), ("port", "8080")]))))
    XCTAssertEqual(frame.readableBytes, 0)
  }

  func testFixedLayouts() {
    let compressor = SPDYHeaderCompressor()
    var payload = ByteBuffer()
    payload.writeString("hi")
    XCTAssertEqual(
      Array(encode(.data(streamID: 5, fin: true, payload: payload), compressor).readableBytesView),
      bytes("0000000501000002" + "6869"))
    XCTAssertEqual(Array(encode(.ping(id: 1), compressor).readableBytesView), bytes("800300060000000400000001"))
    XCTAssertEqual(
      Array(encode(.rstStream(streamID: 7, status: .cancel), compressor).readableBytesView),
      bytes("80030003000000080000000700000005"))
    XCTAssertEqual(
      Array(encode(.goAway(lastGoodStreamID: 9, status: .ok), compressor).readableBytesView),
      bytes("80030007000000080000000900000000"))
    XCTAssertEqual(
      Array(encode(.windowUpdate(streamID: 0, delta: 0x10000), compressor).readableBytesView),
      bytes("80030009000000080000000000010000"))
    XCTAssertEqual(
      Array(
        encode(.settings(clearPersisted: false, entries: [.init(id: 7, value: 0x20000)]), compressor).readableBytesView),
      bytes("800300040000000c00000001" + "0000000700020000"))
  }

  /// Every frame type survives encode/decode, several header blocks in a row sharing one
  /// zlib stream per direction as on a real connection.
  func testRoundTrips() throws {
    let compressor = SPDYHeaderCompressor()
    let decoder = SPDYFrameDecoder()
    var data = ByteBuffer()
    data.writeRepeatingByte(0x41, count: 70000)
    let frames: [SPDYFrame] = [
      .synStream(
        .init(
          streamID: 1, associatedStreamID: 0, priority: 7, slot: 0, fin: false, unidirectional: true,
          headers: SPDYHeaders([("streamtype", "stdin"), ("x-many", "a\0b")]))),
      .synStream(.init(streamID: 3, headers: SPDYHeaders([("streamtype", "stdout")]))),
      .synReply(streamID: 1, fin: false, headers: SPDYHeaders()),
      .synReply(streamID: 3, fin: true, headers: SPDYHeaders([("status", "200")])),
      .headers(streamID: 3, fin: true, headers: SPDYHeaders([("trailer", "x")])),
      .rstStream(streamID: 3, status: .flowControlError),
      .settings(clearPersisted: true, entries: [.init(flags: 1, id: 4, value: 100), .init(id: 7, value: 65536)]),
      .ping(id: 2),
      .goAway(lastGoodStreamID: 3, status: .protocolError),
      .windowUpdate(streamID: 1, delta: 1),
      .data(streamID: 1, fin: false, payload: data),
      .data(streamID: 1, fin: true, payload: ByteBuffer()),
    ]
    var wire = ByteBuffer()
    for frame in frames {
      var one = encode(frame, compressor)
      wire.writeBuffer(&one)
    }
    var decoded: [SPDYFrame] = []
    while let frame = try decoder.decodeFrame(&wire) { decoded.append(frame) }
    XCTAssertEqual(wire.readableBytes, 0)
    // "a\0b" is two values of one header on the wire.
    var expected = frames
    expected[0] = .synStream(
      .init(
        streamID: 1, priority: 7, unidirectional: true,
        headers: SPDYHeaders([("streamtype", "stdin"), ("x-many", "a"), ("x-many", "b")])))
    XCTAssertEqual(decoded, expected)
  }

  func testPartialFrameWaitsForMoreBytes() throws {
    var whole = encode(.ping(id: 5), SPDYHeaderCompressor())
    let decoder = SPDYFrameDecoder()
    var part = whole.readSlice(length: 7)!
    XCTAssertNil(try decoder.decodeFrame(&part))
    XCTAssertEqual(part.readableBytes, 7)
    part.writeBuffer(&whole)
    XCTAssertEqual(try decoder.decodeFrame(&part), .ping(id: 5))
  }

  func testMalformedFramesAreRefused() {
    func decode(_ hex: String, maxFrameLength: Int = 1 << 20) -> Error? {
      var buffer = ByteBuffer(bytes: bytes(hex))
      do {
        _ = try SPDYFrameDecoder(maxFrameLength: maxFrameLength).decodeFrame(&buffer)
        return nil
      } catch { return error }
    }
    XCTAssertEqual(decode("8002000600000004" + "00000001") as? SPDYProtocolError, .unsupportedVersion(2))
    XCTAssertEqual(
      decode("8003000300000004" + "00000001") as? SPDYProtocolError, .badLength(type: "RST_STREAM", length: 4))
    XCTAssertEqual(
      decode("8003000400000008" + "0000000500000000") as? SPDYProtocolError, .badLength(type: "SETTINGS", length: 8))
    XCTAssertEqual(
      decode("00000001000fffff", maxFrameLength: 1000) as? SPDYProtocolError,
      .frameTooLarge(type: "data", length: 0xfffff, limit: 1000))
    // A SYN_STREAM whose header block is not zlib at all.
    XCTAssertNotNil(decode("800300010000000e" + "0000000100000000" + "0000" + "01020304") as? SPDYProtocolError)
  }

  func testHeaderBlockLiesAreRefused() {
    func parse(_ raw: [UInt8]) -> Error? {
      var buffer = ByteBuffer(bytes: raw)
      do {
        _ = try SPDYHeaderBlock.decode(&buffer)
        return nil
      } catch { return error }
    }
    XCTAssertNotNil(parse([0xff, 0xff, 0xff, 0xff]))  // 4 billion pairs in 0 bytes
    XCTAssertNotNil(parse([0, 0, 0, 1, 0, 0, 0, 9, 0x61]))  // name longer than the block
    XCTAssertNotNil(parse([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]))  // empty name
    XCTAssertNotNil(
      parse([0, 0, 0, 2, 0, 0, 0, 1, 0x61, 0, 0, 0, 0, 0, 0, 0, 1, 0x61, 0, 0, 0, 0]))  // duplicate name
    XCTAssertNil(parse([0, 0, 0, 1, 0, 0, 0, 1, 0x61, 0, 0, 0, 0]))
  }

  func testSessionFraming() throws {
    var payload = ByteBuffer()
    payload.writeString("{\"exitCode\":3}")
    var wire = ByteBuffer()
    SessionFrame(.end, payload: payload).write(into: &wire)
    XCTAssertEqual(Array(wire.readableBytesView.prefix(5)), [3, 0, 0, 0, 14])
    XCTAssertEqual(try SessionFrameDecoder.decodeFrame(&wire), SessionFrame(.end, payload: payload))
    var huge = ByteBuffer(bytes: [1, 0x00, 0x10, 0x00, 0x01])
    XCTAssertThrowsError(try SessionFrameDecoder.decodeFrame(&huge))
  }

  func testResizeParser() {
    var parser = ResizeParser()
    XCTAssertEqual(parser.feed(Array(#"{"Width":80,"He"#.utf8)), [])
    XCTAssertEqual(
      parser.feed(Array(#"ight":24}"#.utf8) + Array("\n{\"width\":100,\"height\":30}\n".utf8)),
      [TerminalSize(width: 80, height: 24), TerminalSize(width: 100, height: 30)])
    XCTAssertEqual(
      parser.feed(Array(#"{"Width":-1,"Height":5}{"Width":1,"Height":2}"#.utf8)), [TerminalSize(width: 1, height: 2)])
  }

  func testStatusJSON() throws {
    let status =
      try JSONSerialization.jsonObject(with: Data(RemoteCommandStatus.exitCode(3).json.utf8)) as! [String: Any]
    XCTAssertEqual(status["status"] as? String, "Failure")
    XCTAssertEqual(status["reason"] as? String, "NonZeroExitCode")
    let causes = (status["details"] as? [String: Any])?["causes"] as? [[String: Any]]
    XCTAssertEqual(causes?.first?["reason"] as? String, "ExitCode")
    XCTAssertEqual(causes?.first?["message"] as? String, "3")
    let failure = try JSONSerialization.jsonObject(
      with: Data(RemoteCommandStatus.failure(message: "a \"b\"").json.utf8))
    XCTAssertEqual((failure as? [String: Any])?["message"] as? String, "a \"b\"")
  }
}
