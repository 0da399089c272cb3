// Host-side checks around a critest run: free ports, waiting, and what a run left behind.
import { execa } from "execa";
import { readdir, readFile, rmdir } from "node:fs/promises";
import { createServer } from "node:net";
import path from "node:path";

// One polling helper for every harness.
export { waitFor } from "../harness/berthd.js";

/** Resolves true when nothing listens on 127.0.0.1:port (and all addresses) now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ port, host: "0.0.0.0", exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen({ port: 0, host: "127.0.0.1" }, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Processes whose command line mentions `needle` (a run's private dir), as "pid cmdline". */
export async function processesMentioning(needle: string): Promise<Array<{ pid: number; cmdline: string }>> {
  const found: Array<{ pid: number; cmdline: string }> = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(needle)) found.push({ pid: Number(entry), cmdline: cmdline.replaceAll("\0", " ").trim() });
  }
  return found;
}

/** Mount points at or under `dir`, deepest first (the order to unmount them in). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  return parseMountPoints(info).filter((m) => m === dir || m.startsWith(dir + "/")).sort((a, b) => b.length - a.length);
}

/** Field 5 of each /proc/self/mountinfo line, with the kernel's octal escapes undone. */
export function parseMountPoints(mountinfo: string): string[] {
  return mountinfo.split("\n").filter(Boolean).map((line) => line.split(" ")[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

// Chains the CNI plugins share between networks: never flushed here, only our rules in them are deleted.
const SHARED_CHAINS = new Set(["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ", "CNI-FORWARD", "CNI-ADMIN"]);

/**
 * From one table's iptables-save output, the rules of the CNI network `name` (the bridge and portmap plugins name
 * it in each rule's comment) and an iptables-restore --noflush script that removes them: our rules in shared chains
 * are deleted one by one; the per-container chains they jump to or live in (CNI-xxx, CNI-DN-xxx) are flushed and
 * deleted, with every jump to them.
 */
export function planIptablesCleanup(save: string, name: string): { rules: string[]; script: string[] } {
  const tag = `\\"${name}\\"`; // as iptables-save prints the comment: name: \"<name>\"
  const ruleLines = save.split("\n").filter((l) => l.startsWith("-A "));
  const chainOf = (l: string) => l.split(" ")[1]!;
  const jumpOf = (l: string) => l.match(/ -j (\S+)/)?.[1] ?? "";
  const own = (c: string) => c.startsWith("CNI-") && !SHARED_CHAINS.has(c);
  const tagged = ruleLines.filter((l) => l.includes(tag));
  const drop = new Set([...tagged.map(chainOf), ...tagged.map(jumpOf)].filter(own));
  const rules = ruleLines.filter((l) => l.includes(tag) || drop.has(chainOf(l)));
  const deletes = ruleLines.filter((l) => !drop.has(chainOf(l)) && (l.includes(tag) || drop.has(jumpOf(l)))).map((l) => `-D ${l.slice(3)}`);
  const script = [...deletes, ...[...drop].flatMap((c) => [`-F ${c}`, `-X ${c}`])];
  return { rules, script };
}

/** Removes the iptables rules of CNI network `name` from the nat and filter tables; returns them as found. */
export async function removeIptablesRules(name: string): Promise<string[]> {
  const found: string[] = [];
  for (const table of ["nat", "filter"]) {
    const save = await execa("iptables-save", ["-t", table], { reject: false });
    const plan = planIptablesCleanup(save.stdout, name);
    if (!plan.script.length) continue;
    found.push(...plan.rules.map((r) => `${table}: ${r}`));
    const res = await execa("iptables-restore", ["--noflush"], { input: [`*${table}`, ...plan.script, "COMMIT", ""].join("\n"), reject: false });
    if (res.exitCode !== 0) found.push(`${table}: iptables-restore could not remove them: ${res.stderr.trim()}`);
  }
  return found;
}

/** Interfaces enslaved to `bridge` (the host ends of pod veths). */
export async function bridgePorts(bridge: string): Promise<string[]> {
  const res = await execa("ip", ["-o", "link", "show", "master", bridge], { reject: false });
  if (res.exitCode !== 0) return [];
  return res.stdout.split("\n").filter(Boolean).map((l) => l.split(":")[1]!.trim().split("@")[0]!);
}

export async function deleteLink(name: string): Promise<boolean> {
  return (await execa("ip", ["link", "delete", name], { reject: false })).exitCode === 0;
}

export async function linkExists(name: string): Promise<boolean> {
  return (await execa("ip", ["link", "show", name], { reject: false })).exitCode === 0;
}

/**
 * critest v1.29 puts pods under the cgroup parent "/test.slice" when the runtime reports no cgroupfs driver.
 * Returns the non-empty ones (leaks) and removes the empty ones.
 */
export async function sweepCgroupParent(name = "test.slice"): Promise<string[]> {
  const leaks: string[] = [];
  const roots = await readdir("/sys/fs/cgroup").catch(() => [] as string[]);
  for (const ctl of [".", ...roots]) {
    const dir = path.join("/sys/fs/cgroup", ctl, name);
    const children = await readdir(dir, { withFileTypes: true }).catch(() => undefined);
    if (!children) continue;
    const sub = children.filter((c) => c.isDirectory());
    if (sub.length) leaks.push(...sub.map((c) => path.join(dir, c.name)));
    else await rmdir(dir).catch(() => {});
  }
  return leaks;
}
