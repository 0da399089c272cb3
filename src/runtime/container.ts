// ContainerManager: the CRI container lifecycle. Create prepares the rootfs snapshot, writes
// the OCI bundle and has the handler's OCI runtime (oci/runtime.ts) create the container
// through conmon; Start, Stop, Remove, Update, ExecSync and ReopenLog go to the same object.
// State comes from conmon's exit file (exit-monitor.ts says when to look), so it stays right
// across berthd restarts; records, names and look-up are the container store's.
import { randomBytes } from "node:crypto";
import { access, mkdir, readFile, rm, unlink } from "node:fs/promises";
import path from "node:path";
import { NamespaceMode, type ContainerConfig, type LinuxContainerResources, type NamespaceOption } from "../gen/api.js";
import type { Config } from "../config.js";
import { StateLayout } from "../layout.js";
import { DeadlineExceeded, FailedPrecondition, InvalidArgument, isErrno, NotFound, wrap } from "../errors.js";
import type { ImageStore, Snapshots } from "../image/types.js";
import type { Logger } from "../log.js";
import { KeyedLock } from "../store/keyed-lock.js";
import { writeFileAtomic } from "../store/records.js";
import { ContainerStore } from "./container-store.js";
import { ExitMonitor } from "./exit-monitor.js";
import { logPathParts, prepareLogFile, prepareLogReopen } from "./log-file.js";
import type { Cgroups } from "./cgroups.js";
import { fitExecResponse } from "./exec-output.js";
import { checkMountSourcesResolved, gatherHostFacts, hostDevices, prepareMountSources, resolveDevices } from "./container-host.js";
import { probeHandlerFeatures } from "./handler-features.js";
import { ensureAppArmorProfile } from "./lsm.js";
import { newContainerRecord, type ContainerPhase, type ContainerRecord } from "./container-record.js";
import type { OciRuntime } from "./oci/runtime.js";
import { OciRuntimes } from "./oci/runtimes.js";
import { procStartTime, signalNumber, signalProcess } from "../native/native.js";
import { buildSpec, ociResources, seccompFileNeeded, type HostFacts, type OciSpec } from "./spec.js";
import type { PodContainers, SandboxLookup, SandboxRef } from "./types.js";
import { readSeccompProfileFile } from "./seccomp.js";
import { processIds, readUserDb } from "./user.js";
import { faultPoint } from "../faults.js";
import { processRunning, readProcText } from "../proc.js";
import { validateContainerConfig } from "./container-validate.js";
import { ContainerMounts } from "./container-mounts.js";
import { usernsRef } from "./userns.js";
import { applyCdiEdits, CdiRegistry, requestedCdiDevices } from "./cdi.js";
import type { LifecycleKind, LifecyclePublisher } from "./events.js";

export const EXEC_OUTPUT_CAP = 16 * 1024 * 1024;
/** How long ExecSync keeps reading output after the process exited while a child it left still holds the pipes. */
export const EXEC_DRAIN_GRACE_MS = 100;

export interface ContainerManagerDeps {
  config: Config;
  log: Logger;
  images: ImageStore;
  snapshots: Snapshots;
  sandboxes: SandboxLookup;
  cgroups: Cgroups;
  /** Defaults to what the host reports (gatherHostFacts). */
  host?: HostFacts;
  /** Defaults to a registry over config.cdi.spec_dirs. */
  cdi?: CdiRegistry;
  /** Where created/started/stopped/deleted of CRI containers are published (events.ts). */
  events?: LifecyclePublisher;
  /** Told of each container the OOM killer ended (the metrics endpoint's counter). */
  metrics?: { oomKilled(): void };
  /** Defaults to the config's. */
  layout?: StateLayout;
  /** The handlers' OCI runtimes; defaults to ones built from the config. */
  runtimes?: OciRuntimes;
}

/** The ids a container's process holds (the CRI's ContainerUser.linux). */
export type ProcessUser = { uid: bigint; gid: bigint; supplementalGroups: bigint[] };

/** ListContainers' filter: id and pod id match as prefixes; every label must match. */
export interface ContainerListFilter {
  id?: string;
  podSandboxId?: string;
  labelSelector?: Record<string, string>;
  /** "none" matches no container (a CRI state berth never reports). */
  phase?: ContainerPhase | "none";
}

/** What ContainerStatus reports of a container (src/cri/container-status.ts builds the message). */
export interface ContainerInspection {
  record: ContainerRecord;
  /** The ids the running process holds; undefined: those its spec gave it. */
  user: ProcessUser | undefined;
}

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(() => true, () => false);
}

