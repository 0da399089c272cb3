// Container cgroups, v1 and v2 behind one interface: the path runc is given, the counters the
// stats RPCs report, OOM-kill counts, and removal of what runc left behind.
import { access, readdir, readFile, rmdir, statfs } from "node:fs/promises";
import path from "node:path";
import { isErrno } from "../errors.js";

export type CgroupDriverName = "cgroupfs" | "systemd";

export interface CgroupStats {
  /** Wall clock, ns since the epoch. */
  timestamp: bigint;
  cpuUsageNs: bigint;
  memoryUsageBytes: bigint;
  workingSetBytes: bigint;
  rssBytes: bigint;
  pageFaults: bigint;
  majorPageFaults: bigint;
  /** undefined when unlimited. */
  memoryLimitBytes?: bigint;
  oomKills: number;
  pids: number;
}

export interface Cgroups {
  readonly version: 1 | 2;
  readonly driver: CgroupDriverName;
  /** The `linux.cgroupsPath` runc gets for a container (or an infra container) under a pod's parent. */
  containerPath(parent: string, id: string): string;
  /** Counters of the cgroup named by a runc cgroupsPath (or a pod's parent); undefined when it is gone. */
  stats(cgroupsPath: string): Promise<CgroupStats | undefined>;
  /** How many processes the kernel OOM-killed in the cgroup so far (0 when it is gone). */
  oomKills(cgroupsPath: string): Promise<number>;
  /** Removes the (empty) cgroup in every hierarchy; idempotent. */
  remove(cgroupsPath: string): Promise<void>;
}

const ROOT = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC = 0x63677270;

/** "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice", as systemd nests slices. */
export function expandSlice(slice: string): string {
  if (slice === "" || slice === "-.slice") return "/";
  if (!slice.endsWith(".slice") || slice.includes("/")) throw new Error(`"${slice}" is not a systemd slice name`);
  const base = slice.slice(0, -".slice".length);
  let out = "";
  let prefix = "";
  for (const part of base.split("-")) {
    if (part === "") throw new Error(`"${slice}" is not a valid systemd slice name`);
    prefix = prefix === "" ? part : `${prefix}-${part}`;
    out += `/${prefix}.slice`;
  }
  return out;
}

/** The directory (relative to a hierarchy root) that a runc cgroupsPath or pod parent names. */
export function cgroupDir(driver: CgroupDriverName, cgroupsPath: string): string {
  if (driver === "systemd") {
    const parts = cgroupsPath.split(":");
    if (parts.length === 3) return path.posix.join(expandSlice(parts[0]!), `${parts[1]}-${parts[2]}.scope`);
    if (cgroupsPath.endsWith(".slice")) return expandSlice(cgroupsPath);
  }
  return path.posix.join("/", cgroupsPath);
}

export function containerCgroupsPath(driver: CgroupDriverName, parent: string, id: string): string {
  if (driver === "systemd") return `${parent || "system.slice"}:berth:${id}`;
  return path.posix.join(parent || "/berth", `berth-${id}`);
}

function parseKeyed(text: string): Map<string, bigint> {
  const m = new Map<string, bigint>();
  for (const line of text.split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v && /^\d+$/.test(v)) m.set(k, BigInt(v));
  }
  return m;
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT") || isErrno(err, "ENODEV") || isErrno(err, "ENOTDIR")) return undefined;
    throw err;
  }
}

async function readBig(file: string): Promise<bigint | undefined> {
  const t = (await readText(file))?.trim();
  return t !== undefined && /^\d+$/.test(t) ? BigInt(t) : undefined;
}

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

const UNLIMITED_V1 = 1n << 62n;

class CgroupsV1 implements Cgroups {
  readonly version = 1 as const;
  constructor(readonly driver: CgroupDriverName) {}

  containerPath(parent: string, id: string): string {
    return containerCgroupsPath(this.driver, parent, id);
  }

  private dir(controller: string, cgroupsPath: string): string {
    return path.join(ROOT, controller, cgroupDir(this.driver, cgroupsPath));
  }

  async stats(cgroupsPath: string): Promise<CgroupStats | undefined> {
    const mem = this.dir("memory", cgroupsPath);
    const [cpu, usage, stat, limit, oom, procs] = await Promise.all([
      readBig(path.join(this.dir("cpuacct", cgroupsPath), "cpuacct.usage")),
      readBig(path.join(mem, "memory.usage_in_bytes")),
      readText(path.join(mem, "memory.stat")),
      readBig(path.join(mem, "memory.limit_in_bytes")),
      readText(path.join(mem, "memory.oom_control")),
      readText(path.join(this.dir("pids", cgroupsPath), "cgroup.procs")),
    ]);
    if (usage === undefined && cpu === undefined) return undefined;
    const s = parseKeyed(stat ?? "");
    const inactive = s.get("total_inactive_file") ?? 0n;
    const memUsage = usage ?? 0n;
    return {
      timestamp: nowNs(),
      cpuUsageNs: cpu ?? 0n,
      memoryUsageBytes: memUsage,
      workingSetBytes: memUsage > inactive ? memUsage - inactive : 0n,
      rssBytes: s.get("total_rss") ?? 0n,
      pageFaults: s.get("total_pgfault") ?? 0n,
      majorPageFaults: s.get("total_pgmajfault") ?? 0n,
      memoryLimitBytes: limit !== undefined && limit < UNLIMITED_V1 ? limit : undefined,
      oomKills: Number(parseKeyed(oom ?? "").get("oom_kill") ?? 0n),
      pids: (procs ?? "").split("\n").filter((l) => l !== "").length,
    };
  }

