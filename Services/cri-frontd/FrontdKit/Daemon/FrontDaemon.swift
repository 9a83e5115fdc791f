import CrispConfig
import CrispCore
import CrispDaemon
import CrispIPC
import CrispLinux
import CrispTracing
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import Streaming

#if canImport(Glibc)
  import Glibc
#endif

/// Start-up and shutdown of cri-frontd.
public enum FrontDaemon {
  public static func run(configPath: String?, logLevel: String?, testHooks: Bool = false) async throws {
    let signals = TerminationSignals()
    let (config, logger) = try DaemonStartup.load(daemon: .frontd, configPath: configPath, logLevel: logLevel)
    // The launcher first, with root's capabilities; then frontd drops its own (which
    // re-executes it: the launcher's channel is adopted across that).
    let launcher = try Launcher.startOrAdopt(
      executable: LauncherShims.besideFrontd("crisp-launcher"), allowed: LauncherShims.launchable(config),
      logger: logger)
    let caps = try DaemonPrivileges.restrictCapabilities(to: CrispConfig.keptCapabilities(config.frontd.capabilities))
    let paths = config.paths
    let socketPath = config.criSocketPath

    // One frontd per run_root: a second one must not steal the socket of a live one.
    let lock: FileLock
    do {
      lock = try FileLock(path: paths.frontdLock)
    } catch {
      throw CrispError(.alreadyExists, "another cri-frontd is running for \(paths.runRoot): \(error.message)")
    }
    defer { lock.release() }

    var group: gid_t? = nil
    if !config.frontd.socketGroup.isEmpty {
      guard let entry = getgrnam(config.frontd.socketGroup) else {
        throw CrispError(.invalidArgument, "frontd.socket_group: no such group \(config.frontd.socketGroup)")
      }
      group = entry.pointee.gr_gid
    }
    if let slash = socketPath.lastIndex(of: "/"), slash != socketPath.startIndex {
      try makeDirectories(String(socketPath[..<slash]), mode: 0o711)
    }
    let fd = try UnixSocket.listen(path: socketPath, mode: 0o660, group: group)
    defer { unlink(socketPath) }

    // After the capability drop (a re-execution) and before the first IPC call.
    let tracing = try CrispTracing.start(config.tracing, daemon: .frontd, logger: logger)
    let peers = try DaemonPeers(config: config)
    try makeDirectories(paths.root, mode: 0o711)
    try makePrivateDirectory(paths.runRoot + "/pods")
    try makePrivateDirectory(paths.containersDir)
    let store = try MetadataStore(path: paths.database)
    let containerLauncher = ContainerLauncher(
      config: config, shims: LauncherShims(launcher: launcher, config: config),
      handlerFeatures: ContainerLauncher.probeHandlers(config))
    let sandboxes = try Sandboxes(
      store: store, network: NetdPeer(client: peers.netd, timeoutMs: NetdPeer.timeoutMs(config)),
      monitors: ShimClients(paths: paths), launcher: containerLauncher, logger: logger)
    let containers = try Containers(
      store: store, sandboxes: sandboxes, images: ImagedPeer(client: peers.imaged), events: ContainerEventHub(),
      logger: logger)
    let sweep = OrphanSweep(sandboxes: sandboxes, containers: containers, logger: logger)
    await sandboxes.recover()
    var streamingConfig = StreamingServerConfiguration()
    streamingConfig.address = config.frontd.streamAddress
    streamingConfig.port = config.frontd.streamPort
    streamingConfig.tlsCertificatePath = config.frontd.streamTLSCert
    streamingConfig.tlsKeyPath = config.frontd.streamTLSKey
    streamingConfig.tlsClientCAPath = config.frontd.streamTLSClientCA
    streamingConfig.idleTimeoutMs = Int64(config.frontd.streamIdleTimeoutMs)
    streamingConfig.tokenTTLMs = Int64(config.frontd.streamTokenTTLMs)
    streamingConfig.maxSessions = config.frontd.maxStreamSessions
    let streaming = StreamingServer(
      configuration: streamingConfig,
      backend: CrispStreamingBackend(sandboxes: sandboxes, containers: containers, netd: peers.netd),
      logger: logger)
    let streamingURL: String
    do {
      streamingURL = try await streaming.start()
    } catch {
      throw CrispError(
        .unavailable,
        "cannot start the streaming server on \(config.frontd.streamAddress):\(config.frontd.streamPort): \(error)")
    }
    let identity = DaemonIdentity(name: "cri-frontd")
    let runtimeService = RuntimeService(
      sandboxes: sandboxes, containers: containers, sweep: sweep, peers: peers,
      healthTimeoutMs: Int32(config.ipc.healthTimeoutMs), identity: identity, logger: logger, streaming: streaming)
    let metrics = try await MetricsServer.startIfConfigured(config.frontd, runtime: runtimeService, logger: logger)
    // The shims push container starts and exits here (GetContainerEvents).
    let shimEvents = try IPCEventReceiver(address: CrispPaths.ipcAddress(paths.eventsSocket), logger: logger)
    defer { shimEvents.close() }
    let control = try FrontdControl.listen(paths: paths, identity: identity, testHooks: testHooks, logger: logger)
    defer { control.close() }
    try confine(seccomp: config.seccomp, action: config.seccompAction, caps: caps, profile: .frontd, logger: logger)
    let server = GRPCServer(
      transport: .http2NIOPosix(listeningSocketDescriptor: Int(fd), transportSecurity: .plaintext),
      services: [runtimeService, ImageService(peers: peers, logger: logger)],
      interceptors: (tracing == nil ? [] : [RPCTracingInterceptor()]) + (metrics == nil ? [] : [MetricsInterceptor()]))

    let sweeper = Task { await sweep.run() }
    defer { sweeper.cancel() }
    try await withThrowingDiscardingTaskGroup { tasks in
      tasks.addTask {
        // The spans of the last calls are sent once the server has finished them.
        do {
          try await server.serve()
        } catch {
          await tracing?.shutdown()
          throw error
        }
        await tracing?.shutdown()
      }
      if let tracing { tasks.addTask { await tracing.run() } }
      tasks.addTask { await runtimeService.runContainerEvents(shimEvents) }
      tasks.addTask { await control.run() }
      if let metrics { tasks.addTask { await metrics.run() } }
      tasks.addTask {
        let signo = await signals.wait()
        logger.info("shutting down", metadata: ["signal": "\(signo)"])
        SystemdNotify.send("STOPPING=1")
        // Event streams never end on their own: end them, and the event pump.
        shimEvents.close()
        control.close()
        sweeper.cancel()
        runtimeService.events.close()
        server.beginGracefulShutdown()
        await streaming.stop()
        await metrics?.stop()
      }
      _ = try await server.listeningAddress
      logger.info(
        "serving the CRI",
        metadata: ["socket": "\(socketPath)", "streaming": "\(streamingURL)", "version": "\(CrispVersion.string)"])
      SystemdNotify.send("READY=1")
    }
    peers.close()
  }
}
