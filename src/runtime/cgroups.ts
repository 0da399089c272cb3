// Container cgroups, v1 and v2 behind one interface: the path runc is given, the counters the
// stats RPCs report, OOM-kill counts, and removal of what runc left behind.
import { close, open, read } from "node:fs";
import { access, readdir, readFile, rmdir, statfs } from "node:fs/promises";
import path from "node:path";
import { isErrno } from "../errors.js";
import { readFiles } from "../native/native.js";

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
}

export interface Cgroups {
  readonly version: 1 | 2;
  readonly driver: CgroupDriverName;
  /** The `linux.cgroupsPath` runc gets for a container (or an infra container) under a pod's parent. */
  containerPath(parent: string, id: string): string;
  /** Counters of the cgroup named by a runc cgroupsPath (or a pod's parent); undefined when it is gone. Left-out counters read 0. */
  stats(cgroupsPath: string, want?: StatsWanted): Promise<CgroupStats | undefined>;
  /** What ListPodSandboxMetrics reports of a container's cgroup; undefined when it is gone. */
  sample(cgroupsPath: string): Promise<CgroupSample | undefined>;
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

const SMALL = 8192;

/**
 * A small kernel file (cgroup, /proc) in one open, read and close. fs.promises.readFile also
 * fstats and allocates 64 KiB for a file whose size reads 0, as these do; the stats RPCs read
 * hundreds per call. A file that fills the buffer is read again whole.
 */
export function readSmallFile(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    open(file, "r", (err, fd) => {
      if (err) return reject(err);
      const buf = Buffer.allocUnsafe(SMALL);
      read(fd, buf, 0, SMALL, 0, (readErr, n) => {
        close(fd, () => undefined);
        if (readErr) reject(readErr);
        else if (n === SMALL) readFile(file, "utf8").then(resolve, reject);
        else resolve(buf.toString("utf8", 0, n));
      });
    });
  });
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readSmallFile(file);
  } catch (err) {
    if (isErrno(err, "ENOENT") || isErrno(err, "ENODEV") || isErrno(err, "ENOTDIR")) return undefined;
    throw err;
  }
}

async function readBig(file: string): Promise<bigint | undefined> {
  const t = (await readText(file))?.trim();
  return t !== undefined && /^\d+$/.test(t) ? BigInt(t) : undefined;
}

const SMALL_READ = 64 * 1024;
/** Files per native call: several calls let the pool's threads read in parallel. */
const READ_BATCH = 200;

let pendingReads: Array<{ file: string; resolve: (text: string | undefined) => void }> = [];

function flushReads(): void {
  const batch = pendingReads;
  pendingReads = [];
  for (let i = 0; i < batch.length; i += READ_BATCH) {
    const part = batch.slice(i, i + READ_BATCH);
    readFiles(part.map((p) => p.file), SMALL_READ).then(
      (texts) => part.forEach((p, k) => p.resolve(texts[k] ?? undefined)),
      () => part.forEach((p) => p.resolve(undefined)),
    );
  }
}

/**
 * The text of a small kernel file (cgroup, /proc), or undefined when it is absent or unreadable.
 * Reads asked for in the same tick go to the addon together: a 100-container metrics call
 * reads ~2,500 files, and Node's fs spends three pool hops and a callback on each.
 */
export function readSmall(file: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    if (pendingReads.length === 0) queueMicrotask(flushReads);
    pendingReads.push({ file, resolve });
  });
}

function bigOf(text: string | undefined): bigint | undefined {
  const t = text?.trim();
  return t !== undefined && /^\d+$/.test(t) ? BigInt(t) : undefined;
}

function countLines(text: string | undefined): number[] {
  const out: number[] = [];
  for (const l of (text ?? "").split("\n")) if (l !== "") out.push(Number(l));
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
  const total = (kind: string) => BigInt(new RegExp(`^${kind} .*total=(\\d+)`, "m").exec(text)?.[1] ?? "0");
  return { someUs: total("some"), fullUs: total("full") };
}

/** Huge page sizes the kernel offers, as the hugetlb controller names its files ("2MB", "1GB"). */
let hugePageSizes: Promise<string[]> | undefined;
function pageSizes(): Promise<string[]> {
  return (hugePageSizes ??= readdir("/sys/kernel/mm/hugepages").then(
    (names) => names.map((n) => Number(/^hugepages-(\d+)kB$/.exec(n)?.[1] ?? 0)).filter((kb) => kb > 0)
      .map((kb) => (kb >= 1 << 20 ? `${kb >> 20}GB` : kb >= 1024 ? `${kb >> 10}MB` : `${kb}KB`)),
    () => [],
  ));
}

