import CrispTestSupport
import Foundation
import Testing

/// crisp answers a non-Swift gRPC stack: Python's grpcio, with stubs generated from
/// the same api.proto.
@Suite struct InteropTests {
  static let client = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Interop/cri_client.py").path

  func python(_ arguments: [String]) throws -> (status: Int32, json: [String: Any]) {
    let result = try runProgram("/usr/bin/env", ["python3", Self.client] + arguments)
    let line = result.output.split(separator: "\n").last.map(String.init) ?? ""
    let json = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    guard let json else {
      Issue.record("python client printed no JSON: \(result.output)")
      return (result.status, [:])
    }
    return (result.status, json)
  }

  @Test func pythonGrpcioCallsVersionAndStatus() async throws {
    try await withCrisp { crisp in
      try crisp.writeCNIConfig()
      try await crisp.startAll()

      let version = try python(["--socket", crisp.criSocket, "version"])
      #expect(version.status == 0)
      #expect(version.json["runtime_name"] as? String == "crisp")
      #expect(version.json["runtime_api_version"] as? String == "v1")

      let status = try python(["--socket", crisp.criSocket, "status", "--verbose"])
      #expect(status.status == 0)
      let conditions = (status.json["status"] as? [String: Any])?["conditions"] as? [[String: Any]] ?? []
      let byType = Dictionary(uniqueKeysWithValues: conditions.map { ($0["type"] as? String ?? "", $0) })
      #expect(byType["RuntimeReady"]?["status"] as? Bool == true)
      #expect(byType["NetworkReady"]?["status"] as? Bool == true)
      #expect((status.json["info"] as? [String: Any])?["netd"] != nil)

      let containers = try python(["--socket", crisp.criSocket, "list-containers"])
      #expect(containers.status == 0)

      let stats = try python(["--socket", crisp.criSocket, "list-container-stats"])
      #expect(stats.status == 0)

      let unimplemented = try python(["--socket", crisp.criSocket, "checkpoint-container"])
      #expect(unimplemented.status == 3)
      #expect(unimplemented.json["code"] as? String == "UNIMPLEMENTED")
      #expect((unimplemented.json["details"] as? String)?.contains("CRIU") == true)
    }
  }
}
