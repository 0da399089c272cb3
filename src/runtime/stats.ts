// Container and pod stats: cgroup counters (v1 or v2, each container's files read once per call,
// synchronously, a batch of containers between yields), the writable layer's usage from the
// snapshotter (a walk of the upper dir, kept for a bounded age), and
// the pod's network interfaces read once per pod from /proc/<pid>/net/dev of a process inside the
// pod's network namespace.
import { setImmediate as yieldToLoop } from "node:timers/promises";
import type {
  ContainerAttributes,
  ContainerStats,
  ContainerStatsFilter,
  CpuUsage,
  MemoryUsage,
  NetworkInterfaceUsage,
  NetworkUsage,
  PodSandboxAttributes,
  PodSandboxStats,
  PodSandboxStatsFilter,
} from "../gen/api.js";
import { NotFound } from "../errors.js";
import { Semaphore } from "../image/layers.js";
import type { Snapshots } from "../image/types.js";
import { readProcText } from "../proc.js";
import { wholeIn, type CgroupStats, type Cgroups } from "./cgroups.js";
import type { ContainerRecord } from "./container-record.js";
import type { SandboxLookup, SandboxRef } from "./types.js";

/** What stats needs of the container layer. */
export interface ContainerSource {
  record(id: string): Promise<ContainerRecord>;
  allContainers(): Promise<readonly ContainerRecord[]>;
  containersOf(sandboxId: string): readonly ContainerRecord[];
  infraOf(sandboxId: string): ContainerRecord | undefined;
}

/** Every pod id (the sandbox layer lists them). */
export type SandboxIds = () => string[];

const u64 = (v: bigint | number) => ({ value: BigInt(v) });

export interface StatsOptions {
  /**
   * How long a writable layer's measured usage is reused. A container writes its upper dir
   * directly, so the usage cannot be tracked, only walked; kubelet's own cAdvisor path re-walks
   * container filesystems once a minute, so half that keeps kubelet's eviction view as fresh.
   */
  layerUsageMaxAgeMs: number;
  /** Layer walks at once: they go through the libuv pool, which has 4 threads; more only queues. */
  parallel: number;
}

export const DEFAULT_STATS_OPTIONS: StatsOptions = { layerUsageMaxAgeMs: 30_000, parallel: 8 };

/**
 * Containers whose cgroups are read between two turns of the event loop. A container's four to
 * six files cost ~10 us each to read; ten containers keep a turn near half a millisecond at 110
 * pods (an extra turn costs a few microseconds).
 */
export const CONTAINERS_PER_TURN = 10;

export type LayerUsageValue = { bytes: number; inodes: number } | undefined;

interface LayerUsageEntry {
  /** When the walk that measured `value` started (Date.now()); 0 before the first ends. */
  at: number;
  value: LayerUsageValue;
  /** The walk under way, if any. */
  walking?: Promise<LayerUsageValue>;
}

/**
 * Writable-layer usage per snapshot key, walked at most once per `maxAgeMs`. A value past that age
 * is still answered while its re-walk runs (so no poll waits on a walk once the first one is
 * done) up to twice that age; past that, and before the first walk ends, callers wait for the walk.
 * So the usage kubelet sees is at most 2 x maxAgeMs old (60 s by default, cAdvisor's own period).
 */
export class LayerUsageCache {
  private readonly entries = new Map<string, LayerUsageEntry>();
  private readonly bound: Semaphore;

  constructor(private readonly snapshots: Snapshots, readonly maxAgeMs: number, parallel: number) {
    this.bound = new Semaphore(parallel);
  }

  /** The usage now when one fresh enough is known, else a promise of the walk it waits on. */
  get(key: string): LayerUsageValue | Promise<LayerUsageValue> {
    const now = Date.now();
    let e = this.entries.get(key);
    if (e === undefined) {
      e = { at: 0, value: undefined };
      this.entries.set(key, e);
    }
    const age = now - e.at;
    if (age <= this.maxAgeMs) return e.value;
    const walking = e.walking ?? this.walk(key, e, now);
    return age <= 2 * this.maxAgeMs ? e.value : walking;
  }

