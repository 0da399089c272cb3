// Start-up recovery of containers: reconciles every container record with what runc and
// conmon show after berthd was down (or killed mid-RPC), and removes what belongs to berth but
// to no record. A running container keeps running; one that exited while berthd was down is
// read from conmon's exit file by the container manager; one a crash left half created is
// rolled back; one runc no longer knows (a reboot) is reported exited. Orphaned bundles, exit
// files, conmon processes, runc state, cgroups and snapshots named by a berth container id are
// removed; anything else found in berth's dirs is logged and left alone.
import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { handlerRoot, parseDuration, type Config } from "../config.js";
import { causeChain } from "../errors.js";
import type { Logger } from "../log.js";
import { processStartNs } from "../proc.js";
import type { Cgroups } from "./cgroups.js";
import { isConmon, readPid } from "./conmon.js";
import type { ContainerRecord } from "./container-record.js";
import { OciRuntime } from "./runc.js";

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
  log: Logger;
}

export interface ContainerRecoveryReport {
  running: number;
  exitedWhileDown: number;
  rolledBack: number;
  lost: number;
  orphans: number;
}

async function exists(p: string): Promise<boolean> {
  return readFile(p).then(() => true, (err) => (err as NodeJS.ErrnoException).code === "EISDIR");
}

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}

/** Container conmon processes (not exec ones) whose bundle is under `bundles`, by container id. */
async function conmonsUnder(bundles: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const name of await entries("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (!(await isConmon(pid))) continue;
    const args = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
    if (args.includes("--exec")) continue;
    const bundle = args[args.indexOf("--bundle") + 1] ?? "";
    const cid = args[args.indexOf("--cid") + 1] ?? "";
    if (path.dirname(bundle) === bundles && CONTAINER_ID.test(cid)) out.set(cid, pid);
  }
  return out;
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
  const report: ContainerRecoveryReport = { running: 0, exitedWhileDown: 0, rolledBack: 0, lost: 0, orphans: 0 };
  const runtimes = new Map<string, OciRuntime>();
  const runtimeFor = (handler: string) => {
    const name = handler || config.runtime.default_handler;
    let rt = runtimes.get(name);
    if (!rt) {
      rt = new OciRuntime(config.runtime.handlers[name]?.path ?? "runc", handlerRoot(config, name), config.cgroup_driver === "systemd", parseDuration(config.runtime.call_timeout));
      runtimes.set(name, rt);
    }
    return rt;
  };

  for (const r of o.containers.recoveryRecords()) {
    const rlog = { id: r.id, name: r.name, kind: r.kind };
    try {
      if (r.phase === "exited") continue;
      if (r.phase === "created" && r.pid === 0) {
        // CreateContainer never finished: kubelet got no id. Roll it back, conmon and runc container included.
        log.warn(rlog, "CreateContainer was interrupted (berthd crashed); rolling the container back");
        const conmonPid = await readPid(path.join(r.bundle, "conmon.pid"));
        if (conmonPid && (await isConmon(conmonPid))) r.conmonPid = conmonPid;
        // In memory only: removal deletes the record; a failed removal leaves it to the next start.
        Object.assign(r, { phase: "exited", exitCode: 255, reason: "Error", message: "rolled back after a crash during CreateContainer" });
        await o.containers.remove(r.id);
        report.rolledBack++;
        continue;
      }
      if (await exists(r.exitFile)) {
        report.exitedWhileDown++;
        log.info(rlog, "container exited while berthd was down; its exit code is in conmon's exit file");
        continue;
      }
      const state = await runtimeFor(r.handler).state(r.id);
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
      if (r.conmonPid > 0 && !(await isConmon(r.conmonPid))) log.warn(rlog, "container runs without its conmon: it is killed and reported exited (MonitorDied)");
      if (state.status === "running") report.running++;
    } catch (err) {
      log.error({ ...rlog, err: causeChain(err) }, "cannot recover container; left as it is");
    }
  }

  // Orphans: berth's container resources that no record owns.
  const known = new Set(o.containers.recoveryRecords().map((r) => r.id));
  const bundles = path.join(config.state, "containers");
  const exits = path.join(config.state, "exits");
  const sockets = path.join(config.state, "sock");
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
  for (const handler of Object.keys(config.runtime.handlers)) {
    for (const name of await entries(handlerRoot(config, handler))) {
      if (CONTAINER_ID.test(name) && !known.has(name)) note(name, `runc state (${handler})`);
    }
  }
  const conmons = await conmonsUnder(bundles);
  for (const id of conmons.keys()) if (!known.has(id)) note(id, "conmon process");
  for (const key of o.snapshots.keys()) {
    if (known.has(key)) continue;
    if (CONTAINER_ID.test(key)) note(key, "rootfs snapshot");
    else log.warn({ snapshot: key }, "snapshot of no container and not named like one; left alone");
  }

  for (const [id, what] of orphans) {
    try {
      const bundle = path.join(bundles, id);
      const spec = JSON.parse(await readFile(path.join(bundle, "config.json"), "utf8").catch(() => "{}")) as { linux?: { cgroupsPath?: string } };
      for (const handler of Object.keys(config.runtime.handlers)) {
        if (what.has(`runc state (${handler})`)) await runtimeFor(handler).delete(id, true);
      }
      const conmonPid = conmons.get(id) ?? (await readPid(path.join(bundle, "conmon.pid")));
      if (conmonPid && (await isConmon(conmonPid))) {
        // With its container deleted conmon exits by itself; give it a moment to flush, then make sure.
        for (let i = 0; i < 25 && (await isConmon(conmonPid)); i++) await new Promise((r) => setTimeout(r, 20));
        if (await isConmon(conmonPid)) killQuiet(conmonPid);
      }
      if (spec.linux?.cgroupsPath) await o.cgroups.remove(spec.linux.cgroupsPath).catch((err) => log.warn({ id, err: String(err) }, "cannot remove an orphaned container cgroup"));
      if (what.has("rootfs snapshot")) await o.snapshots.remove(id);
      await rm(bundle, { recursive: true, force: true });
      await rm(path.join(exits, id), { force: true });
      await rm(path.join(sockets, id), { force: true });
      report.orphans++;
      log.warn({ id, found: [...what] }, "removed the resources of a container berth has no record of");
    } catch (err) {
      log.error({ id, err: causeChain(err) }, "cannot clean up an orphaned container; left for the next start");
    }
  }
  log.info({ ...report }, "containers recovered");
  return report;
}
