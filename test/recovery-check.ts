// Invariants the recovery tests check after a crash and restart: every pod berthd lists is
// consistent with the host (a READY pod holds its pins, /dev/shm and address; a NOTREADY
// pod holds none of them), and berth's dirs hold files only for the pods it lists.
import { execa } from "execa";
import { readdir, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { ContainerState, PodSandboxState } from "../src/gen/api.js";
import { readProcStat } from "../src/proc.js";
import type { Berthd } from "./harness/berthd.js";
import { leakDiff, type HostSnapshot } from "./harness/leaks.js";
import { mountsUnder } from "./sandbox-net.js";

export interface PodInfo {
  netNamespacePath: string;
  ipcNamespacePath: string;
  utsNamespacePath: string;
  shmPath: string;
  [k: string]: unknown;
}

async function listRecursive(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { recursive: true })).map(String);
  } catch {
    return [];
  }
}

/** Problems with the pods berthd lists, as readable lines ([] when all is consistent). */
export async function podProblems(d: Berthd): Promise<string[]> {
  const out: string[] = [];
  const mounts = new Set(await mountsUnder(d.state));
  for (const item of (await d.cri.runtime.listPodSandbox({})).items) {
    const r = await d.cri.runtime.podSandboxStatus({ podSandboxId: item.id, verbose: true });
    const s = r.status!;
    const info = JSON.parse(r.info.info!) as PodInfo;
    const pins = [info.netNamespacePath, info.ipcNamespacePath, info.utsNamespacePath].filter(Boolean);
    const name = `${s.metadata!.name} (${item.id.slice(0, 12)})`;
    if (s.state !== item.state) out.push(`${name}: list says ${item.state}, status says ${s.state}`);
    if (s.state === PodSandboxState.SANDBOX_READY) {
      for (const p of pins) if (!mounts.has(p)) out.push(`${name}: READY but ${p} is not pinned`);
      if (!mounts.has(info.shmPath)) out.push(`${name}: READY but /dev/shm ${info.shmPath} is not mounted`);
      if (!/^10\./.test(s.network!.ip)) out.push(`${name}: READY without an IP`);
    } else {
      for (const m of mounts) if (m.includes(item.id)) out.push(`${name}: NOTREADY but ${m} is still mounted`);
      if (s.network!.ip !== "") out.push(`${name}: NOTREADY but reports IP ${s.network!.ip}`);
    }
  }
  return out;
}

/**
 * Files under root and state that belong to no listed pod: sandbox records, pod dirs,
 * namespace dirs and CNI cache entries are allowed only for `ids`.
 */
export async function strayFiles(d: Berthd, ids: string[]): Promise<string[]> {
  const owned = (f: string) => ids.some((id) => f.includes(id));
  const out: string[] = [];
  for (const f of await listRecursive(d.layout.sandboxRecords)) if (f.endsWith(".json") && !f.startsWith("quarantine") && !owned(f)) out.push(`root/sandboxes/${f}`);
  for (const f of await listRecursive(d.layout.cniResults)) if (!owned(f)) out.push(`root/cni/results/${f}`);
  for (const dir of [d.layout.pins, d.layout.pods]) for (const f of await listRecursive(dir)) if (!owned(f)) out.push(`${path.relative(d.dir, dir)}/${f}`);
  for (const m of await mountsUnder(d.state)) if (!owned(m)) out.push(`mount ${m}`);
  return out;
}

/**
 * leakDiff limited to what this test can own: other suites run at the same time on this
 * host (containerd's /run/netns/cni-* among them; berth never uses /run/netns), so mounts,
 * netns and conmon processes count only when they name `dir`; veth ports are checked per
 * bridge by the tests.
 */
export function ownLeaks(before: HostSnapshot, after: HostSnapshot, dir: string): string[] {
  return leakDiff(before, after).filter((l) => !l.startsWith("links:") && l.includes(dir));
}

/** Last-resort cleanup after a failed test: lazily unmounts everything under `dir` (deepest first) and removes it. */
export async function forceRemoveDir(dir: string): Promise<void> {
  for (const m of (await mountsUnder(dir)).sort().reverse()) await execa("umount", ["--lazy", m], { reject: false });
  await rm(dir, { recursive: true, force: true });
}

/** Problems with the containers berthd lists ([] when every one is consistent with the host). */
export async function containerProblems(d: Berthd): Promise<string[]> {
  const out: string[] = [];
  for (const c of (await d.cri.runtime.listContainers({})).containers) {
    const r = await d.cri.runtime.containerStatus({ containerId: c.id, verbose: true });
    const s = r.status!;
    const info = JSON.parse(r.info.info!) as { pid: number; conmonPid: number };
    const name = `${s.metadata!.name} (${c.id.slice(0, 12)})`;
    if (s.state !== c.state) out.push(`${name}: list says ${c.state}, status says ${s.state}`);
    if (s.state === ContainerState.CONTAINER_RUNNING) {
      if ((await readProcStat(info.pid)) === undefined) out.push(`${name}: RUNNING but its process ${info.pid} is gone`);
      if (s.startedAt === 0n) out.push(`${name}: RUNNING without a start time`);
    } else if (s.state === ContainerState.CONTAINER_EXITED) {
      if (s.finishedAt === 0n) out.push(`${name}: EXITED without a finish time`);
      if (s.reason === "") out.push(`${name}: EXITED without a reason`);
    }
  }
  return out;
}

const CGROUP_ROOT = "/sys/fs/cgroup";

/** Cgroup dirs under `parent` (in every hierarchy) whose name holds none of `ids`. */
export async function cgroupLeaks(parent: string, ids: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const hier of await readdir(CGROUP_ROOT).catch(() => [] as string[])) {
    const dir = path.join(CGROUP_ROOT, hier, parent);
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory() && !ids.some((id) => e.name.includes(id))) out.push(path.join(dir, e.name));
    }
  }
  return out;
}

export { removeCgroupParent } from "./harness/leaks.js";