export class ContainerManager implements PodContainers {
  private readonly lock = new KeyedLock();
  /** Records, names and look-up (container-store.ts). */
  readonly store: ContainerStore;
  private readonly exits: ExitMonitor;
  private readonly layout: StateLayout;
  private readonly runtimes: OciRuntimes;
  private host!: HostFacts;
  /** Exit-file reads in progress, one per container. */
  private readonly settling = new Map<string, Promise<void>>();
  /** What processUser read, per record: kept while the record names the same process. */
  private readonly users = new WeakMap<ContainerRecord, { pid: number; startTime: string; user: ProcessUser }>();
  private readonly log: Logger;
  private readonly mounts: ContainerMounts;
  /** Image volumes of containers being created (not yet in `records`), by container id. */
  private readonly volumesInCreate = new Map<string, string[]>();
  private readonly cdi: CdiRegistry;

  constructor(private readonly deps: ContainerManagerDeps) {
    const c = deps.config;
    this.log = deps.log.child({ layer: "containers" });
    this.cdi = deps.cdi ?? new CdiRegistry(c.cdi.spec_dirs, deps.log.child({ layer: "cdi" }));
    this.layout = deps.layout ?? new StateLayout(c);
    this.runtimes = deps.runtimes ?? new OciRuntimes(c, this.layout);
    this.store = new ContainerStore(this.layout.containerRecords);
    this.exits = new ExitMonitor({
      dir: this.layout.exits,
      exited: (id) => this.runtimes.exited(id),
      monitorAlive: (pid) => this.runtimes.monitorAlive(pid),
      watchMonitor: (pid, onGone) => this.runtimes.watchMonitor(pid, onGone),
      record: (id) => this.store.get(id),
      records: () => this.store.all(),
      settle: (r) => this.settle(r),
      log: this.log,
    });
    this.mounts = new ContainerMounts(this.layout.stagedMounts, deps.images, deps.snapshots);
  }

  /** Restore, step 1 (restore.ts): reads every record; returns them for reconciling. */
  async load(): Promise<ContainerRecord[]> {
    await mkdir(this.layout.bundles, { recursive: true, mode: 0o711 });
    await mkdir(this.layout.exits, { recursive: true, mode: 0o700 });
    await mkdir(this.layout.sockets, { recursive: true, mode: 0o700 });
    this.host = this.deps.host ?? (await gatherHostFacts(this.deps.config.runtime.restrict_oom_score_adj, this.deps.config.cgroup_driver));
    await this.runtimes.init();
    const records = await this.store.load(this.log);
    for (const r of records) {
      if (r.phase !== "exited" && r.conmonPid === 0) {
        // Created, then berthd stopped before Start saved the pids: conmon wrote them to files.
        Object.assign(r, await this.runtimes.createdPids(r.id));
      }
    }
    this.log.info({ containers: this.store.size }, "container records loaded");
    return records;
  }

  /** Restore: the exit watch starts, and exits that happened while berthd was down are settled. */
  startExitMonitor(): Promise<void> {
    return this.exits.start();
  }

  /** Restore's orphan sweep: staged mounts (image volumes, idmapped binds) of no container. */
  async sweepStagedMounts(): Promise<void> {
    for (const id of await this.mounts.sweep((cid) => this.store.has(cid))) this.log.warn({ id }, "removed the staged mounts (image volumes, idmapped binds) of a container with no record");
  }

  /** For a manager used alone (tests): load and watch. berthd restores through restore.ts. */
  async init(): Promise<void> {
    await this.load();
    await this.sweepStagedMounts();
    await this.startExitMonitor();
  }


  close(): void {
    this.exits.close();
  }

  /**
   * Brings a record up to date from its exit file, under the container's lock so it never
   * races Stop or Remove (a removed record is not written back).
   */
  private settle(r: ContainerRecord): Promise<void> {
    let p = this.settling.get(r.id);
    if (!p) {
      p = this.lock
        .run(r.id, async () => {
          if (this.store.holds(r)) await this.refresh(r);
        })
        .catch((err) => this.log.warn({ id: r.id, err: String(err) }, "reading the container's exit state"))
        .finally(() => this.settling.delete(r.id));
      this.settling.set(r.id, p);
    }
    return p;
  }

  /** The OCI runtime for a handler name ("" = the default). */
  private runtime(handler: string): Promise<OciRuntime> {
    return this.runtimes.get(handler);
  }

  /** Finds a record by full id or unique prefix. */
  private find(idOrPrefix: string, kinds: Array<ContainerRecord["kind"]> = ["container"]): ContainerRecord {
    return this.store.find(idOrPrefix, kinds);
  }

