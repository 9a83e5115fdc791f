import CRIAPI
import CrispCore
import CrispOCI

extension SpecBuilder {
  /// The OCI resources `runc update` applies for a CRI UpdateContainerResources request:
  /// the rules and checks of CreateContainer (`resources`), so a value refused at
  /// create is refused here too, with the same message.
  public static func resourceUpdate(
    _ resources: Runtime_V1_LinuxContainerResources, options: SpecOptions
  ) throws(CrispError) -> BuiltResources {
    var notes: [String] = []
    let built = try self.resources(resources, options: options, notes: &notes)
    return BuiltResources(resources: built, notes: notes)
  }
}

/// Resources for `runc update`, and what was left out (for the debug log).
public struct BuiltResources: Sendable, Equatable {
  public var resources: RuntimeSpec.LinuxResources
  public var notes: [String]
}
