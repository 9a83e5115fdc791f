extension CrispConfig {
  /// The configuration as commented TOML, as `crio config` prints it: every option,
  /// its meaning and its value. `CrispConfig.parse(renderTOML())` gives back the same
  /// value.
  public func renderTOML() -> String {
    var out = """
      # crisp configuration (/etc/crisp/crisp.toml).
      # Printed by `cri-frontd config`; every option is shown with its value.
      # Unknown keys and wrong types are refused at start.

      """
    for section in Self.sections {
      if !section.name.isEmpty {
        out += "\n" + comment(section.help) + "[\(section.name)]\n"
      }
      for option in section.options {
        if section.name.isEmpty { out += "\n" }
        out += comment(option.help) + "\(option.key) = \(option.value(self))\n"
      }
    }
    return out
  }

  /// The README's table of options: key, default, meaning (ConfigTests keeps the
  /// README's copy equal to it; `cri-frontd config --markdown` prints it).
  public static func markdownTable() -> String {
    let defaults = CrispConfig()
    var out = "| key | default | meaning |\n|---|---|---|\n"
    for section in sections {
      for option in section.options {
        let key = section.name.isEmpty ? option.key : section.name + "." + option.key
        let help = option.help.split(separator: "|", omittingEmptySubsequences: false).joined(separator: "\\|")
        out += "| `\(key)` | `\(option.value(defaults))` | \(help) |\n"
      }
    }
    return out
  }
}

/// `text` as TOML comment lines of at most 90 columns.
private func comment(_ text: String) -> String {
  var lines: [String] = []
  var line = "#"
  for word in text.split(separator: " ") {
    if line.count + 1 + word.count > 90 && line != "#" {
      lines.append(line)
      line = "#"
    }
    line += " " + word
  }
  lines.append(line)
  return lines.joined(separator: "\n") + "\n"
}