  private save(r: ContainerRecord): Promise<void> {
    return this.store.save(r);
  }

  // ---- Create ---------------------------------------------------------------------------

  async create(sandboxId: string, config: ContainerConfig): Promise<string> {
    if (!config.metadata?.name) throw new InvalidArgument("container config has no metadata.name");
    if (!config.image?.image) throw new InvalidArgument("container config has no image");
    validateContainerConfig(config, { root: this.deps.config.root, state: this.deps.config.state });
    const sandbox = this.deps.sandboxes.getSandbox(sandboxId);
    if (!sandbox) throw new NotFound(`pod sandbox "${sandboxId}" not found`);
    if (sandbox.state !== "ready") throw new FailedPrecondition(`pod sandbox ${sandbox.id} is not ready: cannot create container "${config.metadata.name}" in it`);
    const m = sandbox.metadata;
    const name = [config.metadata.name, m.name, m.namespace, m.uid, config.metadata.attempt].join("_");
    if (config.logPath) logPathParts(config.logPath);
    const id = randomBytes(32).toString("hex");
    this.store.reserve(name, id, (taken) => `container name "${name}" is already used by container ${taken}; remove it first`);
    try {
      return await this.lock.run(id, () => this.createLocked(id, name, sandbox, config, "container"));
    } catch (err) {
      this.store.release(name, id);
      throw err;
    }
  }

  private async createLocked(id: string, name: string, sandbox: SandboxRef, config: ContainerConfig, kind: ContainerRecord["kind"]): Promise<string> {
    const started = Date.now();
    const image = await this.deps.images.resolve(config.image!.image, config.image!.imageRef || undefined);
    if (!image) throw new NotFound(`image "${config.image!.image}"${config.image!.imageRef ? ` (image_ref ${config.image!.imageRef})` : ""} not found: pull it first`);
    const cdiNames = requestedCdiDevices(config);
    const cdiEdits = cdiNames.length > 0 ? await this.cdi.resolve(cdiNames) : undefined;
    const rt = await this.runtime(sandbox.runtimeHandler);
    const files = this.layout.bundle(id);
    const bundle = files.dir;
    const exitFile = this.layout.exitFile(id);
    const cgroupsPath = this.deps.cgroups.containerPath(sandbox.cgroupParent, id);
    const undo: Array<() => Promise<unknown>> = [];
    try {
      await mkdir(bundle, { recursive: true, mode: 0o700 });
      undo.push(() => rm(bundle, { recursive: true, force: true }));
      // Removal waits on the snapshot's own lock, so it is safe to queue before prepare ends.
      undo.push(() => this.deps.snapshots.remove(id));
      const { rootfs, seccompFiles, targetPidnsPath, devices, staged } = await this.prepareHost(id, sandbox, config, image.id, undo);
      await faultPoint("CreateContainer.after-snapshot");
      const [userDb, handler] = await Promise.all([readUserDb(rootfs), probeHandlerFeatures(rt.binary)]);
      const imageName = image.repoTags[0] ?? config.image!.image;
      const built = buildSpec({
        id, config: { ...config, mounts: staged.mounts }, image: image.config.config ?? {}, imageName, sandbox, rootfs, cgroupsPath, userDb, host: this.host,
        devices, seccompFiles, targetPidnsPath, handler,
      });
      const spec = cdiEdits ? applyCdiEdits(built.spec, cdiEdits) : built.spec;
      const user = { ...built.user, additionalGids: spec.process.user.additionalGids ?? built.user.additionalGids };
      for (const why of built.ignored) this.log.debug({ id, name }, why);
      await ensureAppArmorProfile(built.apparmor);
      if (kind === "infra") spec.annotations["io.kubernetes.cri.container-type"] = "sandbox";

      const logPath = kind === "infra"
        ? files.infraLog
        : sandbox.logDirectory && config.logPath ? await prepareLogFile(sandbox.logDirectory, config.logPath) : files.containerLog;
      const record = newContainerRecord({
        id, kind, name, sandbox, config, image, imageName, logPath, rootfs, cgroupsPath, user, spec,
        imageVolumes: staged.imageIds,
        handler: sandbox.runtimeHandler || this.deps.config.runtime.default_handler,
        runtimeRoot: rt.root, bundle, exitFile, socketLink: this.layout.socketLink(id), createdAt: nowNs(),
      });
      // The record is written before conmon starts so a crash here leaves something to clean up.
      undo.push(() => this.store.deleteFile(id));
      await Promise.all([writeFileAtomic(files.spec, JSON.stringify(spec), 0o600), this.save(record)]);
      await faultPoint("CreateContainer.after-record");

      undo.push(() => rt.delete(id, true));
      const started2 = await rt.create({
        id, name: config.metadata!.name, logPath, stdin: config.stdin, stdinOnce: config.stdinOnce, terminal: config.tty,
      }).catch((err) => {
        throw wrap("create container (conmon + runc create)", err);
      });
      await faultPoint("CreateContainer.after-conmon");
      // Not saved here: Start saves them, and init reads them back from the pid files after a crash.
      record.pid = started2.containerPid;
      record.pidStartTime = procStartTime(record.pid);
      record.conmonPid = started2.conmonPid;
      this.store.add(record);
      this.exits.watch(record);
      this.volumesInCreate.delete(id);
      this.announce(record, "created");
      await faultPoint("CreateContainer.after-created");
      this.log.info({ id, name, sandbox: sandbox.id, ms: Date.now() - started }, "container created");
      return id;
    } catch (err) {
      for (const u of undo.reverse()) await u().catch((e) => this.log.warn({ id, err: String(e) }, "cleanup after failed create"));
      await this.deps.cgroups.remove(cgroupsPath).catch(() => undefined);
      await rm(exitFile, { force: true }).catch(() => undefined);
      await rm(this.layout.socketLink(id), { force: true }).catch(() => undefined);
      throw err;
    }
  }

