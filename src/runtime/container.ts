// ContainerManager: the CRI container lifecycle on runc + conmon. Create prepares the rootfs
// snapshot, writes the OCI bundle and has conmon run `runc create`; Start, Stop, Remove,
// Update and ExecSync go to runc, ReopenLog to conmon; state comes from conmon's exit file, so
// it stays right across berthd restarts. Records live in the crash-safe store. The exit dir is
// watched, so List and Status answer from memory; a periodic sweep catches what a watch misses
// (a conmon killed before it could write the exit file, an inotify overflow).
import { randomBytes } from "node:crypto";
import { watch, type FSWatcher } from "node:fs";
import { access, mkdir, readdir, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  ContainerState,
  ContainerStatus,
  NamespaceMode,
  type Container,
  type ContainerConfig,
  type ContainerFilter,
  type LinuxContainerResources,
  type NamespaceOption,
} from "../gen/api.js";
import { handlerRoot, parseDuration, type Config } from "../config.js";
import { AlreadyExists, DeadlineExceeded, FailedPrecondition, InvalidArgument, isErrno, NotFound, wrap } from "../errors.js";
import type { ImageStore, Snapshots } from "../image/types.js";
import type { Logger } from "../log.js";
import { KeyedLock } from "../store/keyed-lock.js";
import { RecordStore, writeFileAtomic } from "../store/records.js";
import { logPathParts, prepareLogFile, prepareLogReopen } from "./log-file.js";
import type { Cgroups } from "./cgroups.js";
import { isConmon, readPid, reopenLog, startConmon } from "./conmon.js";
import { fitExecResponse } from "./exec-output.js";
import { checkMountSourcesResolved, gatherHostFacts, hostDevices, prepareMountSources, resolveDevices } from "./container-host.js";
import { stopSignalEnum, stopSignalName } from "./stop-signal.js";
import { probeHandlerFeatures } from "./handler-features.js";
import { ensureAppArmorProfile } from "./lsm.js";
import type { ContainerPhase, ContainerRecord } from "./container-record.js";
import { execProcess, OciRuntime } from "./runc.js";
import { procStartTime, signalNumber, signalProcess } from "../native/native.js";
import { buildSpec, ociResources, seccompFileNeeded, type HostFacts, type OciSpec } from "./spec.js";
import type { PodContainers, SandboxLookup, SandboxRef } from "./types.js";
import { readSeccompProfileFile } from "./seccomp.js";
import { processIds, readUserDb } from "./user.js";
import { faultPoint } from "../faults.js";
import { processRunning } from "../proc.js";
import { validateContainerConfig } from "./container-validate.js";
import { ContainerMounts } from "./container-mounts.js";
import { usernsRef } from "./userns.js";
import { applyCdiEdits, CdiRegistry, requestedCdiDevices } from "./cdi.js";
import type { LifecycleKind, LifecyclePublisher } from "./events.js";

export const EXEC_OUTPUT_CAP = 16 * 1024 * 1024;
/** How long ExecSync keeps reading output after the process exited while a child it left still holds the pipes. */
export const EXEC_DRAIN_GRACE_MS = 100;
/** How often running containers are checked for a conmon that died without an exit file. */
const SWEEP_INTERVAL_MS = 5_000;

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
}

type ProcessUser = { uid: bigint; gid: bigint; supplementalGroups: bigint[] };

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

