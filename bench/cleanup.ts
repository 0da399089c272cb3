// Leaves the host as the benchmark found it: pods and containers removed through the CRI, then a
// sweep for anything a runtime left behind (runc containers, monitors, mounts, bridges, iptables
// rules, cgroups) that is provably the benchmark's own: under its temp dir, on its bridges, or
// tagged with its CNI network names.
import { readFile, readdir, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import type { CriClient } from "../src/cri/client.js";
import { NETWORKS } from "./cni.js";
import { procsMentioning } from "./procs.js";
import { CGROUP_ROOT } from "./runtimes.js";

type Log = (msg: string) => void;

// A workload unwinding after Ctrl-C may remove the same pod at the same moment: not a problem.
const gone = (e: unknown) => String(e).includes("NOT_FOUND");

/** Stops and removes every pod and container a runtime still has; UNIMPLEMENTED and errors are logged, not thrown. */
export async function removeEverything(cri: CriClient, label: string, log: Log): Promise<void> {
  try {
    const { items } = await cri.runtime.listPodSandbox({}, { timeoutMs: 30_000 });
    for (const pod of items) {
      await cri.runtime.stopPodSandbox({ podSandboxId: pod.id }, { timeoutMs: 60_000 }).catch((e) => gone(e) || log(`${label}: stop pod ${pod.id}: ${String(e)}`));
      await cri.runtime.removePodSandbox({ podSandboxId: pod.id }, { timeoutMs: 60_000 }).catch((e) => gone(e) || log(`${label}: remove pod ${pod.id}: ${String(e)}`));
    }
  } catch (e) {
    if (!String(e).includes("UNIMPLEMENTED")) log(`${label}: list pods: ${String(e)}`);
  }
  try {
    const { containers } = await cri.runtime.listContainers({}, { timeoutMs: 30_000 });
    for (const c of containers) {
      await cri.runtime.removeContainer({ containerId: c.id }, { timeoutMs: 60_000 }).catch((e) => gone(e) || log(`${label}: remove container ${c.id}: ${String(e)}`));
    }
  } catch (e) {
    if (!String(e).includes("UNIMPLEMENTED")) log(`${label}: list containers: ${String(e)}`);
  }
}

/** Deletes the containers runc still knows under these roots (a runtime that did not finish removing them). */
async function deleteRuncContainers(roots: string[], log: Log): Promise<void> {
  for (const root of roots) {
    const r = await execa("runc", ["--root", root, "list", "-q"], { reject: false });
    if (r.failed) continue; // no such root: nothing was ever created there
    for (const id of r.stdout.split("\n").filter(Boolean)) {
      log(`sweep: runc delete -f ${id} (root ${root})`);
      await execa("runc", ["--root", root, "delete", "-f", id], { reject: false });
    }
  }
}

async function killStragglers(dir: string, log: Log): Promise<void> {
  for (const p of await procsMentioning(dir)) {
    log(`sweep: killing leftover pid ${p.pid} (${p.argv.slice(0, 3).join(" ")})`);
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** Mount points at or under dir, deepest first (from /proc/self/mountinfo, octal escapes decoded). */
export function mountsUnder(mountinfo: string, dir: string): string[] {
  const points = mountinfo
    .split("\n")
    .map((l) => l.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(dir + "/"));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

async function unmountUnder(dir: string, log: Log): Promise<void> {
  for (let pass = 0; pass < 3; pass++) {
    const points = mountsUnder(await readFile("/proc/self/mountinfo", "utf8"), dir);
    if (points.length === 0) return;
    for (const p of points) {
      const r = await execa("umount", ["-l", p], { reject: false });
      if (pass > 0 || r.failed) log(`sweep: umount ${p}${r.failed ? `: ${r.stderr}` : ""}`);
    }
  }
}

async function deleteBridges(log: Log): Promise<void> {
  for (const net of Object.values(NETWORKS)) {
    const r = await execa("ip", ["link", "show", net.bridge], { reject: false });
    if (r.failed) continue;
    await execa("ip", ["link", "del", net.bridge], { reject: false }).then((d) => d.failed && log(`sweep: ip link del ${net.bridge}: ${d.stderr}`));
  }
}

/**
 * The iptables rules the bridge plugin's ipMasq left for the benchmark's networks (rules carry
 * the network name in their comment), as `-D` argument lists, and the chains they jump to.
 */
export function benchIptablesRules(save: string, names: string[]): { deletes: string[][]; chains: string[] } {
  const deletes: string[][] = [];
  const chains = new Set<string>();
  for (const line of save.split("\n")) {
    if (!line.startsWith("-A ")) continue;
    if (!names.some((n) => line.includes(`name: \\"${n}\\"`) || line.includes(`name: "${n}"`))) continue;
    const args = splitShellish(line.slice(3));
    deletes.push(["-D", ...args]);
    // The per-attachment chain is both the rule's own chain and the target of its jump.
    if (args[0]?.startsWith("CNI-")) chains.add(args[0]);
    const j = args.indexOf("-j");
    if (j >= 0 && args[j + 1]?.startsWith("CNI-")) chains.add(args[j + 1]!);
  }
  return { deletes, chains: [...chains] };
}

/** Splits an iptables-save rule into argv, honouring double quotes and \" inside them. */
export function splitShellish(s: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  let has = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted && c === "\\" && s[i + 1] === '"') { cur += '"'; i++; continue; }
    if (c === '"') { quoted = !quoted; has = true; continue; }
    if (c === " " && !quoted) {
      if (has || cur) out.push(cur);
      cur = "";
      has = false;
      continue;
    }
    cur += c;
  }
  if (has || cur) out.push(cur);
  return out;
}

async function deleteIptablesRules(log: Log): Promise<void> {
  const names = Object.values(NETWORKS).map((n) => n.name);
  for (const table of ["nat", "filter", "mangle"]) {
    const save = await execa("iptables-save", ["-t", table], { reject: false });
    if (save.failed) continue;
    const { deletes, chains } = benchIptablesRules(save.stdout, names);
    for (const d of deletes) {
      log(`sweep: iptables -t ${table} ${d.join(" ")}`);
      await execa("iptables", ["-w", "-t", table, ...d], { reject: false });
    }
    for (const chain of chains) {
      await execa("iptables", ["-w", "-t", table, "-F", chain], { reject: false });
      await execa("iptables", ["-w", "-t", table, "-X", chain], { reject: false });
    }
  }
}

async function removeCgroupTree(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) await removeCgroupTree(path.join(dir, e.name));
  await rmdir(dir).catch(() => undefined);
}

async function removeCgroups(log: Log): Promise<void> {
  const hierarchies = await readdir("/sys/fs/cgroup").catch(() => [] as string[]);
  const candidates = [path.join("/sys/fs/cgroup", CGROUP_ROOT), ...hierarchies.map((h) => path.join("/sys/fs/cgroup", h, CGROUP_ROOT))];
  for (const c of candidates) {
    await removeCgroupTree(c);
    const left = await readdir(c).then(() => true, () => false);
    if (left) log(`sweep: cgroup ${c} could not be removed (processes left in it?)`);
  }
}

/** The host-level sweep after both daemons stopped; safe to run more than once. */
export async function sweepHost(dir: string, runcRoots: string[], log: Log): Promise<void> {
  await deleteRuncContainers(runcRoots, log);
  await killStragglers(dir, log);
  await unmountUnder(dir, log);
  await deleteBridges(log);
  await deleteIptablesRules(log);
  await removeCgroups(log);
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}