  /**
   * What the spec needs from the host, in parallel: the rootfs snapshot, seccomp profile,
   * target PID namespace, devices and staged mounts. Undo steps go on `undo` as they become due.
   */
  private async prepareHost(id: string, sandbox: SandboxRef, config: ContainerConfig, imageId: string, undo: Array<() => Promise<unknown>>) {
    const sc = config.linux?.securityContext;
    // Image volumes are counted as used (RemoveImage refuses them) before they are mounted.
    const volumeImages = await this.mounts.resolveImages(config.mounts);
    this.volumesInCreate.set(id, [...volumeImages.values()]);
    undo.push(async () => this.volumesInCreate.delete(id));
    undo.push(() => this.mounts.release(id));
    const hostMounts = config.mounts.filter((m) => !volumeImages.has(m));
    // Sources are resolved (symlinks followed) before anything is created for them.
    await checkMountSourcesResolved(hostMounts, { root: this.deps.config.root, state: this.deps.config.state });
    const sourcesReady = prepareMountSources(hostMounts);
    // The rootfs mount and what the spec needs from the host do not depend on each other.
    const [{ rootfs }, seccompFiles, targetPidnsPath, devices, staged] = await Promise.all([
      this.deps.snapshots.prepare(id, imageId, { userns: usernsRef(sandbox.userns) }).catch((err) => {
        throw wrap(`prepare rootfs of image ${imageId}`, err);
      }),
      this.seccompFiles(config),
      this.targetPidns(sc?.namespaceOptions),
      sourcesReady.then(async () => [...(await resolveDevices(config.devices)), ...(sc?.privileged ? await hostDevices() : [])]),
      sourcesReady.then(async () => {
        const st = await this.mounts.stage(id, config.mounts, volumeImages, sandbox).catch((err) => {
          throw wrap("stage image volumes and idmapped mounts", err);
        });
        await faultPoint("CreateContainer.after-volumes");
        return st;
      }),
    ]);
    return { rootfs, seccompFiles, targetPidnsPath, devices, staged };
  }

  private async seccompFiles(config: ContainerConfig): Promise<Record<string, string>> {
    const seccompPath = seccompFileNeeded(config);
    if (!seccompPath) return {};
    return { [seccompPath]: await readSeccompProfileFile(seccompPath) };
  }

  /** /proc/<pid>/ns/pid of the target container, for namespace_options.pid = TARGET. */
  private async targetPidns(nsOpts: NamespaceOption | undefined): Promise<string | undefined> {
    if (nsOpts?.pid !== NamespaceMode.TARGET) return undefined;
    const target = this.find(nsOpts.targetId);
    if ((await this.refresh(target)).phase !== "running") throw new FailedPrecondition(`target container ${target.id} is not running`);
    return `/proc/${target.pid}/ns/pid`;
  }

  // ---- State ------------------------------------------------------------------------------

