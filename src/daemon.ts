// berthd: wires the layers once and serves the CRI on a unix socket.
import { chmod, mkdir, open, readFile, stat, unlink } from "node:fs/promises";
import { createServer, type Server as NetServer } from "node:net";
import path from "node:path";
import { ImageServiceService, RuntimeServiceService } from "./gen/api.js";
import { warmUp, type WarmupCall } from "./grpc/warmup.js";
import { changedKeys, type Config, type LiveKey } from "./config.js";
import { isErrno } from "./errors.js";
import { StateLayout } from "./layout.js";
import type { Logger } from "./log.js";
import { runtimeInfoHandlers } from "./cri/runtime-info.js";
import { createGrpcServer } from "./cri/server.js";
import type { GrpcServer } from "./grpc/server.js";
import { statusName } from "./grpc/status.js";
import { imageHandlers } from "./cri/image.js";
import { LocalImageStore } from "./image/store.js";
import { NodeStatus } from "./runtime/node-status.js";
import { probeUserNamespaces } from "./runtime/userns.js";
import { observeUnrunnable } from "./runtime/oci/runc.js";
import { parseDuration, parseHostPort } from "./config.js";
import { CniConfWatcher } from "./cni/watcher.js";
import { CniNetwork } from "./cni/network.js";
import { sandboxHandlers } from "./cri/sandbox.js";
import { containerEventRendering, eventHandlers } from "./cri/events.js";
import { imageStreamHandlers, listStreamHandlers } from "./cri/list-stream.js";
import { EventBus } from "./runtime/events.js";
import { SandboxManager } from "./runtime/sandbox.js";
import type { SandboxLookup } from "./runtime/types.js";
import { faultTarget } from "./faults.js";
import { restore } from "./runtime/restore.js";
import { containerHandlers } from "./cri/container.js";
import { execHandlers } from "./cri/exec.js";
import { statsHandlers } from "./cri/stats.js";
import { openCgroups } from "./runtime/cgroups.js";
import { ContainerManager } from "./runtime/container.js";
import type { ContainerStore } from "./runtime/container-store.js";
import { OciRuntimes } from "./runtime/oci/runtimes.js";
import { PauseContainers } from "./runtime/infra.js";
import { StatsCollector } from "./runtime/stats.js";
import { streamingHandlers } from "./cri/streaming.js";
import { RuntimeStreaming, streamContainersOf } from "./runtime/streaming.js";
import { StreamServer } from "./stream/server.js";
import { IdleMemory } from "./idle-memory.js";
import { observeCalls, recordRpcs } from "./cri/rpc.js";
import { metricsHandlers } from "./cri/metrics.js";
import { recordPluginCalls } from "./cni/invoke.js";
import { BerthMetrics } from "./metrics/registry.js";
import { MetricsServer } from "./metrics/server.js";
import { PodMetricsCollector } from "./runtime/metrics.js";
import { trimMalloc } from "./native/native.js";
import type { ServiceNotifier } from "./notify.js";

export interface Daemon {
  readonly socket: string;
  /** Stops accepting calls, lets in-flight ones finish, releases the socket. Containers keep running. */
  shutdown(): Promise<void>;
  /** Applies the live keys (LIVE_KEYS) of a newly loaded config; returns them and the changed keys that need a restart. */
  reload(next: Config): { applied: LiveKey[]; restart: string[] };
}

/** The pid of the live berthd holding `<socket>.lock`, if any (a stale lock names a dead or other process). */
export async function lockHolder(lockPath: string): Promise<number | undefined> {
  const pid = Number.parseInt((await readFile(lockPath, "utf8").catch(() => "")).trim(), 10);
  return Number.isInteger(pid) && pid > 0 && pid !== process.pid && (await isBerthd(pid)) ? pid : undefined;
}

/** Takes `<socket>.lock` for this process, or explains which live berthd holds it. */
async function acquireLock(lockPath: string, socket: string): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(lockPath, "wx", 0o600);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return;
    } catch (err) {
      if (!isErrno(err, "EEXIST")) throw err;
    }
    const pid = await lockHolder(lockPath);
    if (pid !== undefined) {
      throw new Error(`another berthd (pid ${pid}) is serving ${socket} (lock file ${lockPath})`);
    }
    await unlink(lockPath).catch(() => undefined);
  }
  throw new Error(`cannot take lock file ${lockPath}`);
}

