// What a runtime can leave on the host: mounts, network namespaces, conmon processes,
// veth ports. Tests take a snapshot before and compare after.
import { readdir, readFile, rmdir } from "node:fs/promises";
import path from "node:path";

export interface HostSnapshot {
  mounts: string[];
  netns: string[];
  conmons: string[];
  links: string[];
}

async function conmonPids(): Promise<string[]> {
  const out: string[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const comm = await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "");
    if (comm.trim() === "conmon") {
      const cmd = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0").join(" ");
      out.push(`${pid} ${cmd.slice(0, 200)}`);
    }
  }
  return out;
}

/** Mounts whose path names berth, netns files under /run/netns, conmon processes, veth links. */
export async function hostLeaks(): Promise<HostSnapshot> {
  const mounts = (await readFile("/proc/self/mounts", "utf8")).split("\n").filter((l) => /berth/.test(l)).map((l) => l.split(" ")[1]!);
  const netns = await readdir("/run/netns").catch(() => [] as string[]);
  const links = (await readdir("/sys/class/net").catch(() => [] as string[])).filter((n) => n.startsWith("veth"));
  return { mounts, netns, conmons: await conmonPids(), links };
}

/** What `after` has that `before` had not, as readable lines. */
export function leakDiff(before: HostSnapshot, after: HostSnapshot): string[] {
  const out: string[] = [];
  for (const k of ["mounts", "netns", "conmons", "links"] as const) {
    const had = new Set(before[k]);
    for (const x of after[k]) if (!had.has(x)) out.push(`${k}: ${x}`);
  }
  return out;
}

/** Removes an (empty) test cgroup parent from every hierarchy, cgroup v2's unified one included. */
export async function removeCgroupParent(parent: string): Promise<void> {
  const root = "/sys/fs/cgroup";
  for (const hier of await readdir(root).catch(() => [] as string[])) await rmdir(path.join(root, hier, parent)).catch(() => undefined);
}
