import CrispCore
import Foundation
import Testing

@testable import CrispIPC

/// The trace context in the request envelope: optional, backward compatible both ways,
/// and untrusted (a malformed one is dropped, the request still answered).
@Suite struct IPCTraceContextTests {
  static let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

  struct Echo: IPCMethod {
    static let name = "test.echo"
    struct Request: Codable, Sendable { var text: String }
    struct Response: Codable, Sendable { var text: String }
  }

  /// The header of a peer built before the trace fields existed.
  struct OldRequestHeader: Decodable {
    var v: Int?
    var method: String?
  }

  func router() -> IPCRouter {
    var router = IPCRouter()
    router.register(Echo.self) { Echo.Response(text: $0.text) }
    return router
  }

  func echoed(_ request: String) async throws -> String? {
    let reply = try JSONSerialization.jsonObject(with: Data(await router().handle(Array(request.utf8))))
    return ((reply as? [String: Any])?["result"] as? [String: Any])?["text"] as? String
  }

  @Test func withoutTraceTheEnvelopeIsUnchanged() throws {
    let bytes = try WireCodec.encode(RequestEnvelope(method: Echo.name, params: Echo.Request(text: "a")))
    #expect(String(decoding: bytes, as: UTF8.self) == #"{"method":"test.echo","params":{"text":"a"},"v":1}"#)
    let header = try WireCodec.decode(RequestHeader.self, from: bytes)
    #expect(header.method == Echo.name && header.v == 1 && header.trace == nil)
  }

  @Test func roundTripWithTraceparentAndTracestate() throws {
    var envelope = RequestEnvelope(method: Echo.name, params: Echo.Request(text: "a"))
    envelope.traceparent = Self.traceparent
    envelope.tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    let bytes = try WireCodec.encode(envelope)
    let header = try WireCodec.decode(RequestHeader.self, from: bytes)
    #expect(header.trace?.traceparent == Self.traceparent)
    #expect(header.trace?.tracestate == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    // A peer that predates the fields reads the same message.
    let old = try WireCodec.decode(OldRequestHeader.self, from: bytes)
    #expect(old.v == 1 && old.method == Echo.name)
    #expect(try WireCodec.decode(RequestParams<Echo.Request>.self, from: bytes).params?.text == "a")
  }

  @Test func tracedAndUntracedRequestsAreAnsweredAlike() async throws {
    #expect(try await echoed(#"{"v":1,"method":"test.echo","params":{"text":"x"}}"#) == "x")
    let traced = #"{"v":1,"method":"test.echo","params":{"text":"y"},"traceparent":"\#(Self.traceparent)"}"#
    #expect(try await echoed(traced) == "y")
  }

  static let malformed: [String] = [
    #""""#,
    #""00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7""#,  // no flags
    #""00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01""#,  // uppercase
    #""ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01""#,  // version ff
    #""00-00000000000000000000000000000000-00f067aa0ba902b7-01""#,  // zero trace ID
    #""00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01""#,  // zero parent ID
    #""00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra""#,  // version 00 is 55 bytes
    #""00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01""#,
    #""00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01""#,  // not hex
    #""00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é""#,
    "12", "true", "null", "[]", #"{"a":1}"#,
    "\"" + String(repeating: "a", count: 1 << 20) + "\"",
  ]

  @Test(arguments: malformed)
  func aMalformedTraceparentIsIgnored(_ value: String) async throws {
    let request = #"{"v":1,"method":"test.echo","params":{"text":"z"},"traceparent":\#(value),"tracestate":"a=b"}"#
    let header = try WireCodec.decode(RequestHeader.self, from: Array(request.utf8))
    #expect(header.trace == nil)
    #expect(header.method == Echo.name)
    #expect(try await echoed(request) == "z")
  }

  @Test func aBadTracestateIsDroppedAndTheTraceparentKept() throws {
    for tracestate in [#""a=\u0001""#, "\"" + String(repeating: "k=v,", count: 200) + "\"", "7", #""ünï=1""#] {
      let request = #"{"v":1,"method":"m","traceparent":"\#(Self.traceparent)","tracestate":\#(tracestate)}"#
      let header = try WireCodec.decode(RequestHeader.self, from: Array(request.utf8))
      #expect(header.trace?.traceparent == Self.traceparent)
      #expect(header.trace?.tracestate == nil, "\(tracestate)")
    }
  }

  @Test func laterVersionsMayCarryMoreFields() {
    #expect(IPCTraceContext.isValidTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"))
    #expect(IPCTraceContext.isValidTraceparent(Self.traceparent))
    #expect(!IPCTraceContext.isValidTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01later"))
  }
}
