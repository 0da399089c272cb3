// Container cgroups, v1 and v2 behind one interface: the path runc is given, the counters the
// stats RPCs report, OOM-kill counts, and removal of what runc left behind.
import { existsSync, readdirSync } from "node:fs";
import { access, readdir, rmdir, statfs } from "node:fs/promises";
import path from "node:path";
import { isErrno } from "../errors.js";
import { readProcText } from "../proc.js";

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

/** One block device's I/O in a cgroup: bytes and operations by direction. */
export interface BlkioDevice {
  major: number;
  minor: number;
  readBytes: bigint;
  writeBytes: bigint;
  reads: bigint;
  writes: bigint;
}

/** PSI totals of one resource, microseconds: "some" (tasks waiting) and "full" (no task progressing). */
export interface Pressure {
  someUs: bigint;
  fullUs: bigint;
}

/** Every counter and limit the cAdvisor metrics read from a cgroup, each file read once. */
export interface CgroupSample {
  /** Wall clock, ns since the epoch. */
  timestamp: bigint;
  cpuUsageNs: bigint;
  cpuUserNs: bigint;
  cpuSystemNs: bigint;
  cfsPeriods: bigint;
  cfsThrottledPeriods: bigint;
  cfsThrottledNs: bigint;
  /** undefined when the file is absent; quota undefined when unlimited. */
  cpuPeriodUs?: bigint;
  cpuQuotaUs?: bigint;
  cpuShares?: bigint;
  memoryUsage: bigint;
  memoryMaxUsage?: bigint;
  memoryFailcnt?: bigint;
  memoryCache: bigint;
  memoryRss: bigint;
  memoryMappedFile: bigint;
  memorySwap?: bigint;
  memoryKernel?: bigint;
  workingSet: bigint;
  /** Page faults of the cgroup's own tasks and of its whole subtree. */
  pgfault: bigint;
  pgmajfault: bigint;
  pgfaultHierarchy: bigint;
  pgmajfaultHierarchy: bigint;
  memoryLimit?: bigint;
  memoryReservation?: bigint;
  memorySwapLimit?: bigint;
  oomKills: number;
  blkio: BlkioDevice[];
  /** Per huge page size ("2MB"), when the hugetlb controller is there. */
  hugetlb: Array<{ pageSize: string; usage: bigint; maxUsage?: bigint }>;
  pids: number[];
  threads: number;
  /** 0 when unlimited (cAdvisor's convention). */
  threadsMax?: bigint;
  /** cgroup v2 only (PSI files). */
  pressure?: { cpu?: Pressure; memory?: Pressure; io?: Pressure };
}

/** What a stats reading leaves out: kubelet's stats need neither for a container. */
export interface StatsWanted {
  /** cgroup.procs (the process count); default true. */
  pids?: boolean;
  /** The OOM-kill counter; default true. */
  oomKills?: boolean;
  /** The memory limit (memory.limit_in_bytes, memory.max); default true. A caller that knows it unchanged leaves it out. */
  memoryLimit?: boolean;
}

export interface Cgroups {
  readonly version: 1 | 2;
  readonly driver: CgroupDriverName;
  /** The `linux.cgroupsPath` runc gets for a container (or an infra container) under a pod's parent. */
  containerPath(parent: string, id: string): string;
  /** Counters of the cgroup named by a runc cgroupsPath (or a pod's parent); undefined when it is gone. Left-out counters read 0. */
  stats(cgroupsPath: string, want?: StatsWanted): CgroupStats | undefined;
  /** What ListPodSandboxMetrics reports of a container's cgroup; undefined when it is gone. */
  sample(cgroupsPath: string): CgroupSample | undefined;
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

/** The berth container cgroups directly under a pod parent, in any hierarchy (restore's orphan sweep). */
export async function containerCgroupsUnder(driver: CgroupDriverName, parent: string): Promise<Array<{ id: string; cgroupsPath: string }>> {
  const rel = cgroupDir(driver, parent);
  const name = driver === "systemd" ? /^berth-([0-9a-f]{64})\.scope$/ : /^berth-([0-9a-f]{64})$/;
  const hierarchies = [ROOT, ...(await readdir(ROOT).catch(() => [] as string[])).map((h) => path.join(ROOT, h))];
  const found = new Map<string, string>();
  for (const h of hierarchies) {
    for (const entry of await readdir(path.join(h, rel)).catch(() => [] as string[])) {
      const id = name.exec(entry)?.[1];
      if (id) found.set(id, containerCgroupsPath(driver, parent, id));
    }
  }
  return [...found].map(([id, cgroupsPath]) => ({ id, cgroupsPath }));
}


/** The whole number in text[start, end), digits only; undefined for anything else (an empty field, "max", "-1"). */
export function wholeIn(text: string, start: number, end: number): bigint | undefined {
  if (end <= start) return undefined;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return undefined;
  }
  return BigInt(text.slice(start, end));
}

