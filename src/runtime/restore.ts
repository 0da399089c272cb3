// Start-up restore, in one order (restore()): 1. load the container and pod records, and let
// the exit watch settle what exited while berthd was down; 2. reconcile each pod with the host
// (sandbox.ts: roll back a half-made pod, finish an interrupted stop, NOTREADY when its pins
// vanished); 3. reconcile each container with runc and conmon (below: a running container keeps
// running, a half-created one is rolled back, one runc no longer knows is reported exited);
// 4. sweep what belongs to berth but to no record: pod pins, /dev/shm mounts, pod dirs and CNI
// attachments; container bundles, exit files, socket links, runc state, conmon processes,
// cgroups, rootfs snapshots and staged mounts. Only entries named like a berth id are touched;
// anything else found in berth's dirs is logged and left alone.
import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import type { Config } from "../config.js";
import { StateLayout } from "../layout.js";
import { causeChain } from "../errors.js";
import type { Logger } from "../log.js";
import { processStartNs } from "../proc.js";
import { resultAddresses } from "../cni/config.js";
import type { PodNetwork } from "../cni/network.js";
import { unmount } from "../image/mount.js";
import { isPinned, removePath, stageNetnsForTeardown, unpinNamespaces } from "./namespaces.js";
import type { ContainerManager } from "./container.js";
import type { SandboxManager } from "./sandbox.js";
import { cgroupParent } from "./sandbox-config.js";
import { containerCgroupsUnder, type Cgroups } from "./cgroups.js";
import { containerConmons } from "./oci/conmon.js";
import type { ContainerRecord } from "./container-record.js";
import type { OciRuntimes } from "./oci/runtimes.js";

const CONTAINER_ID = /^[0-9a-f]{64}$/;
const SANDBOX_ID = CONTAINER_ID;

/** What recovery needs of the container manager. */
export interface RecoverableContainers {
  recoveryRecords(): ContainerRecord[];
  recoverPhase(id: string, phase: "running" | "lost", at: bigint, message?: string): Promise<void>;
  remove(id: string): Promise<void>;
}

export interface ContainerRecoveryOptions {
  containers: RecoverableContainers;
  config: Config;
  cgroups: Cgroups;
  snapshots: { keys(): string[]; remove(key: string): Promise<void> };
  runtimes: OciRuntimes;
  log: Logger;
}

export interface ContainerRecoveryReport {
  running: number;
  exitedWhileDown: number;
  rolledBack: number;
  lost: number;
  orphans: number;
}

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}