  /** Updates a record from conmon's exit file (and OOM evidence); persists a change. */
  private async refresh(r: ContainerRecord): Promise<ContainerRecord> {
    if (r.phase === "exited") return r;
    const present = await this.runtimes.exited(r.id);
    if (!present) {
      if (r.conmonPid > 0 && !(await this.runtimes.monitorAlive(r.conmonPid)) && !(await this.runtimes.exited(r.id))) await this.monitorDied(r);
      return r;
    }
    const exit = await this.runtimes.exitOf(r.id);
    if (!exit) return r;
    const { code, finishedAt: finished } = exit;
    const [oomFile, oomKills] = await Promise.all([this.runtimes.oomRecorded(r.id), this.deps.cgroups.oomKills(r.cgroupsPath).catch(() => 0)]);
    const oom = oomFile || oomKills > 0;
    const reason = oom ? "OOMKilled" : code === 0 ? "Completed" : "Error";
    await this.markExited(r, code, reason, "", finished);
    if (oom) this.deps.metrics?.oomKilled();
    return r;
  }

  /**
   * conmon died without writing an exit file: nothing records the container's exit or its log
   * any more, so its processes are killed (not left orphaned) and it is reported exited.
   */
  private async monitorDied(r: ContainerRecord): Promise<void> {
    const ran = await processRunning(r.pid, r.pidStartTime);
    if (ran) {
      this.log.warn({ id: r.id, conmonPid: r.conmonPid, pid: r.pid }, "the container's conmon died; killing the container");
      const rt = await this.runtime(r.handler);
      await rt.kill(r.id, "SIGKILL", true).catch((err) => this.log.warn({ id: r.id, err: String(err) }, "runc kill after conmon died"));
      if (r.pidStartTime) signalProcess(r.pid, r.pidStartTime, 9);
      for (let i = 0; i < 1000 && (await processRunning(r.pid, r.pidStartTime)); i++) await sleep(10);
      if (await processRunning(r.pid, r.pidStartTime)) throw new DeadlineExceeded(`container ${r.id}: its conmon (pid ${r.conmonPid}) died and its process ${r.pid} did not exit 10 s after SIGKILL`);
    }
    const what = ran ? "its processes were killed" : "its process had already exited";
    await this.markExited(r, ran ? 137 : 255, "MonitorDied", `the container's monitor (conmon, pid ${r.conmonPid}) died and recorded no exit code; ${what}`, nowNs());
  }

  private async markExited(r: ContainerRecord, code: number, reason: string, message: string, finished: bigint): Promise<void> {
    r.phase = "exited";
    r.exitCode = code;
    r.reason = reason;
    r.message = message;
    r.finishedAt = finished < r.startedAt ? r.startedAt : finished;
    await this.save(r);
    this.announce(r, "stopped");
    this.exits.wake(r.id);
    if (r.kind === "infra") this.deps.sandboxes.infraExited?.(r.sandboxId);
  }

  /** Waits up to `ms` for the container's exit file. */
  private waitExit(r: ContainerRecord, ms: number): Promise<boolean> {
    return this.exits.waitExit(r.id, ms);
  }

  // ---- Start / Stop / Remove -----------------------------------------------------------

  async start(id: string): Promise<void> {
    const r = this.find(id);
    await this.lock.run(r.id, async () => {
      // The exit watch keeps the phase current; a container killed just now makes runc start fail (StartError).
      if (r.phase !== "created") throw new FailedPrecondition(`container ${r.id} is ${r.phase}, not created: it cannot be started`);
      const rt = await this.runtime(r.handler);
      const startedAt = nowNs();
      try {
        await rt.start(r.id);
      } catch (err) {
        await this.markExited(r, 128, "StartError", (err as Error).message, nowNs());
        throw wrap(`start container ${r.id}`, err);
      }
      await faultPoint("StartContainer.after-runc-start");
      r.phase = "running";
      r.startedAt = startedAt;
      // Read now, once: ContainerStatus reports the ids the process starts with.
      this.processUser(r);
      await this.save(r);
      this.announce(r, "started");
      await faultPoint("StartContainer.after-record");
    });
  }

  /** Stops with the stop signal, SIGKILL after `timeoutSec`; idempotent (unknown ids are fine, as for Remove). */
  async stop(id: string, timeoutSec: number): Promise<void> {
    const r = this.findOrUndefined(id);
    if (r) await this.lock.run(r.id, () => this.stopLocked(r, timeoutSec));
  }