/** A one-number file ("123\n"): its number; undefined when absent or not a whole number ("max"). */
export function wholeOf(text: string | undefined): bigint | undefined {
  if (text === undefined) return undefined;
  let start = 0;
  let end = text.length;
  while (start < end && text.charCodeAt(start) <= 32) start++;
  while (end > start && text.charCodeAt(end - 1) <= 32) end--;
  return wholeIn(text, start, end);
}

/**
 * The value of `key` in a flat-keyed file, one "key value" a line (memory.stat, cpu.stat,
 * memory.events, cpuacct.stat, memory.oom_control): found with indexOf at a line start, so a
 * memory.stat is neither split nor put in a map for the four numbers a stats call wants of it.
 */
export function keyedValue(text: string | undefined, key: string): bigint | undefined {
  if (text === undefined) return undefined;
  for (let i = text.indexOf(key); i >= 0; i = text.indexOf(key, i + 1)) {
    const after = i + key.length;
    if ((i !== 0 && text.charCodeAt(i - 1) !== 10) || text.charCodeAt(after) !== 32) continue; // inside another key
    let end = text.indexOf("\n", after);
    if (end < 0) end = text.length;
    return wholeIn(text, after + 1, end);
  }
  return undefined;
}

/** Non-empty lines (cgroup.procs: one pid a line), counted without splitting. */
export function countLines(text: string | undefined): number {
  if (text === undefined) return 0;
  let n = 0;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    if (end > start) n++;
    start = end + 1;
  }
  return n;
}

/** cgroup.procs: the pids, one a line. */
function pidsOf(text: string | undefined): number[] {
  const out: number[] = [];
  if (text === undefined) return out;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    if (end > start) out.push(Number(text.slice(start, end)));
    start = end + 1;
  }
  return out;
}

/** blkio.throttle.io_service_bytes / io_serviced lines: "8:0 Read 4096". */
export function parseBlkio(bytes: string | undefined, ios: string | undefined): BlkioDevice[] {
  const devs = new Map<string, BlkioDevice>();
  const fill = (text: string | undefined, field: "Bytes" | "Ops") => {
    for (const line of (text ?? "").split("\n")) {
      const [dev, op, v] = line.split(" ");
      if (!dev || !v || !dev.includes(":") || (op !== "Read" && op !== "Write")) continue;
      let d = devs.get(dev);
      if (!d) {
        const [maj, min] = dev.split(":");
        d = { major: Number(maj), minor: Number(min), readBytes: 0n, writeBytes: 0n, reads: 0n, writes: 0n };
        devs.set(dev, d);
      }
      const n = BigInt(v);
      if (field === "Bytes") op === "Read" ? (d.readBytes = n) : (d.writeBytes = n);
      else op === "Read" ? (d.reads = n) : (d.writes = n);
    }
  };
  fill(bytes, "Bytes");
  fill(ios, "Ops");
  return [...devs.values()];
}

/** io.stat lines: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...". */
export function parseIoStat(text: string | undefined): BlkioDevice[] {
  const out: BlkioDevice[] = [];
  for (const line of (text ?? "").split("\n")) {
    const [dev, ...kv] = line.trim().split(" ");
    if (!dev || !dev.includes(":")) continue;
    const f = new Map(kv.map((p) => p.split("=") as [string, string]));
    const [maj, min] = dev.split(":");
    const g = (k: string) => (f.get(k) && /^\d+$/.test(f.get(k)!) ? BigInt(f.get(k)!) : 0n);
    out.push({ major: Number(maj), minor: Number(min), readBytes: g("rbytes"), writeBytes: g("wbytes"), reads: g("rios"), writes: g("wios") });
  }
  return out;
}

