import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import GRPCCore

extension RuntimeService {
  /// Records the pod, has netd create and pin its namespaces and run CNI ADD, writes
  /// its resolv.conf, hostname and hosts and mounts its /dev/shm, then marks it ready.
  /// Anything that fails undoes what was done before it.
  func runPodSandbox(request: Runtime_V1_RunPodSandboxRequest, context: ServerContext) async throws
    -> Runtime_V1_RunPodSandboxResponse
  {
    try await rpc { () async throws(CrispError) in
      let config = request.config
      guard request.hasConfig, config.hasMetadata else {
        throw CrispError(.invalidArgument, "RunPodSandbox: config.metadata is required")
      }
      let metadata = config.metadata
      for (field, value) in [("name", metadata.name), ("namespace", metadata.namespace), ("uid", metadata.uid)]
      where value.isEmpty {
        throw CrispError(.invalidArgument, "RunPodSandbox: config.metadata.\(field) must not be empty")
      }
      guard let runtimePath = runtime.config.frontd.runtimePath(handler: request.runtimeHandler) else {
        let known = (["runc"] + runtime.config.frontd.runtimeHandlers.keys.sorted()).joined(separator: ", ")
        throw CrispError(
          .invalidArgument, "RunPodSandbox: unknown runtime_handler \"\(request.runtimeHandler)\" (crisp has: \(known))"
        )
      }
      guard access(runtimePath, X_OK) == 0 else {
        throw CrispError(
          .failedPrecondition,
          "RunPodSandbox: runtime_handler \"\(request.runtimeHandler)\": \(runtimePath) is not an executable")
      }
      let namespaces = config.linux.securityContext.namespaceOptions
      if namespaces.hasUsernsOptions && namespaces.usernsOptions.mode == .pod {
        throw CrispError(.unimplemented, "RunPodSandbox: user namespaces are not supported")
      }
      let hostNetwork = namespaces.network == .node
      let hostIPC = namespaces.ipc == .node
      var hostname = config.hostname
      if hostNetwork || hostname.isEmpty {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        hostname = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
      }

      var pod = PodRecord(
        id: newRuntimeID(), name: metadata.name, namespace: metadata.namespace, uid: metadata.uid,
        attempt: metadata.attempt, state: .creating, createdAt: WallClock.nowNanoseconds(),
        config: try Self.encode(config),
        runtimeHandler: request.runtimeHandler.isEmpty ? "runc" : request.runtimeHandler,
        ips: [], netns: "", ipcns: "", utsns: "")
      try runtime.store.insertPod(pod)
      return try await runtime.withPodLock(pod.id) { () async throws(CrispError) in
        let directory = runtime.podDirectory(pod.id)
        do throws(CrispError) {
          let setup = PodNetworkSetup.Request(
            podID: pod.id, podName: metadata.name, podNamespace: metadata.namespace, podUID: metadata.uid,
            hostNetwork: hostNetwork, hostIPC: hostIPC, hostname: hostNetwork ? "" : hostname,
            sysctls: config.linux.sysctls,
            portMappings: config.portMappings.map {
              PortMapping(
                protocol: "\($0.protocol)".lowercased(), containerPort: $0.containerPort, hostPort: $0.hostPort,
                hostIP: $0.hostIp)
            },
            dns: config.hasDnsConfig
              ? DNSSettings(
                servers: config.dnsConfig.servers, searches: config.dnsConfig.searches,
                options: config.dnsConfig.options)
              : nil)
          let network = try await FrontdMetrics.timeNetwork(.add) { () async throws(CrispError) in
            try await peers.netd.call(PodNetworkSetup.self, setup, timeoutMs: runtime.networkTimeoutMs)
          }
          pod.ips = network.ips
          pod.netns = network.namespaces.network
          pod.ipcns = network.namespaces.ipc
          pod.utsns = network.namespaces.uts
          try PodFiles.create(
            directory: directory, config: config, hostname: hostname, ips: network.ips, hostNetwork: hostNetwork,
            hostIPC: hostIPC)
          try runtime.store.updatePod(pod)
          if Self.sharesPIDNamespace(config) { try await startInfra(pod, config) }
          pod.state = .ready
          try runtime.store.updatePod(pod)
        } catch {
          logger.warning(
            "pod sandbox creation failed, undoing it", metadata: ["pod": "\(pod.id)", "error": "\(error)"])
          await removeInfra(pod)
          _ = try? await peers.netd.call(
            PodNetworkTeardown.self, .init(podID: pod.id), timeoutMs: runtime.networkTimeoutMs)
          PodFiles.remove(directory)
          try? runtime.store.deletePod(pod.id)
          throw error
        }
        logger.info(
          "pod sandbox ready",
          metadata: ["pod": "\(pod.id)", "name": "\(pod.namespace)/\(pod.name)", "ips": "\(pod.ips)"])
        var response = Runtime_V1_RunPodSandboxResponse()
        response.podSandboxID = pod.id
        return response
      }
    }
  }

  static func encode(_ config: Runtime_V1_PodSandboxConfig) throws(CrispError) -> [UInt8] {
    do {
      return try config.serializedBytes()
    } catch {
      throw CrispError(.invalidArgument, "pod sandbox config cannot be encoded: \(error)")
    }
  }
}
