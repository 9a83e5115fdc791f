import CrispCore
import Foundation
import Testing

@testable import CrispIPC

/// The router turns any bytes into a reply, never a crash.
@Suite struct IPCRouterTests {
  struct Echo: IPCMethod {
    static let name = "test.echo"
    struct Request: Codable, Sendable {
      var text: String
      var count: Int
    }
    struct Response: Codable, Sendable { var text: String }
  }

  func router() -> IPCRouter {
    var router = IPCRouter()
    router.register(Echo.self) { request in
      guard request.count >= 0 else { throw CrispError(.invalidArgument, "count must not be negative") }
      return Echo.Response(text: String(repeating: request.text, count: request.count))
    }
    return router
  }

  func reply(_ text: String) async throws -> [String: Any] {
    let bytes = await router().handle(Array(text.utf8))
    return try #require(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
  }

  func error(_ text: String) async throws -> (code: String, message: String) {
    let reply = try await reply(text)
    #expect(reply["v"] as? Int == IPCProtocol.version)
    let error = try #require(reply["error"] as? [String: Any], "no error in \(reply)")
    return (error["code"] as? String ?? "", error["message"] as? String ?? "")
  }

  @Test func answersAKnownMethod() async throws {
    let reply = try await reply(#"{"v":1,"method":"test.echo","params":{"text":"ab","count":2}}"#)
    #expect((reply["result"] as? [String: Any])?["text"] as? String == "abab")
  }

  @Test func anOldNameAnswersAsTheMethodItWasRenamedTo() async throws {
    var router = router()
    router.alias("test.echoOld", for: Echo.self)
    let bytes = await router.handle(Array(#"{"v":1,"method":"test.echoOld","params":{"text":"ab","count":2}}"#.utf8))
    let reply = try #require(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    #expect((reply["result"] as? [String: Any])?["text"] as? String == "abab")
  }

  @Test func pingNeedsNoParams() async throws {
    let reply = try await reply(#"{"v":1,"method":"ping"}"#)
    #expect((reply["result"] as? [String: Any])?["payload"] as? String == "")
  }

  @Test(arguments: ["", "garbage", "\u{0}\u{1}\u{2}", "[1,2]", "{\"v\":", "null"])
  func refusesUndecodableBytes(_ text: String) async throws {
    let (code, message) = try await error(text)
    #expect(code == "invalidArgument")
    #expect(!message.isEmpty)
  }

  @Test func refusesAnotherProtocolVersion() async throws {
    let (code, message) = try await error(#"{"v":99,"method":"ping"}"#)
    #expect(code == "failedPrecondition")
    #expect(message.contains("99"))
    #expect(message.contains("version \(IPCProtocol.version)"))
  }

  @Test func refusesAMissingVersion() async throws {
    let (code, message) = try await error(#"{"method":"ping"}"#)
    #expect(code == "invalidArgument")
    #expect(message.contains("'v'"))
  }

  @Test func refusesAnUnknownMethodNamingIt() async throws {
    let (code, message) = try await error(#"{"v":1,"method":"rm -rf"}"#)
    #expect(code == "unimplemented")
    #expect(message.contains("rm -rf"))
  }

  @Test func refusesBadParamsNamingTheField() async throws {
    let (code, message) = try await error(#"{"v":1,"method":"test.echo","params":{"text":"a","count":"two"}}"#)
    #expect(code == "invalidArgument")
    #expect(message.contains("count"))
    let missing = try await error(#"{"v":1,"method":"test.echo","params":{"text":"a"}}"#)
    #expect(missing.message.contains("count"))
  }

  @Test func passesHandlerErrorsThrough() async throws {
    let (code, message) = try await error(#"{"v":1,"method":"test.echo","params":{"text":"a","count":-1}}"#)
    #expect(code == "invalidArgument")
    #expect(message == "count must not be negative")
  }

  @Test func refusesOversizedRequests() async throws {
    let big = [UInt8](repeating: UInt8(ascii: " "), count: IPCProtocol.maxMessageBytes + 1)
    let bytes = await router().handle(big)
    let text = String(decoding: bytes, as: UTF8.self)
    #expect(text.contains("exceeds"))
  }
}