/** A PSI file: "some avg10=0.00 avg60=0.00 avg300=0.00 total=123". */
export function parsePressure(text: string | undefined): Pressure | undefined {
  if (text === undefined) return undefined;
  const total = (kind: string): bigint => {
    let line = 0;
    if (!text.startsWith(`${kind} `)) {
      const nl = text.indexOf(`\n${kind} `);
      if (nl < 0) return 0n;
      line = nl + 1;
    }
    let end = text.indexOf("\n", line);
    if (end < 0) end = text.length;
    const at = text.indexOf("total=", line);
    return at >= 0 && at < end ? (wholeIn(text, at + 6, end) ?? 0n) : 0n;
  };
  return { someUs: total("some"), fullUs: total("full") };
}

/** Huge page sizes the kernel offers, as the hugetlb controller names its files ("2MB", "1GB"); read once. */
let hugePageSizes: string[] | undefined;
function pageSizes(): string[] {
  if (hugePageSizes === undefined) {
    let names: string[] = [];
    try {
      names = readdirSync("/sys/kernel/mm/hugepages");
    } catch {
      // No huge pages: no hugetlb series.
    }
    hugePageSizes = names.map((n) => Number(/^hugepages-(\d+)kB$/.exec(n)?.[1] ?? 0)).filter((kb) => kb > 0)
      .map((kb) => (kb >= 1 << 20 ? `${kb >> 20}GB` : kb >= 1024 ? `${kb >> 10}MB` : `${kb}KB`));
  }
  return hugePageSizes;
}

/** The hugetlb controller's files of a cgroup dir, per page size (absent controller: none). */
function hugetlbOf(dir: string | undefined, max: "max_usage_in_bytes" | undefined, usage: string): CgroupSample["hugetlb"] {
  const out: CgroupSample["hugetlb"] = [];
  if (dir === undefined) return out;
  for (const pageSize of pageSizes()) {
    const v = wholeOf(readProcText(`${dir}/hugetlb.${pageSize}.${usage}`));
    if (v !== undefined) out.push({ pageSize, usage: v, maxUsage: max ? wholeOf(readProcText(`${dir}/hugetlb.${pageSize}.${max}`)) : undefined });
  }
  return out;
}

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** The directory a cgroupsPath names, relative to a hierarchy root, remembered: the stats calls ask for the same few hundred every poll. */
class CgroupDirs {
  private readonly dirs = new Map<string, string>();
  constructor(private readonly driver: CgroupDriverName) {}
  of(cgroupsPath: string): string {
    let d = this.dirs.get(cgroupsPath);
    if (d === undefined) {
      // Removed containers' paths are dropped wholesale now and then rather than tracked.
      if (this.dirs.size >= 4096) this.dirs.clear();
      d = cgroupDir(this.driver, cgroupsPath);
      this.dirs.set(cgroupsPath, d);
    }
    return d;
  }
}

const UNLIMITED_V1 = 1n << 62n;

// The stat readers below read each file once, synchronously (see readProcText: cgroupfs, like
// procfs, answers from kernel memory), and stop after the first two when the cgroup is gone.
// The stats RPCs yield between batches of containers so a large node does not stall the loop.

class CgroupsV1 implements Cgroups {
  readonly version = 1 as const;
  private readonly rel: CgroupDirs;
  /** The hugetlb controller is not mounted on every v1 host (looked at once, when first needed). */
  private hugetlbMounted: boolean | undefined;
  constructor(readonly driver: CgroupDriverName) {
    this.rel = new CgroupDirs(driver);
  }

  containerPath(parent: string, id: string): string {
    return containerCgroupsPath(this.driver, parent, id);
  }

  private dir(controller: string, cgroupsPath: string): string {
    return `${ROOT}/${controller}${this.rel.of(cgroupsPath)}`;
  }

