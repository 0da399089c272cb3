// The pod sandbox manager: a pod is a set of pinned namespaces (net, ipc, uts), a CNI
// attachment, a few files (hostname, hosts, resolv.conf), a /dev/shm tmpfs and, only
// when the pod shares a PID namespace, an infra container. Every pod's metadata lives in
// the crash-safe record store from before its first resource exists, so a crash at any
// step leaves a NOTREADY pod that RemovePodSandbox can still clean up.
import { randomBytes } from "node:crypto";
import { chown, mkdir, readFile, writeFile } from "node:fs/promises";
import { hostname as osHostname } from "node:os";
import path from "node:path";
import type { Config } from "../config.js";
import { StateLayout } from "../layout.js";
import { AlreadyExists, causeChain, FailedPrecondition, InvalidArgument, NotFound, wrap } from "../errors.js";
import { NamespaceMode, type NamespaceOption, type PodSandboxConfig, type PodSandboxMetadata } from "../gen/api.js";
import type { Logger } from "../log.js";
import { bandwidthFromAnnotations, orderPodIPs, resultAddresses, resultIPs, type CapabilityArgs } from "../cni/config.js";
import type { Attachment, PodNetwork } from "../cni/network.js";
import { PodSandboxConfig as PodSandboxConfigCodec } from "../gen/api.js";
import { KeyedLock } from "../store/keyed-lock.js";
import { RecordStore } from "../store/records.js";
import type { LifecycleKind, LifecyclePublisher } from "./events.js";
import { faultPoint } from "../faults.js";
import { readProcStat } from "../proc.js";
import { isMountpoint, mountsUnder, unmount } from "../image/mount.js";
import { isPinned, mountShm, pinNamespaces, removePath, stageNetnsForTeardown, unpinNamespaces, writeSysctlIn, type PinnedKind } from "./namespaces.js";
import { sweepPodOrphans } from "./restore.js";
import { cgroupParent, hostsFile, matchesLabels, podHostname, podSysctls, portMappingsCapability, resolvConf, sandboxName, validateMetadata, validatePodConfig } from "./sandbox-config.js";
import type { InfraContainers, PodContainers, SandboxLookup, SandboxRef, SandboxState } from "./types.js";
import { hostIdOf, podUserns, type PodUserns, type UsernsSupport } from "./userns.js";

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
  /** A POD user namespace: its mappings, and its pin once made (it owns the pod's other namespaces). */
  userns?: PodUserns;
  usernsPath?: string;
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
  /** Set while RunPodSandbox runs: a record still carrying it after a crash is a half-made pod, rolled back on start. */
  creating?: boolean;
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
  /** Whether pods may ask for a user namespace (probeUserNamespaces at start); no: refused. */
  userns?: UsernsSupport;
  /** Where a pod's created/started/stopped/deleted are published, with the pod's id as the container id (events.ts). */
  events?: LifecyclePublisher;
  /** Defaults to the config's. */
  layout?: StateLayout;
  /** The container layer, asked to stop and remove a pod's containers. */
  containers?: PodContainers;
  /** The infra-container runner, for pods that share a PID namespace (none: such pods are refused). */
  infra?: InfraContainers;
}

const isHost = (mode: NamespaceMode | undefined) => mode === NamespaceMode.NODE;

/** A RunPodSandbox in progress, so a retry of a call whose caller gave up can wait for it. */
interface PendingRun {
  id: string;
  request: string;
  callerGone: () => boolean;
  done: Promise<string>;
}

/** Identifies "the same request" for a retry: the whole config and the handler asked for. */
function requestKey(config: PodSandboxConfig, runtimeHandler: string): string {
  return JSON.stringify([PodSandboxConfigCodec.toJSON(config), runtimeHandler]);
}

