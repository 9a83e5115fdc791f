import CCrispSys
import CrispCore

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif
#if canImport(Glibc)
  import Glibc
#endif

/// Where a session's stdin goes: an exec'd process's stdin pipe or terminal, or the
/// container's own stdin (attach). Writes never block.
protocol SessionInput: AnyObject {
  /// Polled for room when a write would block; -1 when there is none to poll.
  var pollFD: Int32 { get }
  /// Bytes written (> 0), 0 when the write would block, -1 when the input is gone
  /// (what is left of the session's stdin is then dropped).
  func write(_ bytes: UnsafeRawBufferPointer) -> Int
  /// The client's stdin ended (frame 5).
  func endOfInput()
  /// A resize frame: the terminal's new size; ignored without a terminal.
  func resize(width: UInt16, height: UInt16)
}

/// Where a session's output comes from, besides pipes it reads itself: an attach
/// session's queue of the container's output.
protocol SessionOutputQueue: AnyObject {
  /// Readable when the queue has something, or has ended.
  var wakeFD: Int32 { get }
  /// Everything queued, already framed, and the exit code once the container exited
  /// and nothing more will come.
  func take() -> (bytes: [UInt8], exitCode: Int32?)
}

/// One session's relay, run on its own thread: client frames from the socket to the
/// input, output to the socket as frames. Every descriptor is non-blocking and at
/// most one chunk waits in each direction: a slow client stops the reading of the
/// process's output (back-pressure through its pipe), a process that does not read
/// its stdin stops the reading of the socket.
struct SessionPump {
  enum Outcome: Equatable {
    /// The output ended (the process or container exited and what it wrote was
    /// sent); the exit code when the queue reported one.
    case finished(exitCode: Int32?)
    /// The client closed the socket, or broke the framing, before the end.
    case clientGone(String)
  }

  let socket: Int32
  let input: SessionInput?
  /// Pipes or a terminal master to read, each sent as frames on its channel (read
  /// and dropped without one).
  var outputs: [(fd: Int32, channel: SessionFrame.Channel?)] = []
  var queue: SessionOutputQueue? = nil
  /// A pidfd: once readable, the outputs are read until they end or stay silent for `drainMs`.
  var processFD: Int32 = -1
  /// Asked every 200 ms when there is no pidfd (kernels before 5.3).
  var processHasExited: (() -> Bool)? = nil
  static let drainMs: Int64 = 1_000
  static let chunk = 64 * 1024
  /// Resize payloads beyond this are skipped (the JSON then does not decode).
  static let maxControlPayload = 4096

  init(socket: Int32, input: SessionInput?) {
    self.socket = socket
    self.input = input
  }

  // The client → shim frame being read.
  private struct Reader {
    var header: [UInt8] = []
    var channel: UInt8 = 0
    var remaining = 0
    var inPayload = false
    var control: [UInt8] = []
    var stdinOpen = true
  }