async function isBerthd(pid: number): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return cmdline.includes("berthd");
  } catch {
    return false;
  }
}

/** The gauges the metrics endpoint computes at scrape time, from the container and pod stores. */
function containerCounts(containers: ContainerStore, sandboxes: SandboxManager) {
  return {
    async containersByState(): Promise<Record<string, number>> {
      const out: Record<string, number> = { created: 0, running: 0, exited: 0 };
      for (const r of containers.containers()) out[r.phase] = (out[r.phase] ?? 0) + 1;
      return out;
    },
    podsByState(): Record<string, number> {
      const out: Record<string, number> = { ready: 0, notready: 0 };
      for (const p of sandboxes.list()) out[p.state] = (out[p.state] ?? 0) + 1;
      return out;
    },
    async monitors(): Promise<number> {
      const live = await Promise.all([...containers.containers(), ...sandboxes.list().flatMap((p) => containers.infraOf(p.id) ?? [])]
        .filter((r) => r.phase !== "exited" && r.conmonPid > 0)
        .map((r) => stat(`/proc/${r.conmonPid}`).then(() => 1, () => 0)));
      return live.reduce<number>((n, x) => n + x, 0);
    },
  };
}

export async function startDaemon(config: Config, log: Logger, version: string, notifier?: ServiceNotifier): Promise<Daemon> {
  const socket = config.socket;
  await mkdir(path.dirname(socket), { recursive: true, mode: 0o755 });
  // 0711 (no listing): the runc of a user-namespaced container reaches its rootfs as the pod's mapped root.
  await mkdir(config.root, { recursive: true, mode: 0o711 });
  await mkdir(config.state, { recursive: true, mode: 0o711 });
  const fault = faultTarget();
  if (fault) log[fault.known ? "warn" : "error"](fault, fault.known ? "BERTH_FAULT_AT set: berthd will kill itself at this point" : "BERTH_FAULT_AT names no fault point (see docs/recovery.md)");
  const lockPath = `${socket}.lock`;
  await acquireLock(lockPath, socket);
  const layout = new StateLayout(config);

  const cleanups: Array<() => Promise<void>> = [];
  // Lifecycle events for GetContainerEvents; what recovery publishes waits for serving() below.
  const events = new EventBus<Uint8Array>();
  let server: GrpcServer | undefined;
  let listener: NetServer | undefined;
  let images: LocalImageStore;
  // A second after the last state-changing call (and after the start-up warm-up), one full GC and malloc_trim (idle-memory.ts).
  const idle = new IdleMemory({ delayMs: 1000, gc: (globalThis as { gc?: () => void }).gc, trim: trimMalloc, log });
  try {
    await unlink(socket).catch((err) => {
      if (!isErrno(err, "ENOENT")) throw err;
    });

    // Prometheus metrics: the sinks go in before the layers (and the RPC handlers) are built.
    const metrics = new BerthMetrics(statusName);
    recordRpcs(metrics.rpcs);
    recordPluginCalls(metrics.cni);
    cleanups.push(async () => {
      recordRpcs(undefined);
      recordPluginCalls(undefined);
    });
    const cniConf = new CniConfWatcher(config.cni.conf_dir, config.cni.bin_dirs, log);
    await cniConf.start();
    cleanups.push(async () => cniConf.close());
    const node = new NodeStatus(config, version, () => cniConf.condition());
    observeUnrunnable((binary, why) => node.runtime.callFailed(binary, why));
    cleanups.push(async () => {
      observeUnrunnable(undefined);
      node.close();
    });
    await node.init();
    const network = new CniNetwork(cniConf, config.root, parseDuration(config.cni.plugin_timeout), log);
    await network.init();
    // images.snapshots is the Snapshots back-end containers use for their rootfs.
    images = new LocalImageStore(config, log, `berth/${version}`, metrics.pulls);
    await images.init();
    const userns = await probeUserNamespaces([config.root, config.state]);
    if (userns.supported) log.info("user namespaces: supported (idmapped mounts work on berth's root and state)");
    else log.warn({ reason: userns.reason }, "user namespaces: not supported; pods asking for one are refused and Status reports user_namespaces false");
    node.userNamespaces = userns.supported;
    const cgroups = await openCgroups(config.cgroup_driver);
    // One OCI runtime per handler, shared by the container lifecycle, restore and streaming.
    const runtimes = new OciRuntimes(config, layout);
    // Pods and containers use each other: containers look pods up through `pods`, bound to the
    // sandbox manager built next with the containers and their infra runner.
    let sandboxes: SandboxManager | undefined;
    const pods: SandboxLookup = { getSandbox: (id) => sandboxes?.getSandbox(id), infraExited: (id) => sandboxes?.infraExited(id) };
    const containers = new ContainerManager({ config, log, images, snapshots: images.snapshots, sandboxes: pods, cgroups, events, metrics: metrics.containers, layout, runtimes });
    images.setVolumeUsers((id) => containers.imageVolumeUser(id));
    cleanups.push(async () => containers.close());
    const infra = new PauseContainers(containers, images, config.image.pause_image);
    sandboxes = new SandboxManager({ config, network, log, podCidr: () => node.podCidr, events, userns, layout, containers, infra });
    // Records, pods, containers, orphans: the one restore order (runtime/restore.ts).
    await restore({ config, containers, sandboxes, runtimes, cgroups, snapshots: images.snapshots, network, log });
    const stats = new StatsCollector(containers, cgroups, images.snapshots, sandboxes, () => sandboxes.list().map((p) => p.id));
    const podMetrics = new PodMetricsCollector(containers, cgroups, images.snapshots, sandboxes, () => sandboxes.list().map((p) => p.id), images.imageRoot);
    metrics.registerContainerCounts(containerCounts(containers.store, sandboxes));
    metrics.registerEventCounters(events);
    if (config.metrics.address !== "") {
      const { host, port } = parseHostPort(config.metrics.address, "metrics.address");
      const endpoint = new MetricsServer({ host, port, tlsCert: config.metrics.tls_cert, tlsKey: config.metrics.tls_key }, metrics.registry, log);
      // A taken port costs the endpoint, not the CRI: kubelet keeps its runtime.
      await endpoint.start().then(
        () => cleanups.push(() => endpoint.stop()),
        (err: unknown) => log.error({ address: config.metrics.address, err: String(err) }, "metrics endpoint not started (metrics.address)"),
      );
    }
    // Streaming: the URLs Exec, Attach and PortForward hand out, and the processes behind them.
    const streams = new StreamServer({
      address: config.stream.address,
      port: config.stream.port,
      idleTimeoutMs: parseDuration(config.stream.idle_timeout),
      tlsCert: config.stream.tls_cert,
      tlsKey: config.stream.tls_key,
    }, new RuntimeStreaming({ containers: streamContainersOf(containers, runtimes), sandboxes, log }), log);
    await streams.start();
    cleanups.push(() => streams.stop());
    observeCalls((method) => idle.callDone(method));
    idle.schedule();
    cleanups.push(async () => {
      observeCalls(undefined);
      idle.close();
    });
    events.serving(containerEventRendering({ pods: sandboxes, containers }));
    server = createGrpcServer(
      {
        ...runtimeInfoHandlers(node, log), ...sandboxHandlers(sandboxes, containers, log),
        ...containerHandlers(containers, log), ...execHandlers(containers, log), ...statsHandlers(stats, log), ...metricsHandlers(podMetrics, log),
        ...streamingHandlers(streams, log), ...eventHandlers(events, log), ...listStreamHandlers(sandboxes, containers, stats, log),
      },
      { ...imageHandlers(images, log), ...imageStreamHandlers(images, log) },
      log,
    );
    // berth owns the listening socket and speaks HTTP/2 on each connection itself (src/grpc/h2.ts).
    const grpc = server;
    listener = createServer((conn) => grpc.serve(conn));
    await new Promise<void>((resolve, reject) => {
      listener!.once("error", reject);
      listener!.listen(socket, () => resolve());
    });
    await chmod(socket, 0o660);
  } catch (err) {
    listener?.close();
    server?.forceShutdown();
    await unlink(lockPath).catch(() => undefined);
    throw err;
  }
  log.info({ socket, root: config.root, state: config.state, version }, "berthd serving");
  notifier?.notify("READY=1", log);
  const warmupAbort = new AbortController();
  // Its calls leave garbage and are not counted as work: the collection after start waits for its end.
  const warmup = config.warmup_calls > 0 ? warmUpSelf(server!, layout.warmupSocket, config.warmup_calls, warmupAbort.signal, log).then(() => idle.schedule()) : Promise.resolve();

  // How each live key reaches the part that uses it; the compiler wants one entry per LIVE_KEYS item.
  const applyLive: Record<LiveKey, (next: Config) => void> = {
    log_level: (next) => {
      log.level = next.log_level;
      config.log_level = next.log_level;
    },
    "image.mirrors": (next) => (config.image.mirrors = next.image.mirrors),
    "image.insecure_registries": (next) => (config.image.insecure_registries = next.image.insecure_registries),
    "image.ca_files": (next) => (config.image.ca_files = next.image.ca_files),
    "image.pull_progress_timeout": (next) => (config.image.pull_progress_timeout = next.image.pull_progress_timeout),
  };
  const reload = (next: Config) => {
    const { live, restart } = changedKeys(config, next);
    for (const k of live) applyLive[k](next);
    // Always: the CA files are read again even when their list is the same (a renewed CA).
    images.setRegistryConfig(config.image);
    return { applied: live, restart };
  };

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    (stopping ??= (async () => {
      notifier?.notify("STOPPING=1", log);
      log.info("berthd shutting down: finishing in-flight calls");
      listener!.close();
      warmupAbort.abort();
      await warmup;
      // Event subscriptions never end by themselves: end them so the in-flight calls can finish.
      events.close();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          log.warn("in-flight calls did not finish in 10s; closing them");
          server!.forceShutdown();
          resolve();
        }, 10_000);
        server!.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      for (const c of cleanups.reverse()) await c().catch((err) => log.error({ err: String(err) }, "cleanup failed"));
      await unlink(socket).catch(() => undefined);
      await unlink(lockPath).catch(() => undefined);
      log.info("berthd stopped");
    })());
  return { socket, shutdown, reload };
}

