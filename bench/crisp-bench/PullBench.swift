import CRIAPI
import CrispTestSupport
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix

/// Image pull: crisp's pipelined pull (download + verify + unpack, through the CRI)
/// of a ≥150 MB multi-layer image from a local registry, beside two floors on the
/// same image made with Debian's tools: `skopeo copy` to a directory (download and
/// verify only) and `umoci raw unpack` from an OCI layout (unpack only). Rounds are
/// interleaved (crisp, skopeo, umoci, crisp, …) so that the machine's state is shared.
enum PullBench {
  struct Result {
    var crisp: [Double] = []
    var skopeo: [Double] = []
    var umoci: [Double] = []
    var compressedBytes: Int64 = 0
    var layers = 0
  }

  static func run(instance: BenchInstance, registry: LocalRegistry, rounds: Int) async throws -> Result {
    let layout = instance.dir + "/bench-layout"
    let images = try await registry.pushBenchImage(ociLayout: layout)
    let big = try images.image("bench/big:latest")
    var result = Result()
    result.compressedBytes = big.layerSizes.reduce(0, +)
    result.layers = big.layers.count
    let name = registry.reference("bench/big:latest")

    try await withGRPCClient(
      transport: .http2NIOPosix(
        target: .unixDomainSocket(path: instance.paths.criSocket), transportSecurity: .plaintext)
    ) { grpc in
      let images = Runtime_V1_ImageService.Client(wrapping: grpc)
      for _ in 0..<rounds {
        var pull = Runtime_V1_PullImageRequest()
        pull.image.image = name
        var start = ContinuousClock.now
        let id = try await images.pullImage(pull).imageRef
        result.crisp.append((ContinuousClock.now - start).seconds)
        var remove = Runtime_V1_RemoveImageRequest()
        remove.image.image = id
        _ = try await images.removeImage(remove)

        let copy = instance.dir + "/skopeo"
        start = ContinuousClock.now
        try runTool(
          "/usr/bin/skopeo", ["copy", "--quiet", "--src-tls-verify=false", "docker://\(name)", "dir:\(copy)"])
        result.skopeo.append((ContinuousClock.now - start).seconds)
        try? FileManager.default.removeItem(atPath: copy)

        let rootfs = instance.dir + "/umoci-rootfs"
        start = ContinuousClock.now
        try runTool("/usr/bin/umoci", ["raw", "unpack", "--image", "\(layout):latest", rootfs])
        result.umoci.append((ContinuousClock.now - start).seconds)
        try? FileManager.default.removeItem(atPath: rootfs)
      }
    }
    return result
  }

  static func runTool(_ path: String, _ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
      throw BenchError("\(path) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
    }
  }
}

struct BenchError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

extension Duration {
  var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
