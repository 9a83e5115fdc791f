import CRIAPI
import CrispCore
import CrispOCI
import FoundationEssentials

extension SpecBuilder {
  /// The PATH of a container whose image and config set none (Docker's and runc's).
  public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

  /// The process arguments, as kubelet and Docker mean them: `command` replaces the
  /// image's Entrypoint and `args` its Cmd. Only `args` → Entrypoint + args; only
  /// `command` → command (the image's Cmd is dropped); neither → Entrypoint + Cmd.
  static func arguments(config: Runtime_V1_ContainerConfig, image: ImageRuntimeConfig) throws(CrispError) -> [String] {
    let result: [String]
    if !config.command.isEmpty {
      result = config.command + config.args
    } else if !config.args.isEmpty {
      result = image.entrypoint + config.args
    } else {
      result = image.entrypoint + image.cmd
    }
    guard let first = result.first else {
      throw CrispError(
        .invalidArgument, "no command specified: the config has no command or args, the image no Entrypoint or Cmd")
    }
    guard !first.isEmpty else {
      throw CrispError(.invalidArgument, "command: the executable is an empty string")
    }
    return result
  }

  /// The image's environment with the CRI's `envs` over it by name (an overridden
  /// variable keeps its place; new ones follow in CRI order, the last of repeated
  /// names winning). PATH defaults to `defaultPath`, HOSTNAME to the pod's hostname
  /// (as CRI-O does) and, for a TTY, TERM to `xterm`.
  static func environment(
    config: Runtime_V1_ContainerConfig, image: ImageRuntimeConfig, hostname: String
  ) throws(CrispError) -> [String] {
    var names: [String] = []
    var values: [String: String] = [:]
    func set(_ name: String, _ entry: String) {
      if values.updateValue(entry, forKey: name) == nil { names.append(name) }
    }
    for entry in image.env {
      let name = String(entry.prefix { $0 != "=" })
      guard !name.isEmpty else { continue }
      set(name, entry)
    }
    for (index, pair) in config.envs.enumerated() {
      guard !pair.key.isEmpty, !pair.key.contains("=") else {
        throw CrispError(.invalidArgument, "envs[\(index)].key \"\(pair.key)\" is not a variable name")
      }
      // The repository's api.proto carries values as bytes (wire-compatible with string);
      // config.json is JSON, so they must be UTF-8.
      guard let value = String(validating: pair.value, as: UTF8.self) else {
        throw CrispError(.invalidArgument, "envs[\(index)].value of \(pair.key) is not UTF-8")
      }
      set(pair.key, pair.key + "=" + value)
    }
    if values["PATH"] == nil { set("PATH", "PATH=" + defaultPath) }
    if values["HOSTNAME"] == nil && !hostname.isEmpty { set("HOSTNAME", "HOSTNAME=" + hostname) }
    if config.tty && values["TERM"] == nil { set("TERM", "TERM=xterm") }
    return names.compactMap { values[$0] }
  }

  /// `working_dir`, else the image's WorkingDir, else `/`; a relative one is taken from
  /// `/`, as Docker does.
  static func workingDirectory(config: Runtime_V1_ContainerConfig, image: ImageRuntimeConfig) -> String {
    let dir = !config.workingDir.isEmpty ? config.workingDir : image.workingDir
    if dir.isEmpty { return "/" }
    return cleanPath(dir)
  }
}