/** What the start-up warm-up calls: the read-only calls kubelet polls, each cheap whatever the node holds. */
const WARMUP: WarmupCall[] = [
  RuntimeServiceService.listPodSandbox, RuntimeServiceService.listContainers, RuntimeServiceService.status,
  RuntimeServiceService.version, ImageServiceService.imageFsInfo, ImageServiceService.listImages,
].map((m) => ({ path: m.path, message: new Uint8Array(0) }));

/**
 * About `calls` warm-up calls (src/grpc/warmup.ts) on a private socket whose connections the
 * server marks internal; the socket is gone when they are done. A failure only costs the warm-up.
 */
async function warmUpSelf(server: GrpcServer, file: string, calls: number, signal: AbortSignal, log: Logger): Promise<void> {
  await unlink(file).catch(() => undefined);
  const l = createServer((c) => server.serve(c, true));
  try {
    await new Promise<void>((resolve, reject) => {
      l.once("error", reject);
      l.listen(file, () => resolve());
    });
    await chmod(file, 0o600);
    const started = performance.now();
    const cpu0 = process.cpuUsage();
    const n = await warmUp(file, WARMUP, Math.ceil(calls / WARMUP.length), signal);
    const cpu = process.cpuUsage(cpu0);
    log.info({ calls: n, ms: Math.round(performance.now() - started), cpuMs: Math.round((cpu.user + cpu.system) / 1000) }, "start-up warm-up done");
  } catch (err) {
    log.warn({ err: String(err) }, "start-up warm-up failed (berthd serves as usual)");
  } finally {
    l.close();
    await unlink(file).catch(() => undefined);
  }
}