/** The hugetlb controller's files of a cgroup dir, per page size (absent controller: none). */
async function hugetlbOf(dir: string | undefined, max: "max_usage_in_bytes" | undefined, usage: string): Promise<CgroupSample["hugetlb"]> {
  if (dir === undefined) return [];
  const sizes = await pageSizes();
  return (await Promise.all(sizes.map(async (pageSize) => {
    const [u, m] = await Promise.all([readSmall(path.join(dir, `hugetlb.${pageSize}.${usage}`)), max ? readSmall(path.join(dir, `hugetlb.${pageSize}.${max}`)) : undefined]);
    const v = bigOf(u);
    return v === undefined ? undefined : { pageSize, usage: v, maxUsage: bigOf(m) };
  }))).filter((h): h is NonNullable<typeof h> => h !== undefined);
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

  async stats(cgroupsPath: string, want: StatsWanted = {}): Promise<CgroupStats | undefined> {
    const mem = this.dir("memory", cgroupsPath);
    const [cpu, usage, stat, limit, oom, procs] = await Promise.all([
      readBig(path.join(this.dir("cpuacct", cgroupsPath), "cpuacct.usage")),
      readBig(path.join(mem, "memory.usage_in_bytes")),
      readText(path.join(mem, "memory.stat")),
      readBig(path.join(mem, "memory.limit_in_bytes")),
      want.oomKills === false ? undefined : readText(path.join(mem, "memory.oom_control")),
      want.pids === false ? undefined : readText(path.join(this.dir("pids", cgroupsPath), "cgroup.procs")),
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

  async sample(cgroupsPath: string): Promise<CgroupSample | undefined> {
    const mem = this.dir("memory", cgroupsPath);
    const cpu = this.dir("cpu", cgroupsPath);
    const acct = this.dir("cpuacct", cgroupsPath);
    const blk = this.dir("blkio", cgroupsPath);
    const pids = this.dir("pids", cgroupsPath);
    const f = (dir: string, name: string) => readSmall(path.join(dir, name));
    const [usage, stat, limit, soft, memsw, maxUsage, failcnt, kmem, oom, acctUsage, acctStat, cpuStat, period, quota, shares, blkBytes, blkOps, procs, pidsCurrent, pidsMax, hugetlb] = await Promise.all([
      f(mem, "memory.usage_in_bytes"), f(mem, "memory.stat"), f(mem, "memory.limit_in_bytes"), f(mem, "memory.soft_limit_in_bytes"),
      f(mem, "memory.memsw.limit_in_bytes"), f(mem, "memory.max_usage_in_bytes"), f(mem, "memory.failcnt"), f(mem, "memory.kmem.usage_in_bytes"),
      f(mem, "memory.oom_control"), f(acct, "cpuacct.usage"), f(acct, "cpuacct.stat"), f(cpu, "cpu.stat"), f(cpu, "cpu.cfs_period_us"),
      f(cpu, "cpu.cfs_quota_us"), f(cpu, "cpu.shares"), f(blk, "blkio.throttle.io_service_bytes_recursive"), f(blk, "blkio.throttle.io_serviced_recursive"),
      f(pids, "cgroup.procs"), f(pids, "pids.current"), f(pids, "pids.max"),
      this.hugetlbMounted.then((on) => hugetlbOf(on ? this.dir("hugetlb", cgroupsPath) : undefined, "max_usage_in_bytes", "usage_in_bytes")),
    ]);
    if (usage === undefined && acctUsage === undefined) return undefined;
    const s = parseKeyed(stat ?? "");
    const a = parseKeyed(acctStat ?? "");
    const c = parseKeyed(cpuStat ?? "");
    const memUsage = bigOf(usage) ?? 0n;
    const inactive = s.get("total_inactive_file") ?? 0n;
    const q = quota?.trim();
    const pidList = countLines(procs);
    const threadsMax = pidsMax?.trim();
    return {
      timestamp: nowNs(),
      cpuUsageNs: bigOf(acctUsage) ?? 0n,
      // cpuacct.stat counts USER_HZ ticks (100 a second on Linux).
      cpuUserNs: (a.get("user") ?? 0n) * 10_000_000n,
      cpuSystemNs: (a.get("system") ?? 0n) * 10_000_000n,
      cfsPeriods: c.get("nr_periods") ?? 0n,
      cfsThrottledPeriods: c.get("nr_throttled") ?? 0n,
      cfsThrottledNs: c.get("throttled_time") ?? 0n,
      cpuPeriodUs: bigOf(period),
      cpuQuotaUs: q && /^\d+$/.test(q) ? BigInt(q) : undefined,
      cpuShares: bigOf(shares),
      memoryUsage: memUsage,
      memoryMaxUsage: bigOf(maxUsage),
      memoryFailcnt: bigOf(failcnt),
      memoryCache: s.get("total_cache") ?? 0n,
      memoryRss: s.get("total_rss") ?? 0n,
      memoryMappedFile: s.get("total_mapped_file") ?? 0n,
      memorySwap: s.get("total_swap"),
      memoryKernel: bigOf(kmem),
      workingSet: memUsage > inactive ? memUsage - inactive : 0n,
      pgfault: s.get("pgfault") ?? 0n,
      pgmajfault: s.get("pgmajfault") ?? 0n,
      pgfaultHierarchy: s.get("total_pgfault") ?? 0n,
      pgmajfaultHierarchy: s.get("total_pgmajfault") ?? 0n,
      memoryLimit: bigOf(limit),
      memoryReservation: bigOf(soft),
      memorySwapLimit: bigOf(memsw),
      oomKills: Number(parseKeyed(oom ?? "").get("oom_kill") ?? 0n),
      blkio: parseBlkio(blkBytes, blkOps),
      hugetlb,
      pids: pidList,
      threads: Number(bigOf(pidsCurrent) ?? BigInt(pidList.length)),
      threadsMax: threadsMax === "max" ? 0n : bigOf(threadsMax),
    };
  }

  /** The hugetlb controller is not mounted on every v1 host. */
  private readonly hugetlbMounted = readdir(path.join(ROOT, "hugetlb")).then(() => true, () => false);

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

  async stats(cgroupsPath: string, want: StatsWanted = {}): Promise<CgroupStats | undefined> {
    const d = this.dir(cgroupsPath);
    const [cpuStat, current, stat, max, events, procs] = await Promise.all([
      readText(path.join(d, "cpu.stat")),
      readBig(path.join(d, "memory.current")),
      readText(path.join(d, "memory.stat")),
      readText(path.join(d, "memory.max")),
      want.oomKills === false ? undefined : readText(path.join(d, "memory.events")),
      want.pids === false ? undefined : readText(path.join(d, "cgroup.procs")),
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

  async sample(cgroupsPath: string): Promise<CgroupSample | undefined> {
    const d = this.dir(cgroupsPath);
    const f = (name: string) => readSmall(path.join(d, name));
    const [cpuStat, cpuMax, cpuWeight, current, peak, stat, max, low, swapCurrent, swapMax, events, ioStat, procs, pidsCurrent, pidsMax, cpuP, memP, ioP, hugetlb] = await Promise.all([
      f("cpu.stat"), f("cpu.max"), f("cpu.weight"), f("memory.current"), f("memory.peak"), f("memory.stat"), f("memory.max"), f("memory.low"),
      f("memory.swap.current"), f("memory.swap.max"), f("memory.events"), f("io.stat"), f("cgroup.procs"), f("pids.current"), f("pids.max"),
      f("cpu.pressure"), f("memory.pressure"), f("io.pressure"), hugetlbOf(d, undefined, "current"),
    ]);
    if (cpuStat === undefined && current === undefined) return undefined;
    const c = parseKeyed(cpuStat ?? "");
    const s = parseKeyed(stat ?? "");
    const e = parseKeyed(events ?? "");
    const memUsage = bigOf(current) ?? 0n;
    const inactive = s.get("inactive_file") ?? 0n;
    const [quota, period] = (cpuMax ?? "").trim().split(" ");
    const weight = bigOf(cpuWeight);
    const pidList = countLines(procs);
    const threadsMax = pidsMax?.trim();
    return {
      timestamp: nowNs(),
      cpuUsageNs: (c.get("usage_usec") ?? 0n) * 1000n,
      cpuUserNs: (c.get("user_usec") ?? 0n) * 1000n,
      cpuSystemNs: (c.get("system_usec") ?? 0n) * 1000n,
      cfsPeriods: c.get("nr_periods") ?? 0n,
      cfsThrottledPeriods: c.get("nr_throttled") ?? 0n,
      cfsThrottledNs: (c.get("throttled_usec") ?? 0n) * 1000n,
      cpuPeriodUs: bigOf(period),
      cpuQuotaUs: bigOf(quota),
      // cpu.weight back to v1 shares, the inverse of runc's conversion.
      cpuShares: weight !== undefined ? 2n + ((weight - 1n) * 262142n) / 9999n : undefined,
      memoryUsage: memUsage,
      memoryMaxUsage: bigOf(peak),
      memoryFailcnt: e.get("max"),
      memoryCache: s.get("file") ?? 0n,
      memoryRss: s.get("anon") ?? 0n,
      memoryMappedFile: s.get("file_mapped") ?? 0n,
      memorySwap: bigOf(swapCurrent),
      memoryKernel: s.get("kernel") ?? (s.get("kernel_stack") ?? 0n) + (s.get("slab") ?? 0n) + (s.get("sock") ?? 0n),
      workingSet: memUsage > inactive ? memUsage - inactive : 0n,
      pgfault: s.get("pgfault") ?? 0n,
      pgmajfault: s.get("pgmajfault") ?? 0n,
      pgfaultHierarchy: s.get("pgfault") ?? 0n,
      pgmajfaultHierarchy: s.get("pgmajfault") ?? 0n,
      memoryLimit: bigOf(max),
      memoryReservation: bigOf(low),
      memorySwapLimit: bigOf(swapMax),
      oomKills: Number(e.get("oom_kill") ?? 0n),
      blkio: parseIoStat(ioStat),
      hugetlb,
      pids: pidList,
      threads: Number(bigOf(pidsCurrent) ?? BigInt(pidList.length)),
      threadsMax: threadsMax === "max" ? 0n : bigOf(threadsMax),
      pressure: { cpu: parsePressure(cpuP), memory: parsePressure(memP), io: parsePressure(ioP) },
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
