/// `[imaged] pinned_images`, read as CRI-O reads its own: an exact image name (short
/// names qualified as a pull would), a glob that ends in `*` (a prefix of the full name:
/// `registry.k8s.io/pause*`), or a keyword between two `*` (`*pause*`: any name holding
/// it). kubelet's image garbage collection leaves a pinned image alone.
struct PinnedImages: Sendable {
  private var exact: Set<String> = []
  private var prefixes: [String] = []
  private var keywords: [String] = []

  init(_ patterns: [String], registries: RegistriesConfig) {
    for pattern in patterns {
      if pattern.count > 2, pattern.hasPrefix("*"), pattern.hasSuffix("*") {
        keywords.append(String(pattern.dropFirst().dropLast()))
      } else if pattern.hasSuffix("*") {
        prefixes.append(String(pattern.dropLast()))
      } else if let name = (try? registries.qualify(pattern))?.first?.description {
        exact.insert(name)
      }
    }
  }

  /// Whether `name` (a full image name with its tag) is pinned.
  func matches(_ name: String) -> Bool {
    exact.contains(name) || prefixes.contains { name.hasPrefix($0) } || keywords.contains { name.contains($0) }
  }
}