function killQuiet(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Restore, step 3: every container record against what runc and conmon show. */
export async function reconcileContainers(o: ContainerRecoveryOptions): Promise<ContainerRecoveryReport> {
  const { log, runtimes } = o;
  const report: ContainerRecoveryReport = { running: 0, exitedWhileDown: 0, rolledBack: 0, lost: 0, orphans: 0 };

  for (const r of o.containers.recoveryRecords()) {
    const rlog = { id: r.id, name: r.name, kind: r.kind };
    try {
      if (r.phase === "exited") continue;
      if (r.phase === "created" && r.pid === 0) {
        // CreateContainer never finished: kubelet got no id. Roll it back, conmon and runc container included.
        log.warn(rlog, "CreateContainer was interrupted (berthd crashed); rolling the container back");
        const { conmonPid } = await runtimes.createdPids(r.id);
        if (conmonPid && (await runtimes.monitorAlive(conmonPid))) r.conmonPid = conmonPid;
        // In memory only: removal deletes the record; a failed removal leaves it to the next start.
        Object.assign(r, { phase: "exited", exitCode: 255, reason: "Error", message: "rolled back after a crash during CreateContainer" });
        await o.containers.remove(r.id);
        report.rolledBack++;
        continue;
      }
      if (await runtimes.exited(r.id)) {
        report.exitedWhileDown++;
        log.info(rlog, "container exited while berthd was down; its exit code is in conmon's exit file");
        continue;
      }
      const state = await (await runtimes.get(r.handler)).state(r.id);
      if (!state || state.status === "stopped") {
        // No exit file and runc has nothing running: a reboot wiped the state, or conmon died with it.
        await o.containers.recoverPhase(r.id, "lost", BigInt(Date.now()) * 1_000_000n,
          state ? "the container stopped and conmon recorded no exit code" : "the container is gone from the runtime (host reboot?) and no exit code was recorded");
        report.lost++;
        log.warn(rlog, "container is gone and left no exit code; reported exited (255)");
        continue;
      }
      if (r.phase === "created" && state.status === "running") {
        // StartContainer ran runc start but crashed before saving "running".
        await o.containers.recoverPhase(r.id, "running", (await processStartNs(state.pid)) ?? BigInt(Date.now()) * 1_000_000n);
        log.warn(rlog, "container was started before a crash; recorded as running");
      }
      if (r.conmonPid > 0 && !(await runtimes.monitorAlive(r.conmonPid))) log.warn(rlog, "container runs without its conmon: it is killed and reported exited (MonitorDied)");
      if (state.status === "running") report.running++;
    } catch (err) {
      log.error({ ...rlog, err: causeChain(err) }, "cannot recover container; left as it is");
    }
  }

  return report;
}

/** Restore, step 4 for containers: what no container record owns; returns how many ids were cleaned. */
export async function sweepContainerOrphans(o: ContainerRecoveryOptions & { cgroupParents: string[] }): Promise<number> {
  const { config, log, runtimes } = o;
  const layout = new StateLayout(config);
  let cleaned = 0;
  const known = new Set(o.containers.recoveryRecords().map((r) => r.id));
  const { bundles, exits, sockets } = layout;
  const orphans = new Map<string, Set<string>>();
  const note = (id: string, what: string) => (orphans.get(id) ?? orphans.set(id, new Set()).get(id)!).add(what);
  for (const [dir, what] of [[bundles, "bundle"], [exits, "exit file"], [sockets, "socket link"]] as const) {
    for (const name of await entries(dir)) {
      if (!CONTAINER_ID.test(name)) {
        log.warn({ path: path.join(dir, name) }, "unknown entry in berth's container state dir; left alone");
        continue;
      }
      if (!known.has(name)) note(name, what);
    }
  }
  for (const handler of runtimes.names()) {
    for (const name of await entries(layout.runtimeRoot(handler))) {
      if (CONTAINER_ID.test(name) && !known.has(name)) note(name, `runc state (${handler})`);
    }
  }
  const conmons = await containerConmons(bundles, (id) => CONTAINER_ID.test(id));
  for (const id of conmons.keys()) if (!known.has(id)) note(id, "conmon process");
  // Cgroups with no other trace are looked for under the parents given (the pods').
  const cgroups = new Map<string, string>();
  for (const parent of new Set(o.cgroupParents)) {
    for (const c of await containerCgroupsUnder(o.cgroups.driver, parent)) {
      if (known.has(c.id)) continue;
      cgroups.set(c.id, c.cgroupsPath);
      note(c.id, "cgroup");
    }
  }
  for (const key of o.snapshots.keys()) {
    if (known.has(key)) continue;
    if (CONTAINER_ID.test(key)) note(key, "rootfs snapshot");
    else log.warn({ snapshot: key }, "snapshot of no container and not named like one; left alone");
  }

  for (const [id, what] of orphans) {
    try {
      const files = layout.bundle(id);
      const bundle = files.dir;
      const spec = JSON.parse(await readFile(files.spec, "utf8").catch(() => "{}")) as { linux?: { cgroupsPath?: string } };
      for (const handler of runtimes.names()) {
        if (what.has(`runc state (${handler})`)) await (await runtimes.get(handler)).delete(id, true);
      }
      const conmonPid = conmons.get(id) || (await runtimes.createdPids(id)).conmonPid;
      if (conmonPid && (await runtimes.monitorAlive(conmonPid))) {
        // With its container deleted conmon exits by itself; give it a moment to flush, then make sure.
        for (let i = 0; i < 25 && (await runtimes.monitorAlive(conmonPid)); i++) await new Promise((r) => setTimeout(r, 20));
        if (await runtimes.monitorAlive(conmonPid)) killQuiet(conmonPid);
      }
      for (const cg of new Set([spec.linux?.cgroupsPath, cgroups.get(id)])) {
        if (cg) await o.cgroups.remove(cg).catch((err) => log.warn({ id, err: String(err) }, "cannot remove an orphaned container cgroup"));
      }
      if (what.has("rootfs snapshot")) await o.snapshots.remove(id);
      await rm(bundle, { recursive: true, force: true });
      await rm(layout.exitFile(id), { force: true });
      await rm(layout.socketLink(id), { force: true });
      cleaned++;
      log.warn({ id, found: [...what] }, "removed the resources of a container berth has no record of");
    } catch (err) {
      log.error({ id, err: causeChain(err) }, "cannot clean up an orphaned container; left for the next start");
    }
  }
  return cleaned;
}

export interface SweepOptions {
  layout: StateLayout;
  /** Ids of every sandbox record (loaded or not: a record berth could read but ignored still owns its resources). */
  known: Set<string>;
  network: PodNetwork;
  log: Logger;
}

/** Restore, step 4 for pods: namespace pins, pod dirs (and their /dev/shm), CNI attachments of no pod record; returns the ids cleaned up. */
export async function sweepPodOrphans(opts: SweepOptions): Promise<string[]> {
  const { layout, known, network, log } = opts;
  const orphans = new Map<string, { result?: unknown; attached: boolean }>();
  const note = (id: string) => orphans.get(id) ?? orphans.set(id, { attached: false }).get(id)!;

  for (const dir of [layout.pins, layout.pods]) {
    for (const name of await entries(dir)) {
      if (!SANDBOX_ID.test(name)) {
        log.warn({ path: path.join(dir, name) }, "unknown entry in berth's pod state dir; left alone");
        continue;
      }
      if (!known.has(name)) note(name);
    }
  }
  const cached = await network.cachedAttachments();
  for (const file of cached.foreign) log.warn({ path: file }, "unknown file in the CNI result cache; left alone");
  for (const a of cached.attachments) {
    if (known.has(a.containerId)) continue;
    if (!SANDBOX_ID.test(a.containerId)) {
      log.warn({ containerId: a.containerId }, "cached CNI attachment of no sandbox and not named like one; left alone");
      continue;
    }
    Object.assign(note(a.containerId), { attached: true, result: a.result });
  }

  const cleaned: string[] = [];
  for (const [id, o] of orphans) {
    const nsDir = layout.pinDir(id);
    const podDir = layout.podDir(id);
    try {
      if (o.attached) {
        let netns = path.join(nsDir, "net");
        if (!(await isPinned(netns))) {
          // As for a pod whose pin vanished: plugins find their rules through eth0's addresses.
          const cidrs = resultAddresses(o.result);
          netns = cidrs.length ? await stageNetnsForTeardown(nsDir, "eth0", cidrs).catch(() => "") : "";
        }
        await network.tearDown({ containerId: id, netns, podName: "", podNamespace: "", podUid: "" });
      }
      await unmount(layout.podShm(id));
      await removePath(podDir);
      await unpinNamespaces(nsDir);
      cleaned.push(id);
      log.warn({ id, network: o.attached }, "removed the resources of a pod berth has no record of (orphaned netns pins, /dev/shm, CNI attachment, files)");
    } catch (err) {
      log.error({ id, err: causeChain(err) }, "cannot clean up an orphaned pod's resources; left for the next start");
    }
  }
  return cleaned;
}

export interface RestoreDeps {
  config: Config;
  containers: ContainerManager;
  sandboxes: SandboxManager;
  runtimes: OciRuntimes;
  cgroups: Cgroups;
  snapshots: { keys(): string[]; remove(key: string): Promise<void> };
  network: PodNetwork;
  log: Logger;
}

export interface RestoreReport extends ContainerRecoveryReport {
  podOrphans: number;
}

/** Brings berthd's memory and the host back in line after a start, in the order the header says. */
export async function restore(d: RestoreDeps): Promise<RestoreReport> {
  const { config, log } = d;
  const layout = new StateLayout(config);
  // 1. Records: containers first (pods reconcile their infra containers through them).
  await d.containers.load();
  const podIds = await d.sandboxes.load();
  await d.containers.startExitMonitor();
  // 2. Pods.
  await d.sandboxes.reconcile();
  // 3. Containers.
  const opts = { containers: d.containers, config, cgroups: d.cgroups, snapshots: d.snapshots, runtimes: d.runtimes, log };
  const report = await reconcileContainers(opts);
  // 4. Orphans.
  const podOrphans = (await sweepPodOrphans({ layout, known: podIds, network: d.network, log })).length;
  // Not the default parent: berthds on one host (tests) share it; kubelet always names a parent.
  const parents = d.sandboxes.list().map((p) => p.cgroupParent).filter((p) => p !== cgroupParent(config.cgroup_driver, ""));
  report.orphans = await sweepContainerOrphans({ ...opts, cgroupParents: parents });
  await d.containers.sweepStagedMounts();
  log.info({ ...report, podOrphans }, "restored");
  return { ...report, podOrphans };
}