export class SandboxManager implements SandboxLookup {
  private readonly pods = new Map<string, SandboxRecord>();
  /** Reserved names to the id holding them. */
  private readonly names = new Map<string, string>();
  private readonly locks = new KeyedLock();
  /** RunPodSandbox calls in progress, by name. */
  private readonly pending = new Map<string, PendingRun>();
  /** Pods made for a caller that had gone (deadline): handed to its retry, by name. */
  private readonly undelivered = new Map<string, { id: string; request: string }>();
  private readonly store: RecordStore<SandboxRecord>;
  private readonly containers: PodContainers | undefined;
  private readonly infra: InfraContainers | undefined;
  private readonly config: Config;
  private readonly network: PodNetwork;
  private readonly log: Logger;
  private readonly podCidr: () => string;
  private readonly usernsSupport: UsernsSupport;
  private readonly events: LifecyclePublisher | undefined;
  private readonly layout: StateLayout;

  constructor(opts: SandboxManagerOptions) {
    this.config = opts.config;
    this.usernsSupport = opts.userns ?? { supported: false, reason: "not probed" };
    this.network = opts.network;
    this.log = opts.log;
    this.podCidr = opts.podCidr ?? (() => "");
    this.events = opts.events;
    this.containers = opts.containers;
    this.infra = opts.infra;
    this.layout = opts.layout ?? new StateLayout(opts.config);
    this.store = new RecordStore<SandboxRecord>(this.layout.sandboxRecords);
  }

  /** Restore, step 1 (restore.ts): reads every pod record; returns the ids of every record file, loaded or not. */
  async load(): Promise<Set<string>> {
    const { records, problems } = await this.store.loadAll();
    for (const p of problems) this.log.error(p, "corrupt sandbox record quarantined; its pod is gone from the API and its leftovers are cleaned up as orphans");
    for (const [id, rec] of records) {
      if (rec.id !== id || typeof rec.name !== "string" || this.names.has(rec.name)) {
        this.log.error({ id, name: rec.name }, "sandbox record does not match its file name or repeats a name; ignored (left on disk)");
        continue;
      }
      this.pods.set(id, rec);
      this.names.set(rec.name, id);
    }
    this.log.info({ sandboxes: this.pods.size }, "sandboxes loaded");
    return new Set(records.keys());
  }

  /**
   * Restore, step 2: each pod against the host: a pod a crash left half made is rolled back, a
   * stop a crash interrupted is finished, a ready pod whose pins vanished (a reboot) becomes NOTREADY.
   */
  async reconcile(): Promise<void> {
    for (const rec of [...this.pods.values()]) await this.recover(rec);
  }

  /** For a manager used alone (tests): load, reconcile, sweep. berthd restores through restore.ts. */
  async init(): Promise<void> {
    const known = await this.load();
    await this.reconcile();
    await sweepPodOrphans({ layout: this.layout, known, network: this.network, log: this.log });
  }


  private async recover(rec: SandboxRecord): Promise<void> {
    const { id, name } = rec;
    const save = () => this.store.put(id, rec).catch((err) => this.log.error({ id, err: String(err) }, "cannot save sandbox record"));
    if (rec.creating) {
      this.log.warn({ id, name }, "RunPodSandbox was interrupted (berthd crashed); rolling the pod back");
      rec.state = "notready";
      try {
        await this.release(rec);
        await this.forget(rec);
        this.log.info({ id, name }, "half-made pod rolled back; its name is free");
      } catch (err) {
        rec.creating = false;
        await save();
        this.log.error({ id, name, err: causeChain(err) }, "cannot roll back a half-made pod; left NOTREADY for RemovePodSandbox");
      }
      return;
    }
    if (rec.state === "ready" && !(await this.pinsAlive(rec))) {
      rec.state = "notready";
      this.log.warn({ id, name }, "sandbox namespaces are gone; marked NOTREADY");
      await save();
      this.announce(rec, "stopped");
    }
    if (rec.state === "notready" && (await this.holdsResources(rec))) {
      // A StopPodSandbox that a crash cut short, or namespaces that vanished: a NOTREADY pod holds nothing.
      this.log.warn({ id, name }, "NOTREADY pod still holds its network, /dev/shm or namespace pins; releasing them");
      try {
        await this.release(rec);
      } catch (err) {
        this.log.error({ id, name, err: causeChain(err) }, "cannot release a stopped pod's resources; StopPodSandbox or RemovePodSandbox will retry");
      }
      await save();
    }
  }

