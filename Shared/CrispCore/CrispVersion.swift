/// The version every crisp daemon reports (CRI `Version.runtime_version`, IPC health).
public enum CrispVersion {
  public static let string = "0.1.0"
  /// The CRI API version crisp serves.
  public static let criAPIVersion = "v1"
  public static let runtimeName = "crisp"
}
