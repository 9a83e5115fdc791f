import ArgumentParser
import CrispConfig
import CrispCore
import CrispIPC
import CrispLinux
import Foundation

/// crispctl: look into a running crisp from the node — which daemons are up, with
/// which privileges — and send any IPC request by hand.
@main
struct CrispctlCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "crispctl",
    abstract: "Inspect and debug a running crisp.",
    version: CrispVersion.string,
    subcommands: [Status.self, IPC.self, Shims.self])
}

struct GlobalOptions: ParsableArguments {
  @Option(help: "Configuration file of the crisp to inspect (default \(CrispConfig.defaultPath)).")
  var config: String?

  @Option(help: "Deadline of each request in milliseconds.")
  var timeoutMs: Int32 = 2_000

  func load() throws -> CrispConfig {
    do {
      return try CrispConfig.load(path: config)
    } catch {
      throw ValidationError("invalid configuration: \(error)")
    }
  }
}

struct Status: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Each daemon: up or down, version, uptime, pid, capabilities, seccomp mode.")

  @OptionGroup var options: GlobalOptions

  func run() async throws {
    let config = try options.load()
    let paths = config.paths
    var anyDown = false
    for (name, socket) in [
      ("imaged", paths.imagedSocket), ("netd", paths.netdSocket), ("cri-frontd", paths.frontdSocket),
    ] {
      let client = try IPCClient(
        peer: name, address: CrispPaths.ipcAddress(socket), defaultTimeoutMs: options.timeoutMs)
      do {
        let health = try await client.call(Health.self)
        let note = name == "cri-frontd" ? config.criSocketPath : health.message
        print(
          describe(
            name: name, pid: health.pid, version: health.version, uptime: health.uptimeSeconds,
            ready: health.ready, note: note))
      } catch {
        if name == "cri-frontd", let line = frontdFromLock(paths: paths, socket: config.criSocketPath) {
          print(line)
        } else {
          anyDown = true
          print("\(name): down (\(error.message))")
        }
      }
      client.close()
    }
    if anyDown { throw ExitCode(1) }
  }

  /// A frontd whose IPC socket does not answer (an older one, or a busy one) is still
  /// up if a live process holds its lock file, which names its pid.
  func frontdFromLock(paths: CrispPaths, socket: String) -> String? {
    let lockText = (try? String(contentsOfFile: paths.frontdLock, encoding: .utf8)) ?? ""
    guard let pid = Int32(lockText.trimmingCharacters(in: .whitespacesAndNewlines)), kill(pid, 0) == 0 else {
      return nil
    }
    return describe(name: "cri-frontd", pid: pid, version: nil, uptime: nil, ready: true, note: socket)
  }

  func describe(_ set: Set<Capability>) -> String {
    if set.count == Capability.all.count { return "all (\(set.count))" }
    return set.isEmpty ? "none" : set.names
  }

  func describe(name: String, pid: Int32, version: String?, uptime: Double?, ready: Bool, note: String?) -> String {
    let proc = ProcessStatus(pid: pid)
    var line = "\(name): up pid=\(pid)"
    if let version { line += " version=\(version)" }
    if let uptime { line += " uptime=\(String(format: "%.1f", uptime))s" }
    line += " ready=\(ready)"
    line += " seccomp=\(proc.seccompMode) no_new_privs=\(proc.noNewPrivileges)"
    line += "\n  effective: \(describe(proc.capabilities("CapEff")))"
    line += "\n  bounding:  \(describe(proc.capabilities("CapBnd")))"
    if let note, !note.isEmpty { line += "\n  \(note)" }
    return line
  }
}

struct IPC: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Send one IPC request and print the reply, e.g. `crispctl ipc netd netd.list`.")

  @OptionGroup var options: GlobalOptions

  @Argument(help: "imaged, netd, cri-frontd, or shim:<container-id>.")
  var daemon: String

  @Argument(help: "The method, e.g. health, ping, netd.status.")
  var method: String

  @Argument(help: "The params as a JSON object (default {}).")
  var params: String = "{}"

  func run() async throws {
    let config = try options.load()
    let socket: String
    switch daemon {
    case "imaged": socket = config.paths.imagedSocket
    case "netd": socket = config.paths.netdSocket
    case "cri-frontd", "frontd": socket = config.paths.frontdSocket
    case let shim where shim.hasPrefix("shim:"):
      let id = String(shim.dropFirst(5))
      guard id.count == 64, id.allSatisfy(\.isHexDigit) else {
        throw ValidationError("shim:<id> needs a 64-hex container ID")
      }
      socket = config.paths.shimSocket(containerID: id.lowercased())
    default:
      throw ValidationError("unknown daemon \"\(daemon)\": imaged, netd, cri-frontd or shim:<id>")
    }
    guard let object = try? JSONSerialization.jsonObject(with: Data(params.utf8)), object is [String: Any] else {
      throw ValidationError("params must be a JSON object, got \(params)")
    }
    let request = try JSONSerialization.data(
      withJSONObject: ["v": IPCProtocol.version, "method": method, "params": object], options: [.sortedKeys])
    let client = try IPCClient(
      peer: daemon, address: CrispPaths.ipcAddress(socket), defaultTimeoutMs: options.timeoutMs)
    defer { client.close() }
    let reply = try await client.roundTrip(Array(request), method: method, timeoutMs: options.timeoutMs)
    print(String(decoding: reply, as: UTF8.self))
    let parsed = try? JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any]
    if parsed?["error"] != nil { throw ExitCode(1) }
  }
}

struct Shims: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Each shim: container, shim pid, uptime, container state and init pid.")

  @OptionGroup var options: GlobalOptions

  func run() async throws {
    let config = try options.load()
    let dir = config.paths.shimsDir
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".ipc") }
      .sorted()
    if names.isEmpty { print("no shims in \(dir)") }
    for name in names {
      let id = String(name.dropLast(4))
      let client = try IPCClient(
        peer: "shimd", address: CrispPaths.ipcAddress(dir + "/" + name), defaultTimeoutMs: options.timeoutMs)
      do {
        let health = try await client.call(Health.self)
        var line = "\(id) pid=\(health.pid) uptime=\(String(format: "%.1f", health.uptimeSeconds))s"
        if let state = try? await client.call(ShimState.self) {
          line += " state=\(state.state.rawValue) container_pid=\(state.pid)"
          if state.state == .exited { line += " exit_code=\(state.exitCode)" }
        }
        print(line)
      } catch {
        print("\(id) not answering: \(error.message)")
      }
      client.close()
    }
  }
}
