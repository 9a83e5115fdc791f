import CrispTestSupport
import Foundation
import Testing

/// `systemd-analyze security` of each unit is what the README records, so a change to
/// a unit's hardening shows up here (and in the README) instead of drifting.
@Suite struct UnitSecurityTests {
  static let repository = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

  /// The exposure `systemd-analyze security --offline=true` gives a unit file.
  static func exposure(_ unit: String) throws -> Double? {
    let result = try runProgram(
      "/usr/bin/systemd-analyze", ["security", "--offline=true", repository + "/deploy/systemd/" + unit])
    let marker = "Overall exposure level for \(unit): "
    guard let line = result.output.split(separator: "\n").first(where: { $0.contains(marker) }) else { return nil }
    return Double(line.components(separatedBy: marker)[1].split(separator: " ")[0])
  }

  @Test(arguments: ["crisp-imaged", "crisp-netd", "crisp-frontd"])
  func theExposureIsTheOneTheREADMERecords(unit: String) throws {
    let readme = try String(contentsOfFile: Self.repository + "/README.md", encoding: .utf8)
      .replacingOccurrences(of: "\n", with: " ")
    let score = try #require(try Self.exposure(unit + ".service"), "systemd-analyze security gave no score")
    #expect(
      readme.contains("\(unit) \(String(format: "%.1f", score)) "),
      "README does not record \(unit) \(score) (systemd-analyze security --offline=true)")
  }
}