  stats(cgroupsPath: string, want: StatsWanted = {}): CgroupStats | undefined {
    const mem = this.dir("memory", cgroupsPath);
    const cpu = wholeOf(readProcText(`${this.dir("cpuacct", cgroupsPath)}/cpuacct.usage`));
    const usage = wholeOf(readProcText(`${mem}/memory.usage_in_bytes`));
    if (usage === undefined && cpu === undefined) return undefined;
    const stat = readProcText(`${mem}/memory.stat`);
    const limit = want.memoryLimit === false ? undefined : wholeOf(readProcText(`${mem}/memory.limit_in_bytes`));
    const oom = want.oomKills === false ? undefined : readProcText(`${mem}/memory.oom_control`);
    const procs = want.pids === false ? undefined : readProcText(`${this.dir("pids", cgroupsPath)}/cgroup.procs`);
    const inactive = keyedValue(stat, "total_inactive_file") ?? 0n;
    const memUsage = usage ?? 0n;
    return {
      timestamp: nowNs(),
      cpuUsageNs: cpu ?? 0n,
      memoryUsageBytes: memUsage,
      workingSetBytes: memUsage > inactive ? memUsage - inactive : 0n,
      rssBytes: keyedValue(stat, "total_rss") ?? 0n,
      pageFaults: keyedValue(stat, "total_pgfault") ?? 0n,
      majorPageFaults: keyedValue(stat, "total_pgmajfault") ?? 0n,
      memoryLimitBytes: limit !== undefined && limit < UNLIMITED_V1 ? limit : undefined,
      oomKills: Number(keyedValue(oom, "oom_kill") ?? 0n),
      pids: countLines(procs),
    };
  }

  sample(cgroupsPath: string): CgroupSample | undefined {
    const mem = this.dir("memory", cgroupsPath);
    const acct = this.dir("cpuacct", cgroupsPath);
    const usage = wholeOf(readProcText(`${mem}/memory.usage_in_bytes`));
    const acctUsage = wholeOf(readProcText(`${acct}/cpuacct.usage`));
    if (usage === undefined && acctUsage === undefined) return undefined;
    const cpu = this.dir("cpu", cgroupsPath);
    const blk = this.dir("blkio", cgroupsPath);
    const pids = this.dir("pids", cgroupsPath);
    const stat = readProcText(`${mem}/memory.stat`);
    const acctStat = readProcText(`${acct}/cpuacct.stat`);
    const cpuStat = readProcText(`${cpu}/cpu.stat`);
    const quota = readProcText(`${cpu}/cpu.cfs_quota_us`)?.trim();
    const pidList = pidsOf(readProcText(`${pids}/cgroup.procs`));
    const threadsMax = readProcText(`${pids}/pids.max`)?.trim();
    this.hugetlbMounted ??= existsSync(`${ROOT}/hugetlb`);
    const memUsage = usage ?? 0n;
    const inactive = keyedValue(stat, "total_inactive_file") ?? 0n;
    return {
      timestamp: nowNs(),
      cpuUsageNs: acctUsage ?? 0n,
      // cpuacct.stat counts USER_HZ ticks (100 a second on Linux).
      cpuUserNs: (keyedValue(acctStat, "user") ?? 0n) * 10_000_000n,
      cpuSystemNs: (keyedValue(acctStat, "system") ?? 0n) * 10_000_000n,
      cfsPeriods: keyedValue(cpuStat, "nr_periods") ?? 0n,
      cfsThrottledPeriods: keyedValue(cpuStat, "nr_throttled") ?? 0n,
      cfsThrottledNs: keyedValue(cpuStat, "throttled_time") ?? 0n,
      cpuPeriodUs: wholeOf(readProcText(`${cpu}/cpu.cfs_period_us`)),
      cpuQuotaUs: wholeOf(quota),
      cpuShares: wholeOf(readProcText(`${cpu}/cpu.shares`)),
      memoryUsage: memUsage,
      memoryMaxUsage: wholeOf(readProcText(`${mem}/memory.max_usage_in_bytes`)),
      memoryFailcnt: wholeOf(readProcText(`${mem}/memory.failcnt`)),
      memoryCache: keyedValue(stat, "total_cache") ?? 0n,
      memoryRss: keyedValue(stat, "total_rss") ?? 0n,
      memoryMappedFile: keyedValue(stat, "total_mapped_file") ?? 0n,
      memorySwap: keyedValue(stat, "total_swap"),
      memoryKernel: wholeOf(readProcText(`${mem}/memory.kmem.usage_in_bytes`)),
      workingSet: memUsage > inactive ? memUsage - inactive : 0n,
      pgfault: keyedValue(stat, "pgfault") ?? 0n,
      pgmajfault: keyedValue(stat, "pgmajfault") ?? 0n,
      pgfaultHierarchy: keyedValue(stat, "total_pgfault") ?? 0n,
      pgmajfaultHierarchy: keyedValue(stat, "total_pgmajfault") ?? 0n,
      memoryLimit: wholeOf(readProcText(`${mem}/memory.limit_in_bytes`)),
      memoryReservation: wholeOf(readProcText(`${mem}/memory.soft_limit_in_bytes`)),
      memorySwapLimit: wholeOf(readProcText(`${mem}/memory.memsw.limit_in_bytes`)),
      oomKills: Number(keyedValue(readProcText(`${mem}/memory.oom_control`), "oom_kill") ?? 0n),
      blkio: parseBlkio(readProcText(`${blk}/blkio.throttle.io_service_bytes_recursive`), readProcText(`${blk}/blkio.throttle.io_serviced_recursive`)),
      hugetlb: hugetlbOf(this.hugetlbMounted ? this.dir("hugetlb", cgroupsPath) : undefined, "max_usage_in_bytes", "usage_in_bytes"),
      pids: pidList,
      threads: Number(wholeOf(readProcText(`${pids}/pids.current`)) ?? BigInt(pidList.length)),
      threadsMax: threadsMax === "max" ? 0n : wholeOf(threadsMax),
    };
  }