/** `name` as an absolute path: as given when it has a slash, else the first match on PATH. */
export async function findBinary(name: string): Promise<string> {
  if (name.includes("/")) return path.resolve(name);
  for (const dir of (process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    const p = path.join(dir, name);
    if (await exists(p)) return p;
  }
  throw new FailedPrecondition(`"${name}" is not on PATH`);
}

export class ContainerManager implements PodContainers {
  private readonly records = new Map<string, ContainerRecord>();
  private readonly listViews = new WeakMap<ContainerRecord, { state: ContainerState; annotations: Record<string, string>; labels: Record<string, string>; view: Container }>();
  private readonly names = new Map<string, string>();
  private readonly lock = new KeyedLock();
  private readonly store: RecordStore<ContainerRecord>;
  private readonly bundles: string;
  private readonly exitDir: string;
  private readonly socketDir: string;
  private readonly runtimes = new Map<string, OciRuntime>();
  private host!: HostFacts;
  private watcher: FSWatcher | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private readonly exitWaiters = new Map<string, Set<() => void>>();
  /** Exit-file reads in progress, one per container. */
  private readonly settling = new Map<string, Promise<void>>();
  private readonly log: Logger;
  private conmonPath = "";
  private readonly mounts: ContainerMounts;
  /** Image volumes of containers being created (not yet in `records`), by container id. */
  private readonly volumesInCreate = new Map<string, string[]>();
  private readonly cdi: CdiRegistry;

  constructor(private readonly deps: ContainerManagerDeps) {
    const c = deps.config;
    this.cdi = deps.cdi ?? new CdiRegistry(c.cdi.spec_dirs, deps.log.child({ layer: "cdi" }));
    this.store = new RecordStore<ContainerRecord>(path.join(c.root, "containers"));
    this.bundles = path.join(c.state, "containers");
    this.exitDir = path.join(c.state, "exits");
    // conmon links <socketDir>/<id> to the bundle and cuts link names that reach 107 bytes: keep it short.
    this.socketDir = path.join(c.state, "s");
    this.mounts = new ContainerMounts(c.state, deps.images, deps.snapshots);
    this.log = deps.log.child({ layer: "containers" });
  }

  async init(): Promise<void> {
    await mkdir(this.bundles, { recursive: true, mode: 0o711 });
    await mkdir(this.exitDir, { recursive: true, mode: 0o700 });
    await mkdir(this.socketDir, { recursive: true, mode: 0o700 });
    this.host = this.deps.host ?? (await gatherHostFacts(this.deps.config.runtime.restrict_oom_score_adj, this.deps.config.cgroup_driver));
    this.conmonPath = await findBinary(this.deps.config.runtime.conmon);
    const { records, problems } = await this.store.loadAll();
    for (const p of problems) this.log.error(p, "container record quarantined");
    for (const [id, r] of records) {
      if (r.id !== id) {
        this.log.error({ file: id }, "container record names another id; ignored");
        continue;
      }
      if (r.phase !== "exited" && r.conmonPid === 0) {
        // Created, then berthd stopped before Start saved the pids: conmon wrote them to files.
        r.conmonPid = (await readPid(path.join(r.bundle, "conmon.pid"))) ?? 0;
        r.pid = (await readPid(path.join(r.bundle, "pidfile"))) ?? 0;
      }
      this.records.set(id, r);
      this.names.set(r.name, id);
    }
    for (const id of await this.mounts.sweep((cid) => this.records.has(cid))) this.log.warn({ id }, "removed the staged mounts (image volumes, idmapped binds) of a container with no record");
    this.watcher = watch(this.exitDir, (_event, file) => {
      if (!file) return;
      const name = String(file);
      for (const w of this.exitWaiters.get(name) ?? []) w();
      const r = this.records.get(name);
      if (r && r.phase !== "exited") void this.settle(r);
    });
    this.watcher.on("error", (err) => this.log.warn({ err: String(err) }, "exit dir watch failed; relying on the periodic sweep"));
    // Exits that happened while berthd was down (the watch is up first, so none slips between).
    await this.sweep();
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
    this.log.info({ containers: this.records.size }, "container records loaded");
  }

  close(): void {
    this.watcher?.close();
    clearInterval(this.sweeper);
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
          if (this.records.get(r.id) === r) await this.refresh(r);
        })
        .catch((err) => this.log.warn({ id: r.id, err: String(err) }, "reading the container's exit state"))
        .finally(() => this.settling.delete(r.id));
      this.settling.set(r.id, p);
    }
    return p;
  }

  /** Settles every live container whose exit file exists or whose conmon is gone. */
  private async sweep(): Promise<void> {
    const exitNames = new Set(await readdir(this.exitDir).catch(() => [] as string[]));
    await Promise.all([...this.records.values()].filter((r) => r.phase !== "exited").map(async (r) => {
      if (exitNames.has(r.id) || (r.conmonPid > 0 && !(await isConmon(r.conmonPid)))) await this.settle(r);
    }));
  }

  /** The OCI runtime for a handler name ("" = the default). */
  private async runtime(handler: string): Promise<OciRuntime> {
    const name = handler || this.deps.config.runtime.default_handler;
    let rt = this.runtimes.get(name);
    if (!rt) {
      const h = this.deps.config.runtime.handlers[name];
      if (!h) throw new InvalidArgument(`runtime handler "${name}" is not configured (known: ${Object.keys(this.deps.config.runtime.handlers).join(", ")})`);
      rt = new OciRuntime(await findBinary(h.path), handlerRoot(this.deps.config, name), this.deps.config.cgroup_driver === "systemd", parseDuration(this.deps.config.runtime.call_timeout));
      this.runtimes.set(name, rt);
    }
    return rt;
  }

  /** Finds a record by full id or unique prefix. */
  private find(idOrPrefix: string, kinds: Array<ContainerRecord["kind"]> = ["container"]): ContainerRecord {
    if (!idOrPrefix) throw new InvalidArgument("container id is empty");
    const exact = this.records.get(idOrPrefix);
    if (exact && kinds.includes(exact.kind)) return exact;
    const matches = [...this.records.values()].filter((r) => kinds.includes(r.kind) && r.id.startsWith(idOrPrefix));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) throw new InvalidArgument(`container id prefix "${idOrPrefix}" is ambiguous (${matches.length} containers)`);
    throw new NotFound(`container "${idOrPrefix}" not found`);
  }

  private async save(r: ContainerRecord): Promise<void> {
    await this.store.put(r.id, r);
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
    const taken = this.names.get(name);
    if (taken) throw new AlreadyExists(`container name "${name}" is already used by container ${taken}; remove it first`);
    const id = randomBytes(32).toString("hex");
    this.names.set(name, id);
    try {
      return await this.lock.run(id, () => this.createLocked(id, name, sandbox, config, "container"));
    } catch (err) {
      this.names.delete(name);
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
    const bundle = path.join(this.bundles, id);
    const exitFile = path.join(this.exitDir, id);
    const cgroupsPath = this.deps.cgroups.containerPath(sandbox.cgroupParent, id);
    const undo: Array<() => Promise<unknown>> = [];
    try {
      await mkdir(bundle, { recursive: true, mode: 0o700 });
      undo.push(() => rm(bundle, { recursive: true, force: true }));
      // Removal waits on the snapshot's own lock, so it is safe to queue before prepare ends.
      undo.push(() => this.deps.snapshots.remove(id));
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
        this.deps.snapshots.prepare(id, image.id, { userns: usernsRef(sandbox.userns) }).catch((err) => {
          throw wrap(`prepare rootfs of image ${image.id}`, err);
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
        ? path.join(bundle, "infra.log")
        : sandbox.logDirectory && config.logPath ? await prepareLogFile(sandbox.logDirectory, config.logPath) : path.join(bundle, "container.log");
      const record: ContainerRecord = {
        id, sandboxId: sandbox.id, kind, name,
        metadata: config.metadata!,
        image: { ...config.image!, annotations: config.image!.annotations ?? {} },
        imageId: image.id,
        imageRef: image.repoDigests[0] ?? image.id,
        imageName,
        labels: { ...config.labels },
        annotations: { ...config.annotations },
        mounts: config.mounts,
        imageVolumes: staged.imageIds.length > 0 ? staged.imageIds : undefined,
        logPath,
        tty: config.tty, stdin: config.stdin, stdinOnce: config.stdinOnce,
        phase: "created",
        createdAt: nowNs(), startedAt: 0n, finishedAt: 0n, exitCode: 0, reason: "", message: "",
        handler: sandbox.runtimeHandler || this.deps.config.runtime.default_handler,
        runtimeRoot: rt.root,
        bundle, rootfs, exitFile,
        socketLink: path.join(this.socketDir, id),
        cgroupsPath,
        conmonPid: 0, pid: 0,
        resources: config.linux?.resources,
        user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
        stopSignal: stopSignalName(config.stopSignal, image.config.config?.StopSignal),
        process: spec.process,
      };
      // The record is written before conmon starts so a crash here leaves something to clean up.
      undo.push(() => this.store.delete(id));
      await Promise.all([writeFileAtomic(path.join(bundle, "config.json"), JSON.stringify(spec), 0o600), this.save(record)]);
      await faultPoint("CreateContainer.after-record");

      const pidFile = path.join(bundle, "pidfile");
      undo.push(() => rt.delete(id, true));
      const started2 = await startConmon({
        conmon: this.conmonPath,
        runtimePath: rt.binary,
        runtimeArgs: rt.globalArgs(),
        systemdCgroup: rt.systemdCgroup,
        id,
        name: config.metadata!.name,
        bundle,
        containerPidFile: pidFile,
        conmonPidFile: path.join(bundle, "conmon.pid"),
        logPath,
        exitDir: this.exitDir,
        socketDir: this.socketDir,
        stdin: config.stdin,
        stdinOnce: config.stdinOnce,
        terminal: config.tty,
        logLevel: "info",
        conmonLogFile: path.join(bundle, "conmon.log"),
        timeoutMs: rt.timeoutMs,
      }).catch((err) => {
        throw wrap("create container (conmon + runc create)", err);
      });
      await faultPoint("CreateContainer.after-conmon");
      // Not saved here: Start saves them, and init reads them back from the pid files after a crash.
      record.pid = started2.containerPid;
      record.pidStartTime = procStartTime(record.pid);
      record.conmonPid = started2.conmonPid;
      this.records.set(id, record);
      this.volumesInCreate.delete(id);
      this.announce(record, "created");
      await faultPoint("CreateContainer.after-created");
      this.log.info({ id, name, sandbox: sandbox.id, ms: Date.now() - started }, "container created");
      return id;
    } catch (err) {
      for (const u of undo.reverse()) await u().catch((e) => this.log.warn({ id, err: String(e) }, "cleanup after failed create"));
      await this.deps.cgroups.remove(cgroupsPath).catch(() => undefined);
      await rm(exitFile, { force: true }).catch(() => undefined);
      await rm(path.join(this.socketDir, id), { force: true }).catch(() => undefined);
      throw err;
    }
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
    const present = await exists(r.exitFile);
    if (!present) {
      if (r.conmonPid > 0 && !(await isConmon(r.conmonPid)) && !(await exists(r.exitFile))) await this.monitorDied(r);
      return r;
    }
    let code: number;
    let finished: bigint;
    try {
      const [text, st] = await Promise.all([readFile(r.exitFile, "utf8"), stat(r.exitFile)]);
      code = Number.parseInt(text.trim(), 10);
      // Seen between conmon creating the file and writing it: the next event brings the code.
      if (!Number.isInteger(code)) return r;
      finished = BigInt(Math.round(st.mtimeMs * 1000)) * 1000n;
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
      return r;
    }
    const [oomFile, oomKills] = await Promise.all([exists(path.join(r.bundle, "oom")), this.deps.cgroups.oomKills(r.cgroupsPath).catch(() => 0)]);
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
    for (const w of this.exitWaiters.get(r.id) ?? []) w();
    if (r.kind === "infra") this.deps.sandboxes.infraExited?.(r.sandboxId);
  }

  /** Waits up to `ms` for the container's exit file. */
  private async waitExit(r: ContainerRecord, ms: number): Promise<boolean> {
    const base = path.basename(r.exitFile);
    let wake!: () => void;
    const set = this.exitWaiters.get(base) ?? new Set();
    this.exitWaiters.set(base, set);
    const until = Date.now() + ms;
    try {
      for (;;) {
        // Listening before looking: a file written in between still wakes this wait.
        const woke = new Promise<void>((res) => {
          wake = res;
          set.add(wake);
        });
        if (await exists(r.exitFile)) return true;
        if (Date.now() >= until) return false;
        await Promise.race([woke, sleep(Math.min(100, Math.max(1, until - Date.now())))]);
        set.delete(wake);
      }
    } finally {
      set.delete(wake);
      if (set.size === 0) this.exitWaiters.delete(base);
    }
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
    try {
      return this.find(id, ["container", "infra"]);
    } catch (err) {
      if (err instanceof NotFound) return undefined;
      throw err;
    }
  }

  private async removeLocked(r: ContainerRecord): Promise<void> {
    if (!this.records.has(r.id)) return;
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
    await this.store.delete(r.id);
    await faultPoint("RemoveContainer.after-record-delete");
    this.records.delete(r.id);
    if (this.names.get(r.name) === r.id) this.names.delete(r.name);
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
    for (let i = 0; i < 200 && (await isConmon(r.conmonPid)); i++) await sleep(5);
    if (await isConmon(r.conmonPid)) {
      try {
        process.kill(r.conmonPid, "SIGKILL");
      } catch {
        // gone
      }
    }
  }

  /** A container that uses image `imageId` as a volume (RemoveImage must wait for it to go), if any. */
  imageVolumeUser(imageId: string): string | undefined {
    for (const r of this.records.values()) if (r.imageVolumes?.includes(imageId)) return r.id;
    for (const [id, ids] of this.volumesInCreate) if (ids.includes(imageId)) return id;
    return undefined;
  }

  async stopAll(sandboxId: string, timeoutSec: number): Promise<void> {
    const mine = [...this.records.values()].filter((r) => r.sandboxId === sandboxId && r.kind === "container");
    await Promise.all(mine.map((r) => this.lock.run(r.id, () => this.stopLocked(r, timeoutSec))));
  }

  async removeAll(sandboxId: string): Promise<void> {
    const mine = [...this.records.values()].filter((r) => r.sandboxId === sandboxId && r.kind === "container");
    await Promise.all(mine.map((r) => this.lock.run(r.id, () => this.removeLocked(r))));
  }

  // ---- Status / List --------------------------------------------------------------------

  private stateOf(p: ContainerPhase): ContainerState {
    return p === "created" ? ContainerState.CONTAINER_CREATED : p === "running" ? ContainerState.CONTAINER_RUNNING : ContainerState.CONTAINER_EXITED;
  }

  /** Publishes a CRI container's lifecycle step (infra containers are the pod's business). */
  private announce(r: ContainerRecord, kind: LifecycleKind): void {
    if (r.kind === "container") this.deps.events?.publish({ kind, id: r.id, sandboxId: r.sandboxId, at: nowNs() });
  }

  /** ContainerStatus (verbose = false) of every CRI container of a pod, from memory. */
  statusesOf(sandboxId: string): ContainerStatus[] {
    return this.containersOf(sandboxId).map((r) => this.criStatus(r));
  }

  /** A container's status from memory; `user` defaults to the ids its spec gave it (status() reads the process's). */
  private criStatus(r: ContainerRecord, user = this.specUser(r)): ContainerStatus {
    return ContainerStatus.fromPartial({
      id: r.id,
      metadata: r.metadata,
      state: this.stateOf(r.phase),
      createdAt: r.createdAt,
      startedAt: r.startedAt,
      finishedAt: r.finishedAt,
      exitCode: r.exitCode,
      image: { image: r.imageName, annotations: r.image.annotations, userSpecifiedImage: r.image.userSpecifiedImage || r.image.image, runtimeHandler: r.image.runtimeHandler, imageRef: r.image.imageRef ?? "" },
      imageRef: r.imageRef,
      imageId: r.imageId,
      reason: r.reason,
      message: r.message,
      labels: r.labels,
      annotations: r.annotations,
      mounts: r.mounts,
      logPath: r.logPath,
      resources: r.resources ? { linux: r.resources } : undefined,
      user: { linux: user },
      stopSignal: stopSignalEnum(r.stopSignal),
    });
  }

  async status(id: string, verbose: boolean): Promise<{ status: ContainerStatus; info: Record<string, string> }> {
    const r = this.find(id);
    // A dead monitor writes no exit file for the watch to see: asked about, the container is settled now, not at the next sweep.
    if (r.phase !== "exited" && r.conmonPid > 0 && !(await isConmon(r.conmonPid))) await this.settle(r);
    const status = this.criStatus(r, await this.processUser(r));
    const info: Record<string, string> = {};
    if (verbose) {
      const spec = await readFile(path.join(r.bundle, "config.json"), "utf8").then((t) => JSON.parse(t) as OciSpec).catch(() => undefined);
      info.info = JSON.stringify({
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
      });
    }
    return { status, info };
  }

  /**
   * The uid, gid and groups the container's init process really holds (/proc/<pid>/status,
   * the pid checked against its start time), else what its spec gave it.
   */
  private async processUser(r: ContainerRecord): Promise<ProcessUser> {
    const fromSpec = this.specUser(r);
    if (r.phase !== "running" || r.pid <= 0 || !r.pidStartTime) return fromSpec;
    const text = await readFile(`/proc/${r.pid}/status`, "utf8").catch(() => undefined);
    if (text === undefined || procStartTime(r.pid) !== r.pidStartTime) return fromSpec;
    return processIds(text) ?? fromSpec;
  }

  private specUser(r: ContainerRecord): ProcessUser {
    return { uid: BigInt(r.user.uid), gid: BigInt(r.user.gid), supplementalGroups: r.user.additionalGids.map(BigInt) };
  }

  async list(filter: ContainerFilter | undefined): Promise<Container[]> {
    const out: Container[] = [];
    for (const r of this.records.values()) {
      if (r.kind !== "container") continue;
      if (filter?.id && !r.id.startsWith(filter.id)) continue;
      if (filter?.podSandboxId && !r.sandboxId.startsWith(filter.podSandboxId)) continue;
      if (filter?.labelSelector && Object.entries(filter.labelSelector).some(([k, v]) => r.labels[k] !== v)) continue;
      if (filter?.state && this.stateOf(r.phase) !== filter.state.state) continue;
      out.push(this.listView(r));
    }
    return out;
  }

  /**
   * A record's ListContainers entry: the same object until the container's state or
   * annotations change, so the CRI front can keep its encoded bytes (kubelet lists every
   * container every second). Never mutated once handed out.
   */
  private listView(r: ContainerRecord): Container {
    const state = this.stateOf(r.phase);
    const memo = this.listViews.get(r);
    if (memo && memo.state === state && memo.annotations === r.annotations && memo.labels === r.labels) return memo.view;
    const view: Container = {
      id: r.id,
      podSandboxId: r.sandboxId,
      metadata: r.metadata,
      image: { image: r.imageName, annotations: r.image.annotations, userSpecifiedImage: r.image.userSpecifiedImage || r.image.image, runtimeHandler: r.image.runtimeHandler, imageRef: r.image.imageRef ?? "" },
      imageRef: r.imageRef,
      imageId: r.imageId,
      state,
      createdAt: r.createdAt,
      labels: r.labels,
      annotations: r.annotations,
    };
    this.listViews.set(r, { state, annotations: r.annotations, labels: r.labels, view });
    return view;
  }

  /** Records of a pod's CRI containers (not its infra container). */
  containersOf(sandboxId: string): ContainerRecord[] {
    return [...this.records.values()].filter((r) => r.sandboxId === sandboxId && r.kind === "container");
  }

  /** Every CRI container record (kept current by the exit watch). */
  async allContainers(): Promise<ContainerRecord[]> {
    return [...this.records.values()].filter((r) => r.kind === "container");
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
    await reopenLog(r.bundle).catch((err) => {
      throw wrap(`reopen log of container ${r.id}`, err);
    });
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
    // The process spec and the pid file sit in the bundle under a fresh name; they go once the
    // answer is on its way.
    const base = path.join(r.bundle, `exec-${randomBytes(6).toString("hex")}`);
    const processFile = `${base}.json`;
    const pidFile = `${base}.pid`;
    try {
      await writeFile(processFile, JSON.stringify(execProcess(r.process, cmd)), { mode: 0o600 });
      const res = await rt.execSync(r.id, { processFile, pidFile, timeoutMs: timeoutSec * 1000, outputCap: EXEC_OUTPUT_CAP, drainGraceMs: EXEC_DRAIN_GRACE_MS });
      if (res.timedOut) throw new DeadlineExceeded(`command ${JSON.stringify(cmd)} in container ${r.id} timed out after ${timeoutSec} s; it was killed`);
      return { ...fitExecResponse(res.stdout, res.stderr), exitCode: res.exitCode };
    } finally {
      void Promise.all([rm(processFile, { force: true }), rm(pidFile, { force: true })]).catch((err: unknown) =>
        this.log.warn({ id: r.id, err: String(err) }, "removing an exec's process file"));
    }
  }

  // ---- Infra (pause) containers -----------------------------------------------------------

  /** Creates and starts a pod's infra container (used by InfraContainers). */
  async runInfra(sandbox: SandboxRef, config: ContainerConfig): Promise<ContainerRecord> {
    const id = randomBytes(32).toString("hex");
    const name = `POD_${sandbox.id}`;
    if (this.names.has(name)) throw new AlreadyExists(`pod ${sandbox.id} already has an infra container ${this.names.get(name)}`);
    this.names.set(name, id);
    try {
      await this.lock.run(id, () => this.createLocked(id, name, sandbox, config, "infra"));
    } catch (err) {
      this.names.delete(name);
      throw err;
    }
    const r = this.records.get(id)!;
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
    return [...this.records.values()];
  }

  /** Sets what runc showed after a crash: a container started before its record said so, or one that is gone. */
  async recoverPhase(id: string, phase: "running" | "lost", at: bigint, message = ""): Promise<void> {
    const r = this.records.get(id);
    if (!r || r.phase === "exited") return;
    if (phase === "lost") return this.markExited(r, 255, "Error", message, at);
    r.phase = "running";
    r.startedAt = at;
    await this.save(r);
    this.announce(r, "started");
  }

  infraOf(sandboxId: string): ContainerRecord | undefined {
    return [...this.records.values()].find((r) => r.sandboxId === sandboxId && r.kind === "infra");
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