  private walk(key: string, e: LayerUsageEntry, now: number): Promise<LayerUsageValue> {
    const walking = this.bound.run(() => this.snapshots.usage(key)).catch(() => undefined).then((value) => {
      e.at = now;
      e.value = value;
      e.walking = undefined;
      return value;
    });
    e.walking = walking;
    return walking;
  }

  /** Forgets usage past its twice-the-age bound that no walk is renewing (removed containers'). */
  prune(): void {
    const now = Date.now();
    for (const [k, e] of this.entries) if (e.walking === undefined && e.at !== 0 && now - e.at > 2 * this.maxAgeMs) this.entries.delete(k);
  }
}

export interface InterfaceCounters {
  name: string;
  rxBytes: bigint;
  rxErrors: bigint;
  txBytes: bigint;
  txErrors: bigint;
  rxPackets: bigint;
  rxDropped: bigint;
  txPackets: bigint;
  txDropped: bigint;
}

/**
 * Parses /proc/<pid>/net/dev: two header lines, then "name: " and 16 counters an interface
 * (receive bytes, packets, errs, drop, fifo, frame, compressed, multicast; transmit bytes,
 * packets, errs, drop, fifo, colls, carrier, compressed). A field that is not a number reads 0;
 * a line with fewer than 16 is skipped.
 */