  async oomKills(cgroupsPath: string): Promise<number> {
    const t = await readText(path.join(this.dir("memory", cgroupsPath), "memory.oom_control"));
    return Number(parseKeyed(t ?? "").get("oom_kill") ?? 0n);
  }

  async remove(cgroupsPath: string): Promise<void> {
    let controllers: string[];
    try {
      controllers = await readdir(ROOT);
    } catch {
      return;
    }
    const rel = cgroupDir(this.driver, cgroupsPath);
    if (rel === "/") return;
    await Promise.all(controllers.map((c) => rmdirQuiet(path.join(ROOT, c, rel))));
  }
}

class CgroupsV2 implements Cgroups {
  readonly version = 2 as const;
  constructor(readonly driver: CgroupDriverName) {}

  containerPath(parent: string, id: string): string {
    return containerCgroupsPath(this.driver, parent, id);
  }

  private dir(cgroupsPath: string): string {
    return path.join(ROOT, cgroupDir(this.driver, cgroupsPath));
  }

  async stats(cgroupsPath: string): Promise<CgroupStats | undefined> {
    const d = this.dir(cgroupsPath);
    const [cpuStat, current, stat, max, events, procs] = await Promise.all([
      readText(path.join(d, "cpu.stat")),
      readBig(path.join(d, "memory.current")),
      readText(path.join(d, "memory.stat")),
      readText(path.join(d, "memory.max")),
      readText(path.join(d, "memory.events")),
      readText(path.join(d, "cgroup.procs")),
    ]);
    if (cpuStat === undefined && current === undefined) return undefined;
    const cpu = parseKeyed(cpuStat ?? "");
    const s = parseKeyed(stat ?? "");
    const inactive = s.get("inactive_file") ?? 0n;
    const memUsage = current ?? 0n;
    const limit = max?.trim();
    return {
      timestamp: nowNs(),
      cpuUsageNs: (cpu.get("usage_usec") ?? 0n) * 1000n,
      memoryUsageBytes: memUsage,
      workingSetBytes: memUsage > inactive ? memUsage - inactive : 0n,
      rssBytes: s.get("anon") ?? 0n,
      pageFaults: s.get("pgfault") ?? 0n,
      majorPageFaults: s.get("pgmajfault") ?? 0n,
      memoryLimitBytes: limit && /^\d+$/.test(limit) ? BigInt(limit) : undefined,
      oomKills: Number(parseKeyed(events ?? "").get("oom_kill") ?? 0n),
      pids: (procs ?? "").split("\n").filter((l) => l !== "").length,
    };
  }

  async oomKills(cgroupsPath: string): Promise<number> {
    const t = await readText(path.join(this.dir(cgroupsPath), "memory.events"));
    return Number(parseKeyed(t ?? "").get("oom_kill") ?? 0n);
  }

  async remove(cgroupsPath: string): Promise<void> {
    const rel = cgroupDir(this.driver, cgroupsPath);
    if (rel !== "/") await rmdirQuiet(path.join(ROOT, rel));
  }
}

async function rmdirQuiet(dir: string): Promise<void> {
  try {
    await rmdir(dir);
  } catch (err) {
    if (!isErrno(err, "ENOENT") && !isErrno(err, "ENOTDIR")) throw err;
  }
}

/** The unified hierarchy when /sys/fs/cgroup is cgroup2, else v1 (including hybrid hosts). */
export async function detectCgroupVersion(): Promise<1 | 2> {
  try {
    const s = await statfs(ROOT);
    return Number(s.type) === CGROUP2_SUPER_MAGIC ? 2 : 1;
  } catch {
    return 1;
  }
}

export async function openCgroups(driver: CgroupDriverName): Promise<Cgroups> {
  return (await detectCgroupVersion()) === 2 ? new CgroupsV2(driver) : new CgroupsV1(driver);
}

/** The controllers runc needs for berth's containers: their limits and the counters stats reads. */
const NEEDED_CONTROLLERS = { 1: ["cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer"], 2: ["cpu", "memory", "pids"] } as const;

/** Which of those the host's cgroup hierarchy lacks (v1: a mounted hierarchy each; v2: enabled at the root). */
export async function missingControllers(version: 1 | 2): Promise<string[]> {
  if (version === 2) {
    const have = ((await readText(path.join(ROOT, "cgroup.controllers"))) ?? "").trim().split(/\s+/);
    return NEEDED_CONTROLLERS[2].filter((c) => !have.includes(c));
  }
  const missing: string[] = [];
  for (const c of NEEDED_CONTROLLERS[1]) {
    if (!(await access(path.join(ROOT, c, "cgroup.procs")).then(() => true, () => false))) missing.push(c);
  }
  return missing;
}