  /** True when a pod still holds a network attachment, a namespace pin or its /dev/shm tmpfs. */
  private async holdsResources(rec: SandboxRecord): Promise<boolean> {
    if (!rec.networkDetached) return true;
    if ((await mountsUnder(rec.nsDir)).length > 0) return true;
    return rec.shmPath !== "/dev/shm" && (await isMountpoint(rec.shmPath));
  }

  private async pinsAlive(rec: SandboxRecord): Promise<boolean> {
    for (const p of [rec.usernsPath, rec.netnsPath, rec.ipcnsPath, rec.utsnsPath]) {
      if (p !== undefined && !(await isPinned(p))) return false;
    }
    if (rec.infra && (await readProcStat(rec.infra.pid)) === undefined) return false;
    return true;
  }

  /** The pod's infra container exited while the pod was ready: the pod is NOTREADY (kubelet then makes a new one). */
  infraExited(sandboxId: string): void {
    // Not awaited: the container layer calls this under the container's lock, which a pod stop may be waiting for.
    void this.locks.run(sandboxId, async () => {
      const rec = this.pods.get(sandboxId);
      if (!rec || rec.state !== "ready" || rec.creating) return;
      rec.state = "notready";
      await this.store.put(sandboxId, rec);
      this.log.warn({ id: sandboxId, name: rec.name }, "the pod's infra container exited; pod marked NOTREADY");
    }).catch((err) => this.log.error({ id: sandboxId, err: causeChain(err) }, "cannot mark a pod whose infra container exited NOTREADY"));
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

  /**
   * RunPodSandbox: all or nothing; the error names the step that failed. A call whose caller
   * has gone (`callerGone` aborted, e.g. its deadline passed) still finishes or rolls back, and
   * the pod is handed to the caller's retry with the same name and config.
   */
  async run(config: PodSandboxConfig | undefined, runtimeHandler: string, callerGone?: AbortSignal): Promise<string> {
    if (!config) throw new InvalidArgument("config is required");
    validatePodConfig(config);
    const md = validateMetadata(config.metadata);
    const handler = runtimeHandler || this.config.runtime.default_handler;
    if (!this.config.runtime.handlers[handler]) {
      throw new InvalidArgument(`runtime_handler "${runtimeHandler}" is not configured; known handlers: ${Object.keys(this.config.runtime.handlers).join(", ")}`);
    }
    const linux = config.linux;
    const ns: NamespaceOption = linux?.securityContext?.namespaceOptions ?? { network: NamespaceMode.POD, pid: NamespaceMode.POD, ipc: NamespaceMode.POD, targetId: "", usernsOptions: undefined };
    const userns = podUserns(ns);
    if (userns && !this.usernsSupport.supported) throw new FailedPrecondition(`a pod user namespace (userns_options.mode POD) cannot run on this host: ${this.usernsSupport.reason}`);
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
    const request = requestKey(config, runtimeHandler);
    for (let holder = this.names.get(name); holder !== undefined; holder = this.names.get(name)) {
      const handed = await this.handOver(name, holder, request, callerGone);
      if (handed !== undefined) return handed;
      if (this.names.get(name) === holder) throw new AlreadyExists(`failed to reserve sandbox name "${name}": name "${name}" is reserved for "${holder}"`);
    }
    const id = randomBytes(32).toString("hex");
    this.names.set(name, id);

    const podDir = this.layout.podDir(id);
    const podFiles = this.layout.podFiles(id);
    const rec: SandboxRecord = {
      id,
      name,
      metadata: md,
      createdAt: BigInt(Date.now()) * 1_000_000n,
      state: "notready",
      creating: true,
      runtimeHandler: handler,
      requestedHandler: runtimeHandler,
      config,
      namespaceOptions: ns,
      hostname,
      nsDir: this.layout.pinDir(id),
      podDir,
      resolvConfPath: podFiles.resolvConf,
      hostsPath: podFiles.hosts,
      hostnamePath: podFiles.hostname,
      shmPath: hostIpc ? "/dev/shm" : this.layout.podShm(id),
      cgroupParent: cgroup,
      sysctls: Object.fromEntries(sysctls.map((s) => [s.key, s.value])),
      privileged: linux?.securityContext?.privileged ?? false,
      userns,
      networkDetached: hostNetwork,
      needsInfra: needInfra,
    };

    const done = this.locks.run(id, async () => {
      let step = "save sandbox record";
      try {
        await this.store.put(id, rec);
        this.pods.set(id, rec);
        await faultPoint("RunPodSandbox.after-record");

        step = "create pod dir and pin namespaces";
        const kinds: PinnedKind[] = [];
        if (!hostNetwork) kinds.push("net", "uts");
        if (!hostIpc) kinds.push("ipc");
        const [, pins] = await Promise.all([mkdir(podDir, { recursive: true, mode: 0o711 }), pinNamespaces(rec.nsDir, kinds, hostname, userns)]);
        rec.usernsPath = pins.user;
        rec.netnsPath = pins.net;
        rec.ipcnsPath = pins.ipc;
        rec.utsnsPath = pins.uts;
        await faultPoint("RunPodSandbox.after-netns");

        // Before the network: a sysctl may change how the interfaces CNI makes behave.
        for (const s of sysctls) {
          step = `set sysctl ${s.key}=${s.value}`;
          await writeSysctlIn(s.kind, s.kind === "net" ? rec.netnsPath! : rec.ipcnsPath!, s.procPath, s.value, rec.usernsPath);
        }
        await faultPoint("RunPodSandbox.after-sysctls");

        // The network is the slow part (CNI plugins run one after another): /dev/shm and the
        // pod's files are made meanwhile. Both finish (or fail) before anything is rolled back.
        let localStep = "mount /dev/shm";
        const netStep = "set up pod network";
        const local = async () => {
          if (!hostIpc) await mountShm(rec.shmPath, SHM_SIZE, userns);
          await faultPoint("RunPodSandbox.after-shm");
          localStep = "write hostname and resolv.conf";
          await writeFile(rec.hostnamePath, `${hostname}\n`, { mode: 0o644 });
          await writeFile(rec.resolvConfPath, resolv, { mode: 0o644 });
          await Promise.all([rec.hostnamePath, rec.resolvConfPath].map((f) => this.ownedByPodRoot(rec, f)));
          await faultPoint("RunPodSandbox.after-files");
        };
        const network = async () => {
          if (hostNetwork) return;
          try {
            const attached = await this.network.setUp(this.attachment(rec), caps);
            rec.network = { name: attached.network, result: attached.result, ips: orderPodIPs(resultIPs(attached.result)) };
          } catch (err) {
            // setUp undid its own partial attachment.
            rec.networkDetached = true;
            throw err;
          }
        };
        step = `${localStep}; ${netStep}`;
        const [localDone, netDone] = await Promise.allSettled([local(), network()]);
        if (netDone.status === "rejected") {
          step = netStep;
          throw netDone.reason;
        }
        if (localDone.status === "rejected") {
          step = localStep;
          throw localDone.reason;
        }
        await faultPoint("RunPodSandbox.after-network");

        step = "write hosts";
        const hosts = hostNetwork ? await readFile("/etc/hosts", "utf8").catch(() => hostsFile(hostname, [])) : hostsFile(hostname, rec.network?.ips ?? []);
        await writeFile(rec.hostsPath, hosts, { mode: 0o644 });
        await this.ownedByPodRoot(rec, rec.hostsPath);
        await faultPoint("RunPodSandbox.after-hosts");

        if (needInfra) {
          step = "start infra container";
          rec.infra = await this.infra!.start(toRef(rec));
        }
        await faultPoint("RunPodSandbox.after-infra");

        step = "save sandbox record";
        rec.state = "ready";
        rec.creating = undefined;
        await this.store.put(id, rec);
        this.announce(rec, "created");
        this.announce(rec, "started");
        await faultPoint("RunPodSandbox.after-ready");
      } catch (err) {
        rec.state = "notready";
        rec.creating = undefined;
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
      if (callerGone?.aborted) {
        this.undelivered.set(name, { id, request });
        this.log.warn({ id, name }, "RunPodSandbox finished after its caller gave up; the pod is kept for a retry with the same name");
      }
      return id;
    });
    this.pending.set(name, { id, request, callerGone: () => callerGone?.aborted ?? false, done });
    try {
      return await done;
    } finally {
      if (this.pending.get(name)?.id === id) this.pending.delete(name);
    }
  }

  /**
   * The pod for a retried RunPodSandbox whose name `holder` holds: one still being made or
   * made after its caller gave up, for the same request. Undefined: no hand-over.
   */
  private async handOver(name: string, holder: string, request: string, callerGone?: AbortSignal): Promise<string | undefined> {
    const inFlight = this.pending.get(name);
    if (inFlight && inFlight.id === holder) {
      if (inFlight.request !== request || !inFlight.callerGone()) return undefined;
      this.log.info({ id: holder, name }, "RunPodSandbox retried while the call its caller gave up still runs; waiting for it");
      try {
        await inFlight.done;
      } catch {
        // It failed and rolled back (the name is free again) or left a NOTREADY pod (the name is taken).
        return undefined;
      }
    }
    const made = this.undelivered.get(name);
    if (made?.id !== holder || made.request !== request || this.pods.get(holder)?.state !== "ready") return undefined;
    if (!callerGone?.aborted) this.undelivered.delete(name);
    this.log.info({ id: holder, name }, "RunPodSandbox retried: handing over the pod made for the caller that gave up");
    return holder;
  }

  /** In a user-namespaced pod, a file berth made for it is owned by the pod's (mapped) root, as it is inside. */
  private async ownedByPodRoot(rec: SandboxRecord, file: string): Promise<void> {
    if (rec.userns) await chown(file, hostIdOf(rec.userns.uids, 0), hostIdOf(rec.userns.gids, 0));
  }

  private attachment(rec: SandboxRecord): Attachment {
    return { containerId: rec.id, netns: rec.netnsPath ?? path.join(rec.nsDir, "net"), podName: rec.metadata.name, podNamespace: rec.metadata.namespace, podUid: rec.metadata.uid };
  }

  /** Releases what a stopped pod no longer needs: the network, the /dev/shm tmpfs and the namespace pins. Idempotent. */
  private async release(rec: SandboxRecord, op?: "StopPodSandbox" | "RemovePodSandbox"): Promise<void> {
    if (rec.needsInfra && this.infra) await this.infra.stop(rec.id).catch((err) => { throw wrap("stop infra container", err); });
    if (!rec.networkDetached && rec.network && !(await this.network.hasAttachment(rec.id))) {
      // ADD completed (its result is in the record) and its cache entry is gone: a DEL completed before a crash.
      rec.networkDetached = true;
    }
    if (!rec.networkDetached) {
      const att = this.attachment(rec);
      let staged = false;
      if (!(await isPinned(att.netns))) {
        // The pin vanished (reboot, crash) and took eth0 with it: stage a stand-in so plugins find their rules' addresses.
        const cidrs = resultAddresses(rec.network?.result);
        att.netns = cidrs.length && rec.netnsPath ? await stageNetnsForTeardown(rec.nsDir, "eth0", cidrs).catch((err) => {
          this.log.warn({ id: rec.id, err: String(err) }, "cannot stage a network namespace for CNI DEL; deleting without one");
          return "";
        }) : "";
        staged = att.netns !== "";
      }
      try {
        await this.network.tearDown(att);
      } catch (err) {
        if (!staged) throw wrap("tear down pod network", err);
        // After a real reboot the rules the stand-in points plugins at are gone too: release the address without a netns.
        this.log.warn({ id: rec.id, err: causeChain(err) }, "CNI DEL through a stand-in namespace failed; retrying without a namespace");
        await this.network.tearDown({ ...att, netns: "" }).catch((err2) => { throw wrap("tear down pod network", err2); });
      }
      rec.networkDetached = true;
    }
    if (op) await faultPoint(`${op}.after-cni-del`);
    if (rec.shmPath !== "/dev/shm") await unmount(rec.shmPath).catch((err) => { throw wrap("unmount /dev/shm", err); });
    if (op) await faultPoint(`${op}.after-shm-unmount`);
    await unpinNamespaces(rec.nsDir).catch((err) => { throw wrap("unpin namespaces", err); });
    if (op) await faultPoint(`${op}.after-unpin`);
  }

  /** Drops the pod's files, record and name. */
  private async forget(rec: SandboxRecord, op?: "RemovePodSandbox"): Promise<void> {
    if (rec.needsInfra && this.infra) await this.infra.remove(rec.id).catch((err) => { throw wrap("remove infra container", err); });
    // The shm mount point is inside podDir: never recurse into a still-mounted tmpfs.
    if (rec.shmPath !== "/dev/shm") await unmount(rec.shmPath);
    await removePath(rec.podDir);
    if (op) await faultPoint(`${op}.after-files`);
    await this.store.delete(rec.id);
    if (op) await faultPoint(`${op}.after-record-delete`);
    // Announced while the pod can still be looked up: its last status goes with the event.
    if (op) this.announce(rec, "deleted");
    this.pods.delete(rec.id);
    if (this.names.get(rec.name) === rec.id) this.names.delete(rec.name);
    if (this.undelivered.get(rec.name)?.id === rec.id) this.undelivered.delete(rec.name);
  }

  /** Runs `fn` on the pod under its lock; an unknown or already removed pod is not an error. */
  private async withPod(idOrPrefix: string, fn: (rec: SandboxRecord) => Promise<void>): Promise<void> {
    if (idOrPrefix === "") throw new InvalidArgument("pod_sandbox_id is required");
    const id = this.resolve(idOrPrefix);
    if (id === undefined) return;
    await this.locks.run(id, async () => {
      const rec = this.pods.get(id);
      if (rec) await fn(rec);
    });
  }

  private announce(rec: SandboxRecord, kind: LifecycleKind): void {
    this.events?.publish({ kind, id: rec.id, sandboxId: rec.id, at: BigInt(Date.now()) * 1_000_000n });
  }

  /** StopPodSandbox: stops the pod's containers and releases its network; a pod already gone is fine. */
  async stop(idOrPrefix: string): Promise<void> {
    await this.withPod(idOrPrefix, async (rec) => {
      const id = rec.id;
      if (this.containers) await this.containers.stopAll(id, this.config.runtime.default_stop_timeout).catch((err) => { throw wrap(`StopPodSandbox ${id}: stop containers`, err); });
      await faultPoint("StopPodSandbox.after-containers");
      const wasReady = rec.state === "ready";
      rec.state = "notready";
      // NOTREADY is on disk before anything is released: a crash mid-way never leaves a "ready" pod without its network.
      if (wasReady) {
        await this.store.put(id, rec).catch((err) => { throw wrap(`StopPodSandbox ${id}: save sandbox record`, err); });
        this.announce(rec, "stopped");
      }
      await faultPoint("StopPodSandbox.after-record");
      try {
        await this.release(rec, "StopPodSandbox");
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
    await this.withPod(idOrPrefix, async (rec) => {
      const id = rec.id;
      try {
        if (this.containers) {
          await this.containers.stopAll(id, 0).catch((err) => { throw wrap("stop containers", err); });
          await this.containers.removeAll(id).catch((err) => { throw wrap("remove containers", err); });
        }
        await faultPoint("RemovePodSandbox.after-containers");
        if (rec.state === "ready") {
          rec.state = "notready";
          await this.store.put(id, rec);
          this.announce(rec, "stopped");
        }
        await this.release(rec, "RemovePodSandbox");
        await this.forget(rec, "RemovePodSandbox");
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
    userns: rec.userns && rec.usernsPath ? { path: rec.usernsPath, ...rec.userns } : undefined,
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