export function parseNetDev(text: string): InterfaceCounters[] {
  const out: InterfaceCounters[] = [];
  const f: bigint[] = new Array<bigint>(16);
  let start = text.indexOf("\n", text.indexOf("\n") + 1) + 1;
  while (start > 0 && start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    const colon = text.indexOf(":", start);
    if (colon >= 0 && colon < end) {
      let n = 0;
      let i = colon + 1;
      while (n < 16) {
        while (i < end && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
        if (i >= end) break;
        let j = i;
        while (j < end && text.charCodeAt(j) !== 32 && text.charCodeAt(j) !== 9) j++;
        f[n++] = wholeIn(text, i, j) ?? 0n;
        i = j;
      }
      if (n === 16) {
        out.push({ name: text.slice(start, colon).trim(), rxBytes: f[0]!, rxErrors: f[2]!, txBytes: f[8]!, txErrors: f[10]!, rxPackets: f[1]!, rxDropped: f[3]!, txPackets: f[9]!, txDropped: f[11]! });
      }
    }
    start = end + 1;
  }
  return out;
}

/** The text of the pod's net/dev, from the first of `pids` (infra first, then the members) still running; read once per pod. */
export function podNetDev(infra: ContainerRecord | undefined, members: readonly ContainerRecord[]): string | undefined {
  const candidates = infra ? [infra, ...members] : members;
  for (const r of candidates) {
    if (r.phase !== "running" || !(r.pid > 0)) continue;
    const text = readProcText(`/proc/${r.pid}/net/dev`);
    if (text) return text;
  }
  return undefined;
}

/** Counts containers handled and yields to the event loop after every CONTAINERS_PER_TURN. */
export class Turns {
  private done = 0;
  /** Call before handling `n` more containers. */
  async before(n: number): Promise<void> {
    if (this.done > 0 && this.done + n > CONTAINERS_PER_TURN) {
      this.done = 0;
      await yieldToLoop();
    }
    this.done += n;
  }
}

/**
 * How long a container's memory limit, read from its cgroup, is reused while its record's
 * resources stay the same object (UpdateContainerResources replaces them, so an update is seen at
 * once). The bound only covers a limit changed behind berth's back (a hand-run `runc update`).
 */
export const MEMORY_LIMIT_MAX_AGE_MS = 60_000;

export class StatsCollector {
  /** The previous cpu sample per cgroup path, for usage_nano_cores. */
  private readonly lastCpu = new Map<string, { at: bigint; usage: bigint }>();
  /** Memory limits per cgroup path, with the resources they were read under (see MEMORY_LIMIT_MAX_AGE_MS). */
  private readonly limits = new Map<string, { resources: unknown; at: number; limit: bigint | undefined }>();
  /** Writable-layer usage per container (see LayerUsageCache). */
  private readonly layers: LayerUsageCache;
  /**
   * Each container's and pod's attributes, one object while its record's id, metadata, labels and
   * annotations are the same objects: the answer's encoder keeps their bytes per object
   * (cri/stats-encoding.ts), and they are most of a stats item that does not change between polls.
   */
  private readonly attributes = new WeakMap<object, ContainerAttributes & PodSandboxAttributes>();

  constructor(
    private readonly containers: ContainerSource,
    private readonly cgroups: Cgroups,
    snapshots: Snapshots,
    private readonly sandboxes: SandboxLookup,
    private readonly sandboxIds: SandboxIds,
    options: StatsOptions = DEFAULT_STATS_OPTIONS,
  ) {
    this.layers = new LayerUsageCache(snapshots, options.layerUsageMaxAgeMs, options.parallel);
  }

  private attributesOf<A extends ContainerAttributes | PodSandboxAttributes>(
    owner: { id: string; metadata: A["metadata"]; labels: Record<string, string>; annotations: Record<string, string> },
  ): A {
    const a = this.attributes.get(owner) as A | undefined;
    if (a && a.id === owner.id && a.metadata === owner.metadata && a.labels === owner.labels && a.annotations === owner.annotations) return a;
    const fresh = { id: owner.id, metadata: owner.metadata, labels: owner.labels, annotations: owner.annotations } as A;
    this.attributes.set(owner, fresh as never);
    return fresh;
  }

  private cpu(key: string, s: CgroupStats): CpuUsage {
    const prev = this.lastCpu.get(key);
    let nanoCores: bigint | undefined;
    if (prev) {
      if (s.timestamp > prev.at && s.cpuUsageNs >= prev.usage) nanoCores = ((s.cpuUsageNs - prev.usage) * 1_000_000_000n) / (s.timestamp - prev.at);
      prev.at = s.timestamp;
      prev.usage = s.cpuUsageNs;
    } else {
      // Samples of removed containers are dropped wholesale now and then rather than tracked.
      if (this.lastCpu.size >= 4096) this.lastCpu.clear();
      this.lastCpu.set(key, { at: s.timestamp, usage: s.cpuUsageNs });
    }
    return { timestamp: s.timestamp, usageCoreNanoSeconds: u64(s.cpuUsageNs), usageNanoCores: nanoCores !== undefined ? u64(nanoCores) : undefined, psi: undefined };
  }

  private memory(s: CgroupStats): MemoryUsage {
    return {
      timestamp: s.timestamp,
      workingSetBytes: u64(s.workingSetBytes),
      availableBytes: s.memoryLimitBytes !== undefined ? u64(s.memoryLimitBytes > s.workingSetBytes ? s.memoryLimitBytes - s.workingSetBytes : 0n) : undefined,
      usageBytes: u64(s.memoryUsageBytes),
      rssBytes: u64(s.rssBytes),
      pageFaults: u64(s.pageFaults),
      majorPageFaults: u64(s.majorPageFaults),
      psi: undefined,
    };
  }

  /** The counters; the process count only for a pod's sum (a container's stats carry none), the OOM count never. */
  private readCgroup(r: ContainerRecord, pids: boolean): CgroupStats | undefined {
    if (r.phase !== "running") return undefined;
    const now = Date.now();
    const known = this.limits.get(r.cgroupsPath);
    const reuse = known !== undefined && known.resources === r.resources && now - known.at <= MEMORY_LIMIT_MAX_AGE_MS;
    let s: CgroupStats | undefined;
    try {
      s = this.cgroups.stats(r.cgroupsPath, { pids, oomKills: false, memoryLimit: !reuse });
    } catch {
      // A cgroupsPath that names no cgroup dir (a malformed systemd slice): no counters, as for a gone cgroup.
      return undefined;
    }
    if (s === undefined) {
      this.limits.delete(r.cgroupsPath);
    } else if (reuse) {
      s.memoryLimitBytes = known.limit;
    } else {
      // Removed containers' limits are dropped wholesale now and then rather than tracked.
      if (known === undefined && this.limits.size >= 4096) this.limits.clear();
      this.limits.set(r.cgroupsPath, { resources: r.resources, at: now, limit: s.memoryLimitBytes });
    }
    return s;
  }

  /**
   * One container's stats and the cgroup counters they came from (read once, for the pod's sum
   * too), read now; a writable layer not yet measured is filled in when its walk ends, and that
   * walk is pushed on `walks`.
   */
  private one(r: ContainerRecord, forPod: boolean, walks: Array<Promise<unknown>>): { stats: ContainerStats; cgroup: CgroupStats | undefined } {
    const s = this.readCgroup(r, forPod);
    const now = BigInt(Date.now()) * 1_000_000n;
    const stats: ContainerStats = {
      attributes: this.attributesOf<ContainerAttributes>(r),
      cpu: s ? this.cpu(r.cgroupsPath, s) : { timestamp: now, usageCoreNanoSeconds: u64(0), usageNanoCores: u64(0), psi: undefined },
      memory: s ? this.memory(s) : { timestamp: now, workingSetBytes: u64(0), availableBytes: undefined, usageBytes: u64(0), rssBytes: u64(0), pageFaults: u64(0), majorPageFaults: u64(0), psi: undefined },
      writableLayer: undefined,
      swap: undefined,
      io: undefined,
    };
    const layer = (usage: LayerUsageValue) => {
      if (usage) stats.writableLayer = { timestamp: now, fsId: { mountpoint: r.rootfs }, usedBytes: u64(usage.bytes), inodesUsed: u64(usage.inodes) };
    };
    const usage = this.layers.get(r.id);
    if (usage instanceof Promise) walks.push(usage.then(layer));
    else layer(usage);
    return { stats, cgroup: s };
  }

  async containerStats(id: string): Promise<ContainerStats> {
    const walks: Array<Promise<unknown>> = [];
    const { stats } = this.one(await this.containers.record(id), false, walks);
    await Promise.all(walks);
    return stats;
  }

  async listContainerStats(filter: ContainerStatsFilter | undefined): Promise<ContainerStats[]> {
    return this.containerStatsOf(await this.containerStatsIds(filter));
  }

  /** The containers ListContainerStats reports on (the running ones the filter picks), in order. */
  async containerStatsIds(filter: ContainerStatsFilter | undefined): Promise<string[]> {
    const all = await this.containers.allContainers();
    const labels = Object.entries(filter?.labelSelector ?? {});
    const out: string[] = [];
    for (const r of all) {
      if (r.phase !== "running") continue;
      if (filter?.id && !r.id.startsWith(filter.id)) continue;
      if (filter?.podSandboxId && !r.sandboxId.startsWith(filter.podSandboxId)) continue;
      if (labels.length > 0 && !labels.every(([k, v]) => r.labels[k] === v)) continue;
      out.push(r.id);
    }
    return out;
  }

  /** Stats of the given containers; one removed meanwhile is left out. */
  async containerStatsOf(ids: string[]): Promise<ContainerStats[]> {
    const records = await Promise.all(ids.map((id) => this.containers.record(id).catch((err) => {
      if (err instanceof NotFound) return undefined;
      throw err;
    })));
    this.layers.prune();
    const out: ContainerStats[] = [];
    const walks: Array<Promise<unknown>> = [];
    const turns = new Turns();
    for (const r of records) {
      if (r === undefined) continue;
      await turns.before(1);
      out.push(this.one(r, false, walks).stats);
    }
    await Promise.all(walks);
    return out;
  }

  private network(sandbox: SandboxRef, infra: ContainerRecord | undefined, members: readonly ContainerRecord[]): NetworkUsage | undefined {
    if (!sandbox.netnsPath) return undefined;
    const text = podNetDev(infra, members);
    if (!text) return undefined;
    const ifaces: NetworkInterfaceUsage[] = [];
    let eth0: NetworkInterfaceUsage | undefined;
    for (const i of parseNetDev(text)) {
      if (i.name === "lo") continue;
      const u = { name: i.name, rxBytes: u64(i.rxBytes), rxErrors: u64(i.rxErrors), txBytes: u64(i.txBytes), txErrors: u64(i.txErrors) };
      if (i.name === "eth0") eth0 = u;
      ifaces.push(u);
    }
    return { timestamp: BigInt(Date.now()) * 1_000_000n, defaultInterface: eth0 ?? ifaces[0], interfaces: ifaces };
  }

  async podStats(sandboxId: string): Promise<PodSandboxStats> {
    const sandbox = this.sandboxes.getSandbox(sandboxId);
    if (!sandbox) throw new NotFound(`pod sandbox "${sandboxId}" not found`);
    const walks: Array<Promise<unknown>> = [];
    const stats = this.podOf(sandbox, walks);
    await Promise.all(walks);
    return stats;
  }

  /** A pod's stats, its cgroups and interfaces read now; layer walks it must wait for are pushed on `walks`. */
  private podOf(sandbox: SandboxRef, walks: Array<Promise<unknown>>): PodSandboxStats {
    const members = this.containers.containersOf(sandbox.id);
    const infra = this.containers.infraOf(sandbox.id);
    const containers: ContainerStats[] = [];
    // The pod's containers plus its infra container, summed: the pod's cgroup parent may be shared with other pods.
    const cgs: CgroupStats[] = [];
    for (const r of members) {
      if (r.phase !== "running") continue;
      const c = this.one(r, true, walks);
      containers.push(c.stats);
      if (c.cgroup) cgs.push(c.cgroup);
    }
    const infraCgroup = infra ? this.readCgroup(infra, true) : undefined;
    if (infraCgroup) cgs.push(infraCgroup);
    const network = this.network(sandbox, infra, members);
    const now = BigInt(Date.now()) * 1_000_000n;
    const summed: CgroupStats = {
      timestamp: now, cpuUsageNs: 0n, memoryUsageBytes: 0n, workingSetBytes: 0n, rssBytes: 0n, pageFaults: 0n, majorPageFaults: 0n, oomKills: 0, pids: 0,
    };
    for (const c of cgs) {
      summed.cpuUsageNs += c.cpuUsageNs;
      summed.memoryUsageBytes += c.memoryUsageBytes;
      summed.workingSetBytes += c.workingSetBytes;
      summed.rssBytes += c.rssBytes;
      summed.pageFaults += c.pageFaults;
      summed.majorPageFaults += c.majorPageFaults;
      summed.oomKills += c.oomKills;
      summed.pids += c.pids;
    }
    return {
      attributes: this.attributesOf<PodSandboxAttributes>(sandbox),
      linux: {
        cpu: this.cpu(`pod:${sandbox.id}`, summed),
        memory: this.memory(summed),
        network,
        process: { timestamp: now, processCount: u64(summed.pids) },
        containers,
        io: undefined,
      },
      windows: undefined,
    };
  }

  async listPodStats(filter: PodSandboxStatsFilter | undefined): Promise<PodSandboxStats[]> {
    return this.podStatsOf(this.podStatsIds(filter));
  }

  /** The pods ListPodSandboxStats reports on (the ready ones the filter picks), in order. */
  podStatsIds(filter: PodSandboxStatsFilter | undefined): string[] {
    const labels = Object.entries(filter?.labelSelector ?? {});
    return this.sandboxIds().filter((id) => {
      if (filter?.id && !id.startsWith(filter.id)) return false;
      const sb = this.sandboxes.getSandbox(id);
      return sb !== undefined && sb.state === "ready" && (labels.length === 0 || labels.every(([k, v]) => sb.labels[k] === v));
    });
  }

  /** Stats of the given pods; one removed meanwhile is left out. */
  async podStatsOf(ids: string[]): Promise<PodSandboxStats[]> {
    this.layers.prune();
    const out: PodSandboxStats[] = [];
    const walks: Array<Promise<unknown>> = [];
    const turns = new Turns();
    for (const id of ids) {
      // Looked up after the yield: a pod removed during it is left out.
      await turns.before(this.containers.containersOf(id).length + 1);
      const sb = this.sandboxes.getSandbox(id);
      if (sb) out.push(this.podOf(sb, walks));
    }
    await Promise.all(walks);
    return out;
  }
}
