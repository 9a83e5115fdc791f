import CrispLinux

#if canImport(Glibc)
  import Glibc
#endif

/// sd_notify(3) without libsystemd: one datagram to `$NOTIFY_SOCKET`. Does nothing
/// when not started by systemd with `Type=notify`.
public enum SystemdNotify {
  @discardableResult
  public static func send(_ state: String) -> Bool {
    guard let raw = getenv("NOTIFY_SOCKET"), let target = try? UnixSocket.address(String(cString: raw))
    else { return false }
    var address = target.0
    let length = target.1
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    let message = Array(state.utf8)
    let sent = withUnsafePointer(to: &address) { pointer in
      pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
        message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, length) }
      }
    }
    return sent == message.count
  }
}
