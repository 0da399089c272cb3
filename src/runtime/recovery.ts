// Start-up recovery of containers: reconciles every container record with what runc and
// conmon show after berthd was down (or killed mid-RPC), and removes what belongs to berth but
// to no record. A running container keeps running; one that exited while berthd was down is
// read from conmon's exit file by the container manager; one a crash left half created is
// rolled back; one runc no longer knows (a reboot) is reported exited. Orphaned bundles, exit
// files, conmon processes, runc state, cgroups and snapshots named by a berth container id are
// removed; anything else found in berth's dirs is logged and left alone.
import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import type { Config } from "../config.js";
import { StateLayout } from "../layout.js";
import { causeChain } from "../errors.js";
import type { Logger } from "../log.js";
import type { Cgroups } from "./cgroups.js";
import { containerConmons } from "./oci/conmon.js";
import type { ContainerRecord } from "./container-record.js";
import type { OciRuntimes } from "./oci/runtimes.js";

const CONTAINER_ID = /^[0-9a-f]{64}$/;

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

/** When `pid` started, in ns since the epoch (from /proc: start ticks after boot + boot time). */
async function processStartNs(pid: number): Promise<bigint | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[19]);
  const btime = Number(/^btime (\d+)$/m.exec(await readFile("/proc/stat", "utf8").catch(() => ""))?.[1]);
  if (!Number.isFinite(ticks) || !Number.isFinite(btime)) return undefined;
  // USER_HZ is 100 on every Linux ABI berth runs on.
  return BigInt(btime) * 1_000_000_000n + BigInt(ticks) * 10_000_000n;
}

function killQuiet(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

export async function recoverContainers(o: ContainerRecoveryOptions): Promise<ContainerRecoveryReport> {
  const { config, log } = o;
  const layout = new StateLayout(config);
  const report: ContainerRecoveryReport = { running: 0, exitedWhileDown: 0, rolledBack: 0, lost: 0, orphans: 0 };
  const { runtimes } = o;

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

  // Orphans: berth's container resources that no record owns.
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
      if (spec.linux?.cgroupsPath) await o.cgroups.remove(spec.linux.cgroupsPath).catch((err) => log.warn({ id, err: String(err) }, "cannot remove an orphaned container cgroup"));
      if (what.has("rootfs snapshot")) await o.snapshots.remove(id);
      await rm(bundle, { recursive: true, force: true });
      await rm(layout.exitFile(id), { force: true });
      await rm(layout.socketLink(id), { force: true });
      report.orphans++;
      log.warn({ id, found: [...what] }, "removed the resources of a container berth has no record of");
    } catch (err) {
      log.error({ id, err: causeChain(err) }, "cannot clean up an orphaned container; left for the next start");
    }
  }
  log.info({ ...report }, "containers recovered");
  return report;
}
