// The pod sandbox manager: a pod is a set of pinned namespaces (net, ipc, uts), a CNI
// attachment, a few files (hostname, hosts, resolv.conf), a /dev/shm tmpfs and, only
// when the pod shares a PID namespace, an infra container. Every pod's metadata lives in
// the crash-safe record store from before its first resource exists, so a crash at any
// step leaves a NOTREADY pod that RemovePodSandbox can still clean up.
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { hostname as osHostname } from "node:os";
import path from "node:path";
import type { Config } from "../config.js";
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unimplemented, wrap } from "../errors.js";
import { NamespaceMode, type NamespaceOption, type PodSandboxConfig, type PodSandboxMetadata } from "../gen/api.js";
import type { Logger } from "../log.js";
import { bandwidthFromAnnotations, orderPodIPs, resultAddresses, resultIPs, type CapabilityArgs } from "../cni/config.js";
import type { Attachment, PodNetwork } from "../cni/network.js";
import { KeyedLock } from "../store/keyed-lock.js";
import { RecordStore } from "../store/records.js";
import { isPinned, mountShm, pinNamespaces, removePath, stageNetnsForTeardown, unmount, unpinNamespaces, writeSysctlIn, type PinnedKind } from "./namespaces.js";
import { cgroupParent, hostsFile, matchesLabels, podHostname, podSysctls, portMappingsCapability, resolvConf, sandboxName, validateMetadata } from "./sandbox-config.js";
import type { InfraContainers, PodContainers, SandboxLookup, SandboxRef, SandboxState } from "./types.js";

const SHM_SIZE = 64 * 1024 * 1024;

/** What berth keeps about a pod (the record store's value). */
export interface SandboxRecord {
  id: string;
  /** The reserved name: name_namespace_uid_attempt. */
  name: string;
  metadata: PodSandboxMetadata;
  /** Nanoseconds since the epoch. */
  createdAt: bigint;
  state: SandboxState;
  /** The configured handler the pod runs with (the default when the request named none). */
  runtimeHandler: string;
  /** The handler as the request named it ("" for the default), reported back like containerd does. */
  requestedHandler: string;
  config: PodSandboxConfig;
  namespaceOptions: NamespaceOption;
  hostname: string;
  nsDir: string;
  netnsPath?: string;
  ipcnsPath?: string;
  utsnsPath?: string;
  podDir: string;
  resolvConfPath: string;
  hostsPath: string;
  hostnamePath: string;
  shmPath: string;
  cgroupParent: string;
  sysctls: Record<string, string>;
  privileged: boolean;
  /** CNI network name and result of the attachment, once attached. */
  network?: { name: string; result: unknown; ips: string[] };
  /** True once nothing is (or may be) attached to the pod network: host network, or after CNI DEL. */
  networkDetached: boolean;
  /** The pod has (or was getting) an infra container: stop and remove it, even after a failed start. */
  needsInfra: boolean;
  infra?: { containerId: string; pid: number };
}

export interface SandboxFilter {
  id?: string;
  state?: SandboxState;
  labelSelector?: Record<string, string>;
}

export interface SandboxManagerOptions {
  config: Config;
  network: PodNetwork;
  log: Logger;
  /** The node's pod CIDR (UpdateRuntimeConfig), for the ipRanges capability. */
  podCidr?: () => string;
}

const isHost = (mode: NamespaceMode | undefined) => mode === NamespaceMode.NODE;

export class SandboxManager implements SandboxLookup {
  private readonly pods = new Map<string, SandboxRecord>();
  /** Reserved names to the id holding them. */
  private readonly names = new Map<string, string>();
  private readonly locks = new KeyedLock();
  private readonly store: RecordStore<SandboxRecord>;
  private containers: PodContainers | undefined;
  private infra: InfraContainers | undefined;
  private readonly config: Config;
  private readonly network: PodNetwork;
  private readonly log: Logger;
  private readonly podCidr: () => string;

