import CrispCore
import Foundation
import Logging
import NIOCore

/// The client side of a remotecommand session as its protocol (SPDY or WebSocket) offers it.
/// Everything runs on the client connection's event loop.
protocol RemoteCommandTransport: AnyObject {
  func send(_ output: RemoteCommandOutput, _ data: ByteBuffer)
  /// Whether more output goes to the client now (socket writable, windows open).
  var canSend: Bool { get }
  /// Stops or resumes reading the client's socket; calls nest (each pause needs a resume).
  func pauseReading()
  func resumeReading()
  /// Writes the final status as the negotiated protocol wants it, ends the output streams and
  /// closes the connection.
  func end(status: RemoteCommandStatus)
}

/// One exec or attach between a client transport and the backend's session socket: relays
/// stdin, stdout, stderr and resizes with back-pressure both ways, and turns the backend's end
/// frame into the remotecommand status.
final class RemoteCommandSession {
  enum Kind {
    case exec(containerID: String, command: [String])
    case attach(containerID: String)
  }

  private enum State {
    case idle, starting
    case running(Channel)
    case ended
  }

  let kind: Kind
  let options: StreamOptions
  private let backend: any StreamingBackend
  private let eventLoop: EventLoop
  private let logger: Logger
  weak var transport: (any RemoteCommandTransport)?
  private var state = State.idle
  /// Input read from the client before the backend socket was there.
  private var queued: [SessionFrame] = []
  private var pausedClient = false
  private var onFinish: (() -> Void)?

  init(
    kind: Kind, options: StreamOptions, backend: any StreamingBackend, eventLoop: EventLoop, logger: Logger,
    onFinish: @escaping () -> Void
  ) {
    self.kind = kind
    self.options = options
    self.backend = backend
    self.eventLoop = eventLoop
    self.logger = logger
    self.onFinish = onFinish
  }

  /// Asks the backend for the session; the client's input waits (unread) meanwhile.
  func start() {
    guard case .idle = state else { return }
    state = .starting
    pauseClient(true)
    let backend = self.backend
    let kind = self.kind
    let options = self.options
    let me = NIOLoopBound(self, eventLoop: eventLoop)
    BackendConnection.obtain(on: eventLoop) {
      switch kind {
      case .exec(let containerID, let command):
        try await backend.exec(containerID: containerID, command: command, options: options)
      case .attach(let containerID):
        try await backend.attach(containerID: containerID, options: options)
      }
    } then: { result in
      me.value.backendObtained(result)
    }
  }

  private func backendObtained(_ result: Result<Int32, CrispError>) {
    switch result {
    case .failure(let error):
      logger.info("streaming session could not start: \(error.message)")
      finish(.failure(message: error.message))
    case .success(let fd):
      guard case .starting = state else {
        closeFD(fd)  // the client left meanwhile
        return
      }
      let me = NIOLoopBound(self, eventLoop: eventLoop)
      BackendConnection.connect(fd: fd, on: eventLoop) { channel in
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(ByteToMessageHandler(SessionFrameDecoder()))
        try sync.addHandler(SessionFrameEncoder())
        try sync.addHandler(BackendSessionHandler(session: me.value))
      }.whenComplete { result in
        let session = me.value
        switch result {
        case .success(let channel):
          session.backendConnected(channel)
        case .failure(let error):
          session.finish(.failure(message: "cannot use the session socket: \(error)"))
        }
      }
    }
  }

  private func backendConnected(_ channel: Channel) {
    guard case .starting = state else {
      channel.close(promise: nil)
      return
    }
    state = .running(channel)
    for frame in queued { channel.write(frame, promise: nil) }
    queued.removeAll()
    channel.flush()
    pauseClient(!channel.isWritable)
  }

  // MARK: from the client

  func clientStdin(_ data: ByteBuffer) {
    guard options.stdin else { return }
    toBackend(SessionFrame(.stdin, payload: data))
  }

  func clientStdinEnd() {
    guard options.stdin else { return }
    toBackend(SessionFrame(.stdinEOF))
  }

  func clientResize(_ size: TerminalSize) {
    guard options.tty else { return }
    var payload = ByteBuffer()
    payload.writeString(#"{"width":\#(size.width),"height":\#(size.height)}"#)
    toBackend(SessionFrame(.resize, payload: payload))
  }

  func clientWritable() {
    if case .running(let channel) = state, transport?.canSend == true {
      try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
      channel.read()
    }
  }

  /// The client connection is gone: closing the session socket makes the shim kill the exec'd
  /// process (or detach an attach).
  func clientGone() {
    switch state {
    case .running(let channel):
      state = .ended
      channel.close(promise: nil)
    case .idle, .starting:
      state = .ended
    case .ended:
      break
    }
    done()
  }

  private func toBackend(_ frame: SessionFrame) {
    switch state {
    case .idle, .starting:
      queued.append(frame)
    case .running(let channel):
      channel.writeAndFlush(frame, promise: nil)
      if !channel.isWritable { pauseClient(true) }
    case .ended:
      break
    }
  }

  private func pauseClient(_ pause: Bool) {
    guard pause != pausedClient else { return }
    pausedClient = pause
    if pause { transport?.pauseReading() } else { transport?.resumeReading() }
  }

  // MARK: from the backend

  func backendFrame(_ frame: SessionFrame) {
    guard case .running(let channel) = state else { return }
    switch SessionChannel(rawValue: frame.channel) {
    case .stdout:
      transport?.send(.stdout, frame.payload)
    case .stderr:
      // A terminal merges stderr into stdout; the shim should never send it then.
      transport?.send(options.tty ? .stdout : .stderr, frame.payload)
    case .end:
      finish(status(fromEnd: frame.payload))
      return
    default:
      logger.debug("session frame on unexpected channel \(frame.channel) ignored")
    }
    if transport?.canSend == false {
      try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
    }
  }

  func backendWritable() {
    if case .running = state { pauseClient(false) }
  }

  func backendClosed() {
    if case .running = state {
      finish(.failure(message: "the session ended without an exit status (its shim went away)"))
    }
  }

  func backendFailed(_ why: String) {
    if case .running = state {
      finish(.failure(message: "session socket: \(why)"))
    }
  }

  private func status(fromEnd payload: ByteBuffer) -> RemoteCommandStatus {
    let json = (try? JSONSerialization.jsonObject(with: Data(payload.readableBytesView))) as? [String: Any]
    if let message = json?["error"] as? String {
      return .failure(message: message)
    }
    guard let code = (json?["exitCode"] as? NSNumber)?.int32Value else {
      return .failure(message: "the session ended with an unreadable status")
    }
    // kubelet: an attach ends in Success whatever the container's exit code.
    if case .attach = kind { return .success }
    return code == 0 ? .success : .exitCode(code)
  }

  private func finish(_ status: RemoteCommandStatus) {
    let previous = state
    state = .ended
    if case .running(let channel) = previous { channel.close(promise: nil) }
    if case .ended = previous { return }
    transport?.end(status: status)
    done()
  }

  private func done() {
    onFinish?()
    onFinish = nil
  }
}