  private async stopLocked(r: ContainerRecord, timeoutSec: number): Promise<void> {
    await this.refresh(r);
    if (r.phase === "exited") return;
    const rt = await this.runtime(r.handler);
    if (r.phase === "running" && timeoutSec > 0) {
      await this.signalInit(r, rt, r.stopSignal);
      await faultPoint("StopContainer.after-signal");
      if (await this.waitExit(r, timeoutSec * 1000)) {
        await this.refresh(r);
        return;
      }
    }
    await rt.kill(r.id, "SIGKILL", true);
    await faultPoint("StopContainer.after-kill");
    if (!(await this.waitExit(r, 10_000))) {
      const alive = r.pid > 0 && (await exists(`/proc/${r.pid}`));
      if (alive) throw new DeadlineExceeded(`container ${r.id} did not exit 10 s after SIGKILL`);
      await this.markExited(r, 137, "Error", "stopped; conmon recorded no exit code", nowNs());
      return;
    }
    await this.refresh(r);
  }

  /**
   * The stop signal to the container's init process: straight through a pidfd when its start
   * time is known (a reused pid is never signalled; an `runc kill` process costs ~9 ms), else
   * through the runtime. A process already gone is not an error.
   */
  private async signalInit(r: ContainerRecord, rt: OciRuntime, signal: string): Promise<void> {
    const num = signalNumber(signal);
    if (r.pid > 0 && r.pidStartTime && num !== undefined) {
      signalProcess(r.pid, r.pidStartTime, num);
      return;
    }
    await rt.kill(r.id, signal);
  }

  /** Removes the container and everything berth made for it; idempotent (unknown ids are fine). */
  async remove(id: string): Promise<void> {
    const r = this.findOrUndefined(id);
    if (r) await this.lock.run(r.id, () => this.removeLocked(r));
  }

  /** Stop and Remove since Kubernetes 1.31: an unknown id is no error (an ambiguous prefix still is). */
  private findOrUndefined(id: string): ContainerRecord | undefined {
    return this.store.findOrUndefined(id, ["container", "infra"]);
  }

  private async removeLocked(r: ContainerRecord): Promise<void> {
    if (!this.store.holds(r)) return;
    await this.refresh(r);
    if (r.phase !== "exited") await this.stopLocked(r, 0);
    const rt = await this.runtime(r.handler);
    // The container has exited, so its rootfs goes while runc deletes its state (and conmon,
    // which lingers briefly to flush the log, exits); what runc and conmon use goes after.
    await Promise.all([
      this.deps.snapshots.remove(r.id).catch((err) => {
        throw wrap(`remove rootfs snapshot of container ${r.id}`, err);
      }),
      (async () => {
        await Promise.all([rt.delete(r.id, true), this.conmonGone(r)]);
        await faultPoint("RemoveContainer.after-runc-delete");
        await Promise.all([
          this.removeCgroup(r),
          this.mounts.release(r.id),
          rm(r.bundle, { recursive: true, force: true }),
          rm(r.exitFile, { force: true }),
          unlink(r.socketLink).catch(() => undefined),
        ]);
      })(),
    ]);
    await faultPoint("RemoveContainer.after-files");
    await this.store.deleteFile(r.id);
    await faultPoint("RemoveContainer.after-record-delete");
    this.exits.unwatch(r.id);
    this.store.forget(r);
    this.announce(r, "deleted");
    this.log.info({ id: r.id }, "container removed");
  }

