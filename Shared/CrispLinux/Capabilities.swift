import CCap
import CCrispSys
import CrispCore

#if canImport(Glibc)
  import Glibc
#endif

/// One Linux capability, known by its libcap name (`cap_net_admin`, case-insensitive;
/// the `CAP_` prefix is optional).
public struct Capability: Hashable, Sendable, CustomStringConvertible {
  public let value: cap_value_t

  public init(value: cap_value_t) { self.value = value }

  public init(name: String) throws(CrispError) {
    var lowered = name.lowercased()
    if !lowered.hasPrefix("cap_") { lowered = "cap_" + lowered }
    var value = cap_value_t()
    guard cap_from_name(lowered, &value) == 0 else {
      throw CrispError(.invalidArgument, "unknown capability '\(name)'")
    }
    self.value = value
  }

  /// The upper-case name used in config and logs (`CAP_NET_ADMIN`).
  public var description: String {
    guard let raw = cap_to_name(value) else { return "cap_\(value)" }
    defer { _ = cap_free(raw) }
    return String(cString: raw).uppercased()
  }

  /// Every capability this kernel knows.
  public static var all: [Capability] {
    (0..<cap_max_bits()).map(Capability.init(value:))
  }
}

/// The capability sets of the calling process.
public struct ProcessCapabilities: Sendable, Equatable {
  public var effective: Set<Capability>
  public var permitted: Set<Capability>
  public var inheritable: Set<Capability>
  public var bounding: Set<Capability>

  /// Reads the sets of the calling thread.
  public static func current() throws(CrispError) -> ProcessCapabilities {
    guard let caps = cap_get_proc() else {
      throw CrispError(.internal, "cap_get_proc: \(Files.errnoText())")
    }
    defer { _ = cap_free(UnsafeMutableRawPointer(caps)) }
    func read(_ flag: cap_flag_t) throws(CrispError) -> Set<Capability> {
      var set = Set<Capability>()
      for cap in Capability.all {
        var value = cap_flag_value_t(0)
        guard cap_get_flag(caps, cap.value, flag, &value) == 0 else {
          throw CrispError(.internal, "cap_get_flag(\(cap)): \(Files.errnoText())")
        }
        if value == CAP_SET { set.insert(cap) }
      }
      return set
    }
    var bounding = Set<Capability>()
    for cap in Capability.all where crisp_capbset_read(Int32(cap.value)) == 1 {
      bounding.insert(cap)
    }
    return ProcessCapabilities(
      effective: try read(CAP_EFFECTIVE), permitted: try read(CAP_PERMITTED),
      inheritable: try read(CAP_INHERITABLE), bounding: bounding)
  }

  /// Reduces the calling process to `keep`: drops everything else from the bounding
  /// set, clears the ambient set, and sets effective and permitted to `keep`
  /// (inheritable to `inheritable`). Capabilities can only be dropped, never gained.
  public static func restrict(to keep: Set<Capability>, inheritable: Set<Capability> = []) throws(CrispError) {
    for cap in Capability.all where !keep.contains(cap) && crisp_capbset_read(Int32(cap.value)) == 1 {
      guard cap_drop_bound(cap.value) == 0 else {
        throw CrispError(
          .permissionDenied, "cannot drop \(cap) from the bounding set: \(Files.errnoText())")
      }
    }
    guard cap_reset_ambient() == 0 else {
      throw CrispError(.permissionDenied, "cannot clear the ambient set: \(Files.errnoText())")
    }
    guard let caps = cap_init() else {
      throw CrispError(.internal, "cap_init: \(Files.errnoText())")
    }
    defer { _ = cap_free(UnsafeMutableRawPointer(caps)) }
    func set(_ flag: cap_flag_t, _ values: Set<Capability>) throws(CrispError) {
      let list = values.map(\.value)
      guard !list.isEmpty else { return }
      let rv = list.withUnsafeBufferPointer { cap_set_flag(caps, flag, Int32($0.count), $0.baseAddress, CAP_SET) }
      guard rv == 0 else { throw CrispError(.internal, "cap_set_flag: \(Files.errnoText())") }
    }
    try set(CAP_EFFECTIVE, keep)
    try set(CAP_PERMITTED, keep)
    try set(CAP_INHERITABLE, inheritable.intersection(keep))
    guard cap_set_proc(caps) == 0 else {
      throw CrispError(.permissionDenied, "cannot set capabilities: \(Files.errnoText())")
    }
  }
}

extension Set where Element == Capability {
  /// Sorted names for logs: `CAP_CHOWN,CAP_NET_ADMIN`.
  public var names: String { map(\.description).sorted().joined(separator: ",") }
}
