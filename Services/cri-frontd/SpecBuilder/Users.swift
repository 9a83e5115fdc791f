import CRIAPI
import CrispCore
import CrispOCI

/// The users and groups of a container image: its `/etc/passwd` and `/etc/group` as
/// text (either may be empty when the image has none). Malformed lines are skipped, as
/// libc's getpwent does.
public struct UserDatabase: Sendable, Equatable {
  public struct Passwd: Sendable, Equatable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32
    public var home: String
  }

  public struct Group: Sendable, Equatable {
    public var name: String
    public var gid: UInt32
    public var members: [String]
  }

  public var users: [Passwd]
  public var groups: [Group]

  public init(passwd: String, group: String) {
    users = passwd.split(whereSeparator: \.isNewline).compactMap { line in
      let fields = line.split(separator: ":", omittingEmptySubsequences: false)
      guard fields.count >= 4, !fields[0].isEmpty, !fields[0].hasPrefix("#"), let uid = UInt32(fields[2]),
        let gid = UInt32(fields[3])
      else { return nil }
      return Passwd(name: String(fields[0]), uid: uid, gid: gid, home: fields.count > 5 ? String(fields[5]) : "")
    }
    groups = group.split(whereSeparator: \.isNewline).compactMap { line in
      let fields = line.split(separator: ":", omittingEmptySubsequences: false)
      guard fields.count >= 3, !fields[0].isEmpty, !fields[0].hasPrefix("#"), let gid = UInt32(fields[2]) else {
        return nil
      }
      let members = fields.count > 3 ? fields[3].split(separator: ",").map { String($0) } : []
      return Group(name: String(fields[0]), gid: gid, members: members)
    }
  }

  /// No /etc/passwd, no /etc/group.
  public static let empty = UserDatabase(passwd: "", group: "")

  /// The first entry of that name, as getpwnam answers.
  public func user(named name: String) -> Passwd? { users.first { $0.name == name } }
  /// The first entry with that uid, as getpwuid answers.
  public func user(uid: UInt32) -> Passwd? { users.first { $0.uid == uid } }
  public func group(named name: String) -> Group? { groups.first { $0.name == name } }
  public func group(gid: UInt32) -> Group? { groups.first { $0.gid == gid } }
  /// The gids of the groups listing `user` as a member, in file order, without repeats.
  public func groupIDs(ofMember user: String) -> [UInt32] {
    var seen = Set<UInt32>()
    return groups.filter { $0.members.contains(user) }.map(\.gid).filter { seen.insert($0).inserted }
  }
}

extension SpecBuilder {
  /// The process user: uid, gid and supplementary groups, from the security context or
  /// else the image's `User`, resolved in the image's user database.
  ///
  /// - `run_as_user` (uid) or `run_as_username` (only one of them), else the image's
  ///   `User`: `name`, `uid`, `name:group`, `uid:gid` (group by name or number).
  /// - `run_as_group` overrides the gid and needs one of the two above. Otherwise the gid
  ///   is the user's passwd entry's, or 0 when the uid has no entry.
  /// - Names must exist in the image; a numeric uid need not.
  /// - Supplementary groups: the primary gid first (as containerd does), then with the
  ///   `Merge` policy (default) the groups of /etc/group that list the user's name, then
  ///   the security context's `supplemental_groups`; `Strict` leaves out /etc/group.
  static func resolveUser(
    security: Runtime_V1_LinuxContainerSecurityContext, image: ImageRuntimeConfig, users: UserDatabase
  ) throws(CrispError) -> RuntimeSpec.User {
    if security.hasRunAsUser && !security.runAsUsername.isEmpty {
      throw CrispError(
        .invalidArgument, "linux.security_context: only one of run_as_user and run_as_username may be set")
    }
    if security.hasRunAsGroup && !security.hasRunAsUser && security.runAsUsername.isEmpty {
      throw CrispError(
        .invalidArgument,
        "linux.security_context.run_as_group needs run_as_user or run_as_username")
    }

    var uid: UInt32
    var gid: UInt32?
    var name: String?
    if security.hasRunAsUser {
      uid = try id(security.runAsUser.value, field: "linux.security_context.run_as_user")
      name = users.user(uid: uid)?.name
      gid = users.user(uid: uid)?.gid
    } else if !security.runAsUsername.isEmpty {
      guard let entry = users.user(named: security.runAsUsername) else {
        throw CrispError(
          .invalidArgument,
          "linux.security_context.run_as_username: user \"\(security.runAsUsername)\""
            + " not found in the image's /etc/passwd"
        )
      }
      (uid, gid, name) = (entry.uid, entry.gid, entry.name)
    } else {
      (uid, gid, name) = try imageUser(image.user, users: users)
    }
    if security.hasRunAsGroup {
      gid = try id(security.runAsGroup.value, field: "linux.security_context.run_as_group")
    }
    let primary = gid ?? 0

    var groups = [primary]
    if security.supplementalGroupsPolicy != .strict, let name {
      groups += users.groupIDs(ofMember: name)
    }
    for (index, value) in security.supplementalGroups.enumerated() {
      groups.append(try id(value, field: "linux.security_context.supplemental_groups[\(index)]"))
    }
    if case .UNRECOGNIZED(let raw) = security.supplementalGroupsPolicy {
      throw CrispError(
        .invalidArgument, "linux.security_context.supplemental_groups_policy: unknown value \(raw)")
    }
    var seen = Set<UInt32>()
    return RuntimeSpec.User(uid: uid, gid: primary, additionalGids: groups.filter { seen.insert($0).inserted })
  }

  /// The image's `User` (`""` is root). The gid is nil when neither the string nor a
  /// passwd entry gives one.
  static func imageUser(_ spec: String, users: UserDatabase) throws(CrispError) -> (
    uid: UInt32, gid: UInt32?, name: String?
  ) {
    if spec.isEmpty { return (0, users.user(uid: 0)?.gid ?? 0, users.user(uid: 0)?.name) }
    let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
    let userPart = parts[0]
    guard !userPart.isEmpty else {
      throw CrispError(.invalidArgument, "image user \"\(spec)\": no user before ':'")
    }
    var uid: UInt32
    var gid: UInt32?
    var name: String?
    if let numeric = UInt32(userPart) {
      uid = numeric
      name = users.user(uid: numeric)?.name
      gid = users.user(uid: numeric)?.gid
    } else {
      guard let entry = users.user(named: userPart) else {
        throw CrispError(.invalidArgument, "image user \"\(userPart)\" not found in the image's /etc/passwd")
      }
      (uid, gid, name) = (entry.uid, entry.gid, entry.name)
    }
    if parts.count == 2 {
      let groupPart = parts[1]
      if let numeric = UInt32(groupPart) {
        gid = numeric
      } else if let group = users.group(named: groupPart) {
        gid = group.gid
      } else {
        throw CrispError(.invalidArgument, "image group \"\(groupPart)\" not found in the image's /etc/group")
      }
    }
    return (uid, gid, name)
  }

  /// A uid or gid from the CRI's int64.
  static func id(_ value: Int64, field: String) throws(CrispError) -> UInt32 {
    guard value >= 0, value < Int64(UInt32.max) else {
      throw CrispError(.invalidArgument, "\(field): \(value) is not a valid ID")
    }
    return UInt32(value)
  }
}