  /** Removes the container's cgroup; processes still exiting keep it busy for a moment. */
  private async removeCgroup(r: ContainerRecord): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        await this.deps.cgroups.remove(r.cgroupsPath);
        return;
      } catch (err) {
        if (!isErrno(err, "EBUSY") || i >= 50) {
          this.log.warn({ id: r.id, err: String(err) }, "cgroup removal");
          return;
        }
        await sleep(10);
      }
    }
  }

  /** Waits up to 1 s for the container's conmon to exit, then kills it. */
  private async conmonGone(r: ContainerRecord): Promise<void> {
    for (let i = 0; i < 200 && (await this.runtimes.monitorAlive(r.conmonPid)); i++) await sleep(5);
    if (await this.runtimes.monitorAlive(r.conmonPid)) {
      try {
        process.kill(r.conmonPid, "SIGKILL");
      } catch {
        // gone
      }
    }
  }

  /** A container that uses image `imageId` as a volume (RemoveImage must wait for it to go), if any. */
  imageVolumeUser(imageId: string): string | undefined {
    for (const r of this.store.all()) if (r.imageVolumes?.includes(imageId)) return r.id;
    for (const [id, ids] of this.volumesInCreate) if (ids.includes(imageId)) return id;
    return undefined;
  }

  async stopAll(sandboxId: string, timeoutSec: number): Promise<void> {
    const mine = this.store.containersOf(sandboxId);
    await Promise.all(mine.map((r) => this.lock.run(r.id, () => this.stopLocked(r, timeoutSec))));
  }

  async removeAll(sandboxId: string): Promise<void> {
    const mine = this.store.containersOf(sandboxId);
    await Promise.all(mine.map((r) => this.lock.run(r.id, () => this.removeLocked(r))));
  }

  // ---- Status / List --------------------------------------------------------------------

  /** Publishes a CRI container's lifecycle step (infra containers are the pod's business). */
  private announce(r: ContainerRecord, kind: LifecycleKind): void {
    if (r.kind === "container") this.deps.events?.publish({ kind, id: r.id, sandboxId: r.sandboxId, at: nowNs() });
  }

  /**
   * ContainerStatus, from memory: the record is current (the exit watch and the conmon watches
   * in exit-monitor.ts settle it when the container or its conmon ends), so nothing is read here
   * but the process's ids, once per process.
   */
  status(id: string): ContainerInspection {
    return this.inspect(this.find(id));
  }

  private inspect(r: ContainerRecord): ContainerInspection {
    return { record: r, user: this.processUser(r) };
  }

  /** ContainerStatus's verbose info: where the container's parts are, and its OCI spec. */
  async statusInfo(r: ContainerRecord): Promise<Record<string, string>> {
    const spec = await readFile(this.layout.bundle(r.id).spec, "utf8").then((t) => JSON.parse(t) as OciSpec).catch(() => undefined);
    return {
      info: JSON.stringify({
        sandboxID: r.sandboxId,
        pid: r.phase === "running" ? r.pid : 0,
        conmonPid: r.conmonPid,
        runtimeHandler: r.handler,
        runtimeRoot: r.runtimeRoot,
        bundle: r.bundle,
        rootfs: r.rootfs,
        cgroupsPath: r.cgroupsPath,
        snapshotKey: r.id,
        runtimeSpec: spec,
      }),
    };
  }

  /**
   * The uid, gid and groups the container's init process holds (/proc/<pid>/status, the pid
   * checked against its start time), read once per process: at StartContainer, or at the first
   * ContainerStatus after a restart of berthd. The CRI reports the ids first attached to the
   * process (ContainerUser); a process may change its own later, and those are not reported.
   * undefined: not running, or not readable (the spec's ids are reported).
   */
  private processUser(r: ContainerRecord): ProcessUser | undefined {
    if (r.phase !== "running" || r.pid <= 0 || !r.pidStartTime) return undefined;
    const seen = this.users.get(r);
    if (seen && seen.pid === r.pid && seen.startTime === r.pidStartTime) return seen.user;
    const text = readProcText(`/proc/${r.pid}/status`);
    const user = text === undefined || procStartTime(r.pid) !== r.pidStartTime ? undefined : processIds(text);
    if (user) this.users.set(r, { pid: r.pid, startTime: r.pidStartTime, user });
    return user;
  }

  /** ListContainers: the CRI containers matching `filter`. */
  list(filter: ContainerListFilter = {}): readonly ContainerRecord[] {
    const all = this.store.containers();
    if (!filter.id && !filter.podSandboxId && !filter.labelSelector && !filter.phase) return all;
    return all.filter((r) =>
      (!filter.id || r.id.startsWith(filter.id)) &&
      (!filter.podSandboxId || r.sandboxId.startsWith(filter.podSandboxId)) &&
      (!filter.labelSelector || Object.entries(filter.labelSelector).every(([k, v]) => r.labels[k] === v)) &&
      (!filter.phase || r.phase === filter.phase));
  }

  /** Records of a pod's CRI containers (not its infra container). */
  containersOf(sandboxId: string): readonly ContainerRecord[] {
    return this.store.containersOf(sandboxId);
  }

  /** status() of each of a pod's CRI containers (PodSandboxStatus and the container events carry them). */
  statusesOf(sandboxId: string): ContainerInspection[] {
    return this.store.containersOf(sandboxId).map((r) => this.inspect(r));
  }

  /** Every CRI container record (kept current by the exit watch). */
  async allContainers(): Promise<readonly ContainerRecord[]> {
    return this.store.containers();
  }

  async record(id: string): Promise<ContainerRecord> {
    return this.find(id);
  }

  // ---- Update / Reopen log / Exec -------------------------------------------------------

  async updateResources(id: string, linux: LinuxContainerResources | undefined, annotations: Record<string, string>): Promise<void> {
    const r = this.find(id);
    await this.lock.run(r.id, async () => {
      await this.refresh(r);
      if (r.phase === "exited") throw new FailedPrecondition(`container ${r.id} has exited: its resources cannot be updated`);
      if (linux) {
        const res = ociResources(linux, this.host);
        const rt = await this.runtime(r.handler);
        await rt.update(r.id, res).catch((err) => {
          throw wrap(`update resources of container ${r.id}`, err);
        });
        r.resources = linux;
      }
      if (Object.keys(annotations).length > 0) r.annotations = { ...r.annotations, ...annotations };
      await this.save(r);
    });
  }

  async reopenLog(id: string): Promise<void> {
    const r = this.find(id);
    await this.refresh(r);
    if (r.phase !== "running") throw new FailedPrecondition(`container ${r.id} is not running: its log cannot be reopened`);
    const logDir = this.deps.sandboxes.getSandbox(r.sandboxId)?.logDirectory;
    const rel = logDir ? path.relative(logDir, r.logPath) : "";
    if (logDir && rel !== "" && !rel.startsWith("..")) await prepareLogReopen(logDir, rel);
    await (await this.runtime(r.handler)).reopenLog(r.id);
    // conmon reopens asynchronously; kubelet looks for the new file right after this returns.
    for (let i = 0; i < 100 && !(await exists(r.logPath)); i++) await sleep(10);
    if (!(await exists(r.logPath))) throw new DeadlineExceeded(`conmon did not reopen ${r.logPath} within 1 s`);
  }

  async execSync(id: string, cmd: string[], timeoutSec: number): Promise<ExecSyncResult> {
    if (cmd.length === 0) throw new InvalidArgument("exec cmd is empty");
    const r = this.find(id);
    if (r.phase !== "running") throw new FailedPrecondition(`container ${r.id} is not running (${r.phase}): cannot exec in it`);
    const rt = await this.runtime(r.handler);
    // `runc exec --detach` under berth-exec (the process's parent, reporting its exit): a child
    // the command leaves holding the output neither holds the call (reading stops
    // EXEC_DRAIN_GRACE_MS after the exit) nor gets killed.
    const res = await rt.execSync(r.id, r.process, cmd, { timeoutMs: timeoutSec * 1000, outputCap: EXEC_OUTPUT_CAP, drainGraceMs: EXEC_DRAIN_GRACE_MS }, this.log);
    if (res.timedOut) throw new DeadlineExceeded(`command ${JSON.stringify(cmd)} in container ${r.id} timed out after ${timeoutSec} s; it was killed`);
    return { ...fitExecResponse(res.stdout, res.stderr), exitCode: res.exitCode };
  }

  // ---- Infra (pause) containers -----------------------------------------------------------

  /** Creates and starts a pod's infra container (used by InfraContainers). */
  async runInfra(sandbox: SandboxRef, config: ContainerConfig): Promise<ContainerRecord> {
    const id = randomBytes(32).toString("hex");
    const name = `POD_${sandbox.id}`;
    this.store.reserve(name, id, (holder) => `pod ${sandbox.id} already has an infra container ${holder}`);
    try {
      await this.lock.run(id, () => this.createLocked(id, name, sandbox, config, "infra"));
    } catch (err) {
      this.store.release(name, id);
      throw err;
    }
    const r = this.store.get(id)!;
    await this.lock.run(id, async () => {
      const rt = await this.runtime(r.handler);
      try {
        await rt.start(id);
      } catch (err) {
        await this.removeLocked(r).catch(() => undefined);
        throw wrap(`start infra container of pod ${sandbox.id}`, err);
      }
      r.phase = "running";
      r.startedAt = nowNs();
      await this.save(r);
    });
    return r;
  }

  // ---- Start-up recovery (recovery.ts) ------------------------------------------------------

  /** Every record, infra containers included. */
  recoveryRecords(): ContainerRecord[] {
    return this.store.all();
  }

  /** Sets what runc showed after a crash: a container started before its record said so, or one that is gone. */
  async recoverPhase(id: string, phase: "running" | "lost", at: bigint, message = ""): Promise<void> {
    const r = this.store.get(id);
    if (!r || r.phase === "exited") return;
    if (phase === "lost") return this.markExited(r, 255, "Error", message, at);
    r.phase = "running";
    r.startedAt = at;
    await this.save(r);
    this.announce(r, "started");
  }

  infraOf(sandboxId: string): ContainerRecord | undefined {
    return this.store.infraOf(sandboxId);
  }

  async stopInfra(sandboxId: string): Promise<void> {
    const r = this.infraOf(sandboxId);
    if (r) await this.lock.run(r.id, () => this.stopLocked(r, 0));
  }

  async removeInfra(sandboxId: string): Promise<void> {
    const r = this.infraOf(sandboxId);
    if (r) await this.lock.run(r.id, () => this.removeLocked(r));
  }
}