  async oomKills(cgroupsPath: string): Promise<number> {
    return Number(keyedValue(readProcText(`${this.dir("memory", cgroupsPath)}/memory.oom_control`), "oom_kill") ?? 0n);
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
  private readonly rel: CgroupDirs;
  constructor(readonly driver: CgroupDriverName) {
    this.rel = new CgroupDirs(driver);
  }

  containerPath(parent: string, id: string): string {
    return containerCgroupsPath(this.driver, parent, id);
  }

  private dir(cgroupsPath: string): string {
    return ROOT + this.rel.of(cgroupsPath);
  }

  stats(cgroupsPath: string, want: StatsWanted = {}): CgroupStats | undefined {
    const d = this.dir(cgroupsPath);
    const cpuStat = readProcText(`${d}/cpu.stat`);
    const current = wholeOf(readProcText(`${d}/memory.current`));
    if (cpuStat === undefined && current === undefined) return undefined;
    const stat = readProcText(`${d}/memory.stat`);
    const limit = want.memoryLimit === false ? undefined : wholeOf(readProcText(`${d}/memory.max`));
    const events = want.oomKills === false ? undefined : readProcText(`${d}/memory.events`);
    const procs = want.pids === false ? undefined : readProcText(`${d}/cgroup.procs`);
    const inactive = keyedValue(stat, "inactive_file") ?? 0n;
    const memUsage = current ?? 0n;
    return {
      timestamp: nowNs(),
      cpuUsageNs: (keyedValue(cpuStat, "usage_usec") ?? 0n) * 1000n,
      memoryUsageBytes: memUsage,
      workingSetBytes: memUsage > inactive ? memUsage - inactive : 0n,
      rssBytes: keyedValue(stat, "anon") ?? 0n,
      pageFaults: keyedValue(stat, "pgfault") ?? 0n,
      majorPageFaults: keyedValue(stat, "pgmajfault") ?? 0n,
      memoryLimitBytes: limit,
      oomKills: Number(keyedValue(events, "oom_kill") ?? 0n),
      pids: countLines(procs),
    };
  }

  sample(cgroupsPath: string): CgroupSample | undefined {
    const d = this.dir(cgroupsPath);
    const f = (name: string) => readProcText(`${d}/${name}`);
    const cpuStat = f("cpu.stat");
    const current = wholeOf(f("memory.current"));
    if (cpuStat === undefined && current === undefined) return undefined;
    const stat = f("memory.stat");
    const events = f("memory.events");
    const cpuMax = (f("cpu.max") ?? "").trim();
    const space = cpuMax.indexOf(" ");
    const weight = wholeOf(f("cpu.weight"));
    const pidList = pidsOf(f("cgroup.procs"));
    const threadsMax = f("pids.max")?.trim();
    const memUsage = current ?? 0n;
    const inactive = keyedValue(stat, "inactive_file") ?? 0n;
    return {
      timestamp: nowNs(),
      cpuUsageNs: (keyedValue(cpuStat, "usage_usec") ?? 0n) * 1000n,
      cpuUserNs: (keyedValue(cpuStat, "user_usec") ?? 0n) * 1000n,
      cpuSystemNs: (keyedValue(cpuStat, "system_usec") ?? 0n) * 1000n,
      cfsPeriods: keyedValue(cpuStat, "nr_periods") ?? 0n,
      cfsThrottledPeriods: keyedValue(cpuStat, "nr_throttled") ?? 0n,
      cfsThrottledNs: (keyedValue(cpuStat, "throttled_usec") ?? 0n) * 1000n,
      // cpu.max is "QUOTA PERIOD", QUOTA "max" when unlimited.
      cpuPeriodUs: space > 0 ? wholeIn(cpuMax, space + 1, cpuMax.length) : undefined,
      cpuQuotaUs: wholeIn(cpuMax, 0, space > 0 ? space : cpuMax.length),
      // cpu.weight back to v1 shares, the inverse of runc's conversion.
      cpuShares: weight !== undefined ? 2n + ((weight - 1n) * 262142n) / 9999n : undefined,
      memoryUsage: memUsage,
      memoryMaxUsage: wholeOf(f("memory.peak")),
      memoryFailcnt: keyedValue(events, "max"),
      memoryCache: keyedValue(stat, "file") ?? 0n,
      memoryRss: keyedValue(stat, "anon") ?? 0n,
      memoryMappedFile: keyedValue(stat, "file_mapped") ?? 0n,
      memorySwap: wholeOf(f("memory.swap.current")),
      memoryKernel: keyedValue(stat, "kernel") ?? (keyedValue(stat, "kernel_stack") ?? 0n) + (keyedValue(stat, "slab") ?? 0n) + (keyedValue(stat, "sock") ?? 0n),
      workingSet: memUsage > inactive ? memUsage - inactive : 0n,
      pgfault: keyedValue(stat, "pgfault") ?? 0n,
      pgmajfault: keyedValue(stat, "pgmajfault") ?? 0n,
      pgfaultHierarchy: keyedValue(stat, "pgfault") ?? 0n,
      pgmajfaultHierarchy: keyedValue(stat, "pgmajfault") ?? 0n,
      memoryLimit: wholeOf(f("memory.max")),
      memoryReservation: wholeOf(f("memory.low")),
      memorySwapLimit: wholeOf(f("memory.swap.max")),
      oomKills: Number(keyedValue(events, "oom_kill") ?? 0n),
      blkio: parseIoStat(f("io.stat")),
      hugetlb: hugetlbOf(d, undefined, "current"),
      pids: pidList,
      threads: Number(wholeOf(f("pids.current")) ?? BigInt(pidList.length)),
      threadsMax: threadsMax === "max" ? 0n : wholeOf(threadsMax),
      pressure: { cpu: parsePressure(f("cpu.pressure")), memory: parsePressure(f("memory.pressure")), io: parsePressure(f("io.pressure")) },
    };
  }

  async oomKills(cgroupsPath: string): Promise<number> {
    return Number(keyedValue(readProcText(`${this.dir(cgroupsPath)}/memory.events`), "oom_kill") ?? 0n);
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
    const have = (readProcText(path.join(ROOT, "cgroup.controllers")) ?? "").trim().split(/\s+/);
    return NEEDED_CONTROLLERS[2].filter((c) => !have.includes(c));
  }
  const missing: string[] = [];
  for (const c of NEEDED_CONTROLLERS[1]) {
    if (!(await access(path.join(ROOT, c, "cgroup.procs")).then(() => true, () => false))) missing.push(c);
  }
  return missing;
}