  constructor(opts: SandboxManagerOptions) {
    this.config = opts.config;
    this.network = opts.network;
    this.log = opts.log;
    this.podCidr = opts.podCidr ?? (() => "");
    this.store = new RecordStore<SandboxRecord>(path.join(opts.config.root, "sandboxes"));
  }

  /** The container layer, asked to stop and remove a pod's containers. */
  setContainers(containers: PodContainers): void {
    this.containers = containers;
  }

  /** The infra-container runner, for pods that share a PID namespace. */
  setInfra(infra: InfraContainers): void {
    this.infra = infra;
  }

  /** Loads every pod from the store; a ready pod whose network pin vanished (e.g. after a reboot) becomes NOTREADY. */
  async init(): Promise<void> {
    const { records, problems } = await this.store.loadAll();
    for (const p of problems) this.log.error(p, "corrupt sandbox record quarantined");
    for (const [id, rec] of records) {
      if (rec.id !== id || typeof rec.name !== "string") {
        this.log.error({ id }, "sandbox record does not match its file name; ignored");
        continue;
      }
      if (rec.state === "ready" && !(await this.pinsAlive(rec))) {
        rec.state = "notready";
        this.log.warn({ id, name: rec.name }, "sandbox namespaces are gone; marked NOTREADY");
        await this.store.put(id, rec).catch((err) => this.log.error({ id, err: String(err) }, "cannot save sandbox record"));
      }
      this.pods.set(id, rec);
      this.names.set(rec.name, id);
    }
    this.log.info({ sandboxes: this.pods.size }, "sandboxes loaded");
  }

  private async pinsAlive(rec: SandboxRecord): Promise<boolean> {
    for (const p of [rec.netnsPath, rec.ipcnsPath, rec.utsnsPath]) {
      if (p !== undefined && !(await isPinned(p))) return false;
    }
    if (rec.infra && !(await readFile(`/proc/${rec.infra.pid}/stat`).then(() => true, () => false))) return false;
    return true;
  }

  getSandbox(id: string): SandboxRef | undefined {
    const rec = this.pods.get(id);
    return rec && toRef(rec);
  }

  /** The full id for an id or a unique id prefix. */
  resolve(idOrPrefix: string): string | undefined {
    if (idOrPrefix === "") return undefined;
    if (this.pods.has(idOrPrefix)) return idOrPrefix;
    const matches = [...this.pods.keys()].filter((id) => id.startsWith(idOrPrefix));
    if (matches.length > 1) throw new InvalidArgument(`pod sandbox id prefix "${idOrPrefix}" is ambiguous (${matches.length} pods match)`);
    return matches[0];
  }

  get(idOrPrefix: string): SandboxRecord {
    const id = this.resolve(idOrPrefix);
    const rec = id === undefined ? undefined : this.pods.get(id);
    if (!rec) throw new NotFound(`pod sandbox "${idOrPrefix}" not found`);
    return rec;
  }