  func run() -> Outcome {
    for fd in [socket] + outputs.map(\.fd) { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    // Client bytes read but not yet handled, and framed output not yet sent.
    let inbound = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunk, alignment: 8)
    defer { inbound.deallocate() }
    var inPos = 0
    var inLen = 0
    var outbound = [UInt8](repeating: 0, count: queue == nil ? SessionFrame.headerSize + Self.chunk : 0)
    var outPos = 0
    var outLen = 0
    var reader = Reader()
    var open = outputs.map { _ in true }
    var nextOutput = 0
    var waitingForInputRoom = false
    var processExited = false
    let watchesProcess = queue == nil && (processFD >= 0 || processHasExited != nil)
    var lastOutputAt = MonotonicClock.milliseconds()
    var queueExit: Int32? = nil
    var queueEnded = false

    while true {
      // Done: the output ended and everything was sent.
      if outPos == outLen {
        if queue != nil {
          if queueEnded { return .finished(exitCode: queueExit) }
        } else if processExited {
          // Pipes a background descendant still holds are abandoned once silent.
          let silent = MonotonicClock.milliseconds() - lastOutputAt >= Self.drainMs
          if !open.contains(true) || silent { return .finished(exitCode: nil) }
        } else if !watchesProcess && !open.contains(true) {
          return .finished(exitCode: nil)
        }
      }

      var fds: [pollfd] = []
      var socketEvents: Int16 = 0
      if inPos == inLen { socketEvents |= Int16(POLLIN) }
      if outPos < outLen { socketEvents |= Int16(POLLOUT) }
      fds.append(pollfd(fd: socket, events: socketEvents, revents: 0))
      var inputSlot = -1
      if waitingForInputRoom, let input, input.pollFD >= 0 {
        inputSlot = fds.count
        fds.append(pollfd(fd: input.pollFD, events: Int16(POLLOUT), revents: 0))
      }
      let outputBase = fds.count
      var polledOutputs: [Int] = []
      if outPos == outLen {
        for (i, output) in outputs.enumerated() where open[i] {
          fds.append(pollfd(fd: output.fd, events: Int16(POLLIN), revents: 0))
          polledOutputs.append(i)
        }
      }
      var queueSlot = -1
      if let queue, outPos == outLen, !queueEnded {
        queueSlot = fds.count
        fds.append(pollfd(fd: queue.wakeFD, events: Int16(POLLIN), revents: 0))
      }
      var processSlot = -1
      if !processExited && processFD >= 0 {
        processSlot = fds.count
        fds.append(pollfd(fd: processFD, events: Int16(POLLIN), revents: 0))
      }
      var timeout: Int32 = -1
      if processExited && queue == nil && outPos == outLen {
        timeout = Int32(clamping: max(0, lastOutputAt + Self.drainMs - MonotonicClock.milliseconds()))
      } else if !processExited, processFD < 0, let processHasExited {
        if processHasExited() {
          processExited = true
          lastOutputAt = MonotonicClock.milliseconds()
          continue
        }
        timeout = 200
      }
      let ready = poll(&fds, nfds_t(fds.count), timeout)
      if ready < 0 {
        if errno == EINTR { continue }
        return .clientGone("poll: \(Files.errnoText())")
      }
      if ready == 0 { continue }

      // The socket: hang-up or error means the client went away.
      let socketRevents = fds[0].revents
      if socketRevents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 && socketRevents & Int16(POLLIN) == 0 {
        return .clientGone("the client closed the session")
      }
      if socketRevents & Int16(POLLOUT) != 0 && outPos < outLen {
        let n = outbound.withUnsafeBytes {
          send(socket, $0.baseAddress! + outPos, outLen - outPos, Int32(MSG_NOSIGNAL))
        }
        if n > 0 {
          outPos += n
          if outPos == outLen {
            outPos = 0
            outLen = 0
          }
        } else if n < 0 && errno != EAGAIN && errno != EINTR {
          return .clientGone("the client closed the session (\(Files.errnoText()))")
        }
      }
      if socketRevents & Int16(POLLIN) != 0 && inPos == inLen {
        let n = recv(socket, inbound.baseAddress, inbound.count, 0)
        if n == 0 { return .clientGone("the client closed the session") }
        if n < 0 {
          if errno != EAGAIN && errno != EINTR {
            return .clientGone("the client closed the session (\(Files.errnoText()))")
          }
        } else {
          inPos = 0
          inLen = n
        }
      }
      if inputSlot >= 0 && fds[inputSlot].revents != 0 { waitingForInputRoom = false }

      // Client frames.
      if !waitingForInputRoom {
        while inPos < inLen {
          if !reader.inPayload {
            let take = min(SessionFrame.headerSize - reader.header.count, inLen - inPos)
            reader.header += UnsafeRawBufferPointer(rebasing: inbound[inPos..<(inPos + take)])
            inPos += take
            guard reader.header.count == SessionFrame.headerSize else { continue }
            let (channelByte, length) = reader.header.withUnsafeBytes { SessionFrame.readHeader($0) }
            reader.channel = channelByte
            reader.header = []
            guard length <= SessionFrame.maxPayload else {
              return .clientGone("protocol error: a frame of \(length) bytes exceeds \(SessionFrame.maxPayload)")
            }
            guard let channel = SessionFrame.Channel(rawValue: reader.channel),
              channel == .stdin || channel == .resize || channel == .stdinEOF
            else {
              return .clientGone("protocol error: channel \(reader.channel) is not one a client sends")
            }
            reader.remaining = length
            reader.inPayload = true
            reader.control = []
          }
          if reader.remaining > 0 {
            let n = min(reader.remaining, inLen - inPos)
            let bytes = UnsafeRawBufferPointer(rebasing: inbound[inPos..<(inPos + n)])
            if reader.channel == SessionFrame.Channel.stdin.rawValue, reader.stdinOpen, let input {
              let written = input.write(bytes)
              if written == 0 {
                waitingForInputRoom = input.pollFD >= 0
                if waitingForInputRoom { break }
                // Nothing to wait on: drop rather than spin.
                inPos += n
                reader.remaining -= n
              } else if written < 0 {
                reader.stdinOpen = false
                inPos += n
                reader.remaining -= n
              } else {
                inPos += written
                reader.remaining -= written
              }
            } else {
              if reader.channel == SessionFrame.Channel.resize.rawValue {
                let room = max(0, Self.maxControlPayload - reader.control.count)
                reader.control += bytes.prefix(room)
              }
              inPos += n
              reader.remaining -= n
            }
          }
          if reader.remaining == 0 {
            reader.inPayload = false
            switch SessionFrame.Channel(rawValue: reader.channel) {
            case .resize:
              if let size = try? JSONDecoder().decode(WindowSize.self, from: Data(reader.control)) {
                input?.resize(width: size.width, height: size.height)
              }
            case .stdinEOF:
              if reader.stdinOpen {
                reader.stdinOpen = false
                input?.endOfInput()
              }
            default: break
            }
          }
        }
      }
      if inPos == inLen {
        inPos = 0
        inLen = 0
      }

      // Output: one chunk at a time, taking turns between stdout and stderr.
      if outLen == 0 && !polledOutputs.isEmpty {
        let count = polledOutputs.count
        for step in 0..<count {
          let slot = (nextOutput + step) % count
          let i = polledOutputs[slot]
          guard fds[outputBase + slot].revents != 0 else { continue }
          let n = outbound.withUnsafeMutableBytes { buffer in
            read(outputs[i].fd, buffer.baseAddress! + SessionFrame.headerSize, Self.chunk)
          }
          if n > 0 {
            lastOutputAt = MonotonicClock.milliseconds()
            nextOutput = slot + 1
            guard let channel = outputs[i].channel else { break }
            outbound.withUnsafeMutableBytes {
              SessionFrame.writeHeader(channel, length: n, to: $0.baseAddress!)
            }
            outLen = SessionFrame.headerSize + n
            break
          } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
            // EOF, or EIO from a terminal master once the last slave closed.
            open[i] = false
          }
        }
      }
      if queueSlot >= 0, fds[queueSlot].revents != 0, let queue, outLen == 0 {
        let (bytes, exitCode) = queue.take()
        if !bytes.isEmpty {
          outbound = bytes
          outPos = 0
          outLen = bytes.count
        }
        if let exitCode {
          queueExit = exitCode
          queueEnded = true
        }
      }
      if processSlot >= 0, fds[processSlot].revents != 0 {
        processExited = true
        lastOutputAt = MonotonicClock.milliseconds()
      }
    }
  }
}

/// The resize payload: `{"width":W,"height":H}`.
struct WindowSize: Decodable {
  var width: UInt16
  var height: UInt16
}