  list(filter: SandboxFilter = {}): SandboxRecord[] {
    let recs = [...this.pods.values()];
    if (filter.id) {
      let id: string | undefined;
      try {
        id = this.resolve(filter.id);
      } catch {
        return [];
      }
      recs = recs.filter((r) => r.id === id);
    }
    if (filter.state) recs = recs.filter((r) => r.state === filter.state);
    if (filter.labelSelector) recs = recs.filter((r) => matchesLabels(r.config.labels, filter.labelSelector!));
    return recs.sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0));
  }

  /** RunPodSandbox: all or nothing; the error names the step that failed. */
  async run(config: PodSandboxConfig | undefined, runtimeHandler: string): Promise<string> {
    if (!config) throw new InvalidArgument("config is required");
    const md = validateMetadata(config.metadata);
    const handler = runtimeHandler || this.config.runtime.default_handler;
    if (!this.config.runtime.handlers[handler]) {
      throw new InvalidArgument(`runtime_handler "${runtimeHandler}" is not configured; known handlers: ${Object.keys(this.config.runtime.handlers).join(", ")}`);
    }
    const linux = config.linux;
    const ns: NamespaceOption = linux?.securityContext?.namespaceOptions ?? { network: NamespaceMode.POD, pid: NamespaceMode.POD, ipc: NamespaceMode.POD, targetId: "", usernsOptions: undefined };
    const userns = ns.usernsOptions;
    if (userns && userns.mode === NamespaceMode.POD && (userns.uids.length > 0 || userns.gids.length > 0)) {
      throw new Unimplemented("pod user namespaces (namespace_options.userns_options.mode = POD) are not supported by berth");
    }
    const hostNetwork = isHost(ns.network);
    const hostIpc = isHost(ns.ipc);
    const hostname = podHostname(config.hostname, md.name, hostNetwork, osHostname());
    const resolv = resolvConf(config.dnsConfig, await readFile("/etc/resolv.conf", "utf8").catch(() => ""));
    const sysctls = podSysctls(linux?.sysctls ?? {}, hostNetwork, hostIpc);
    const cgroup = cgroupParent(this.config.cgroup_driver, linux?.cgroupParent ?? "");
    let caps: CapabilityArgs;
    try {
      caps = {
        portMappings: portMappingsCapability(config.portMappings),
        bandwidth: bandwidthFromAnnotations(config.annotations),
        ipRanges: this.podCidr() ? this.podCidr().split(",").map((subnet) => [{ subnet }]) : undefined,
        dns: config.dnsConfig && { servers: config.dnsConfig.servers, searches: config.dnsConfig.searches, options: config.dnsConfig.options },
      };
    } catch (err) {
      throw err instanceof InvalidArgument ? err : new InvalidArgument(`bandwidth annotation: ${(err as Error).message}`);
    }
    const needInfra = ns.pid === NamespaceMode.POD || !this.config.runtime.drop_infra;
    if (needInfra && !this.infra) {
      throw new FailedPrecondition(
        ns.pid === NamespaceMode.POD
          ? "the pod shares one PID namespace (namespace_options.pid = POD), which needs an infra container, and this berthd has no infra container runtime wired; use pid = CONTAINER or NODE"
          : "runtime.drop_infra = false needs an infra container runtime, and this berthd has none wired",
      );
    }

    const name = sandboxName(md);
    const holder = this.names.get(name);
    if (holder !== undefined) throw new AlreadyExists(`failed to reserve sandbox name "${name}": name "${name}" is reserved for "${holder}"`);
    const id = randomBytes(32).toString("hex");
    this.names.set(name, id);

    const podDir = path.join(this.config.state, "pods", id);
    const rec: SandboxRecord = {
      id,
      name,
      metadata: md,
      createdAt: BigInt(Date.now()) * 1_000_000n,
      state: "notready",
      runtimeHandler: handler,
      requestedHandler: runtimeHandler,
      config,
      namespaceOptions: ns,
      hostname,
      nsDir: path.join(this.config.state, "ns", id),
      podDir,
      resolvConfPath: path.join(podDir, "resolv.conf"),
      hostsPath: path.join(podDir, "hosts"),
      hostnamePath: path.join(podDir, "hostname"),
      shmPath: hostIpc ? "/dev/shm" : path.join(podDir, "shm"),
      cgroupParent: cgroup,
      sysctls: Object.fromEntries(sysctls.map((s) => [s.key, s.value])),
      privileged: linux?.securityContext?.privileged ?? false,
      networkDetached: hostNetwork,
      needsInfra: needInfra,
    };

    return this.locks.run(id, async () => {
      let step = "save sandbox record";
      try {
        await this.store.put(id, rec);
        this.pods.set(id, rec);

        step = "create pod dir";
        await mkdir(podDir, { recursive: true, mode: 0o711 });

        step = "pin namespaces";
        const kinds: PinnedKind[] = [];
        if (!hostNetwork) kinds.push("net", "uts");
        if (!hostIpc) kinds.push("ipc");
        const pins = await pinNamespaces(rec.nsDir, kinds, hostname);
        rec.netnsPath = pins.net;
        rec.ipcnsPath = pins.ipc;
        rec.utsnsPath = pins.uts;

        for (const s of sysctls) {
          step = `set sysctl ${s.key}=${s.value}`;
          await writeSysctlIn(s.kind, s.kind === "net" ? rec.netnsPath! : rec.ipcnsPath!, s.procPath, s.value);
        }

        step = "mount /dev/shm";
        if (!hostIpc) await mountShm(rec.shmPath, SHM_SIZE);

        step = "write hostname and resolv.conf";
        await writeFile(rec.hostnamePath, `${hostname}\n`, { mode: 0o644 });
        await writeFile(rec.resolvConfPath, resolv, { mode: 0o644 });

        if (!hostNetwork) {
          step = "set up pod network";
          try {
            const attached = await this.network.setUp(this.attachment(rec), caps);
            rec.network = { name: attached.network, result: attached.result, ips: orderPodIPs(resultIPs(attached.result)) };
          } catch (err) {
            // setUp undid its own partial attachment.
            rec.networkDetached = true;
            throw err;
          }
        }

        step = "write hosts";
        const hosts = hostNetwork ? await readFile("/etc/hosts", "utf8").catch(() => hostsFile(hostname, [])) : hostsFile(hostname, rec.network?.ips ?? []);
        await writeFile(rec.hostsPath, hosts, { mode: 0o644 });

        if (needInfra) {
          step = "start infra container";
          rec.infra = await this.infra!.start(toRef(rec));
        }

        step = "save sandbox record";
        rec.state = "ready";
        await this.store.put(id, rec);
      } catch (err) {
        rec.state = "notready";
        const failed = wrap(`RunPodSandbox "${name}": ${step}`, err);
        try {
          await this.release(rec);
          await this.forget(rec);
        } catch (undoErr) {
          this.log.error({ id, err: String(undoErr) }, "undoing a failed RunPodSandbox failed; pod left NOTREADY for RemovePodSandbox");
          await this.store.put(id, rec).catch(() => undefined);
          throw wrap(`${failed.message}; undoing it also failed (pod ${id} left NOTREADY, remove it with RemovePodSandbox)`, undoErr);
        }
        throw failed;
      }
      this.log.info({ id, name, ips: rec.network?.ips }, "pod sandbox ready");
      return id;
    });
  }

  private attachment(rec: SandboxRecord): Attachment {
    return { containerId: rec.id, netns: rec.netnsPath ?? path.join(rec.nsDir, "net"), podName: rec.metadata.name, podNamespace: rec.metadata.namespace, podUid: rec.metadata.uid };
  }

  /** Releases what a stopped pod no longer needs: the network, the /dev/shm tmpfs and the namespace pins. Idempotent. */
  private async release(rec: SandboxRecord): Promise<void> {
    if (rec.needsInfra && this.infra) await this.infra.stop(rec.id).catch((err) => { throw wrap("stop infra container", err); });
    if (!rec.networkDetached) {
      const att = this.attachment(rec);
      if (!(await isPinned(att.netns))) {
        // The pin vanished (reboot, crash) and took eth0 with it: stage a stand-in so plugins find their rules' addresses.
        const cidrs = resultAddresses(rec.network?.result);
        att.netns = cidrs.length && rec.netnsPath ? await stageNetnsForTeardown(rec.nsDir, "eth0", cidrs).catch((err) => {
          this.log.warn({ id: rec.id, err: String(err) }, "cannot stage a network namespace for CNI DEL; deleting without one");
          return "";
        }) : "";
      }
      await this.network.tearDown(att).catch((err) => { throw wrap("tear down pod network", err); });
      rec.networkDetached = true;
    }
    if (rec.shmPath !== "/dev/shm") await unmount(rec.shmPath).catch((err) => { throw wrap("unmount /dev/shm", err); });
    await unpinNamespaces(rec.nsDir).catch((err) => { throw wrap("unpin namespaces", err); });
  }

  /** Drops the pod's files, record and name. */
  private async forget(rec: SandboxRecord): Promise<void> {
    if (rec.needsInfra && this.infra) await this.infra.remove(rec.id).catch((err) => { throw wrap("remove infra container", err); });
    // The shm mount point is inside podDir: never recurse into a still-mounted tmpfs.
    if (rec.shmPath !== "/dev/shm") await unmount(rec.shmPath);
    await removePath(rec.podDir);
    await this.store.delete(rec.id);
    this.pods.delete(rec.id);
    if (this.names.get(rec.name) === rec.id) this.names.delete(rec.name);
  }

  /** StopPodSandbox: stops the pod's containers and releases its network; a pod already gone is fine. */
  async stop(idOrPrefix: string): Promise<void> {
    if (idOrPrefix === "") throw new InvalidArgument("pod_sandbox_id is required");
    const id = this.resolve(idOrPrefix);
    if (id === undefined) return;
    await this.locks.run(id, async () => {
      const rec = this.pods.get(id);
      if (!rec) return;
      if (this.containers) await this.containers.stopAll(id, this.config.runtime.default_stop_timeout).catch((err) => { throw wrap(`StopPodSandbox ${id}: stop containers`, err); });
      const wasReady = rec.state === "ready";
      rec.state = "notready";
      try {
        await this.release(rec);
      } catch (err) {
        throw wrap(`StopPodSandbox ${id}`, err);
      } finally {
        await this.store.put(id, rec);
      }
      if (wasReady) this.log.info({ id, name: rec.name }, "pod sandbox stopped");
    });
  }

  /** RemovePodSandbox: stops what still runs, removes the containers and everything of the pod; a pod already gone is fine. */
  async remove(idOrPrefix: string): Promise<void> {
    if (idOrPrefix === "") throw new InvalidArgument("pod_sandbox_id is required");
    const id = this.resolve(idOrPrefix);
    if (id === undefined) return;
    await this.locks.run(id, async () => {
      const rec = this.pods.get(id);
      if (!rec) return;
      try {
        if (this.containers) {
          await this.containers.stopAll(id, 0).catch((err) => { throw wrap("stop containers", err); });
          await this.containers.removeAll(id).catch((err) => { throw wrap("remove containers", err); });
        }
        rec.state = "notready";
        await this.release(rec);
        await this.forget(rec);
      } catch (err) {
        await this.store.put(id, rec).catch(() => undefined);
        throw wrap(`RemovePodSandbox ${id}`, err);
      }
      this.log.info({ id, name: rec.name }, "pod sandbox removed");
    });
  }
}

function toRef(rec: SandboxRecord): SandboxRef {
  return {
    id: rec.id,
    metadata: rec.metadata,
    state: rec.state,
    netnsPath: rec.netnsPath,
    ipcnsPath: rec.ipcnsPath,
    utsnsPath: rec.utsnsPath,
    pidnsPath: rec.infra ? `/proc/${rec.infra.pid}/ns/pid` : undefined,
    namespaceOptions: rec.namespaceOptions,
    hostname: rec.hostname,
    resolvConfPath: rec.resolvConfPath,
    hostsPath: rec.hostsPath,
    hostnamePath: rec.hostnamePath,
    shmPath: rec.shmPath,
    cgroupParent: rec.cgroupParent,
    logDirectory: rec.config.logDirectory,
    runtimeHandler: rec.runtimeHandler,
    labels: rec.config.labels,
    annotations: rec.config.annotations,
    sysctls: rec.sysctls,
    privileged: rec.privileged,
  };
}
