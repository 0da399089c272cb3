// Container and pod stats: cgroup counters (v1 or v2, each cgroup read once per call, a bounded
// number at a time), the writable layer's usage from the snapshotter (a walk of the upper dir,
// kept for a bounded age), and the pod's network interfaces read from /proc/<pid>/net/dev of a
// process inside the pod's network namespace.
import type {
  ContainerStats,
  ContainerStatsFilter,
  CpuUsage,
  MemoryUsage,
  NetworkInterfaceUsage,
  NetworkUsage,
  PodSandboxStats,
  PodSandboxStatsFilter,
} from "../gen/api.js";
import { NotFound } from "../errors.js";
import { Semaphore } from "../image/layers.js";
import type { Snapshots } from "../image/types.js";
import { readSmallFile, type CgroupStats, type Cgroups } from "./cgroups.js";
import type { ContainerRecord } from "./container-record.js";
import type { SandboxLookup, SandboxRef } from "./types.js";

/** What stats needs of the container layer. */
export interface ContainerSource {
  record(id: string): Promise<ContainerRecord>;
  allContainers(): Promise<ContainerRecord[]>;
  containersOf(sandboxId: string): ContainerRecord[];
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
  /** Cgroups (and layer walks) read at once: the libuv pool has 4 threads, more only queues. */
  parallel: number;
}

export const DEFAULT_STATS_OPTIONS: StatsOptions = { layerUsageMaxAgeMs: 30_000, parallel: 8 };

interface LayerUsage {
  at: number;
  value: Promise<{ bytes: number; inodes: number } | undefined>;
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

/** Parses /proc/<pid>/net/dev. */
export function parseNetDev(text: string): InterfaceCounters[] {
  const out: InterfaceCounters[] = [];
  for (const line of text.split("\n").slice(2)) {
    const i = line.indexOf(":");
    if (i < 0) continue;
    const name = line.slice(0, i).trim();
    const f = line.slice(i + 1).trim().split(/\s+/).map((x) => BigInt(/^\d+$/.test(x) ? x : "0"));
    if (f.length < 16) continue;
    out.push({ name, rxBytes: f[0]!, rxErrors: f[2]!, txBytes: f[8]!, txErrors: f[10]!, rxPackets: f[1]!, rxDropped: f[3]!, txPackets: f[9]!, txDropped: f[11]! });
  }
  return out;
}

export class StatsCollector {
  /** The previous cpu sample per cgroup path, for usage_nano_cores. */
  private readonly lastCpu = new Map<string, { at: bigint; usage: bigint }>();
  /** Writable-layer usage per snapshot key, reused for `layerUsageMaxAgeMs`. */
  private readonly layerUsage = new Map<string, LayerUsage>();
  private readonly bound: Semaphore;

  constructor(
    private readonly containers: ContainerSource,
    private readonly cgroups: Cgroups,
    private readonly snapshots: Snapshots,
    private readonly sandboxes: SandboxLookup,
    private readonly sandboxIds: SandboxIds,
    private readonly options: StatsOptions = DEFAULT_STATS_OPTIONS,
  ) {
    this.bound = new Semaphore(options.parallel);
  }

  private cpu(key: string, s: CgroupStats): CpuUsage {
    const prev = this.lastCpu.get(key);
    // Samples of removed containers are dropped wholesale now and then rather than tracked.
    if (this.lastCpu.size > 4096) this.lastCpu.clear();
    this.lastCpu.set(key, { at: s.timestamp, usage: s.cpuUsageNs });
    let nanoCores: bigint | undefined;
    if (prev && s.timestamp > prev.at && s.cpuUsageNs >= prev.usage) {
      nanoCores = ((s.cpuUsageNs - prev.usage) * 1_000_000_000n) / (s.timestamp - prev.at);
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

  /** The writable layer's usage, walked at most once per `layerUsageMaxAgeMs` (concurrent callers share a walk). */
  private writableLayer(key: string): Promise<{ bytes: number; inodes: number } | undefined> {
    const now = Date.now();
    const hit = this.layerUsage.get(key);
    if (hit && now - hit.at <= this.options.layerUsageMaxAgeMs) return hit.value;
    const value = this.bound.run(() => this.snapshots.usage(key)).catch(() => undefined);
    this.layerUsage.set(key, { at: now, value });
    return value;
  }

  /** Forgets layer usage older than its age bound (removed containers' among them). */
  private pruneLayerUsage(): void {
    const now = Date.now();
    for (const [k, u] of this.layerUsage) if (now - u.at > this.options.layerUsageMaxAgeMs) this.layerUsage.delete(k);
  }

  /** The counters; the process count only for a pod's sum (a container's stats carry none), the OOM count never. */
  private readCgroup(r: ContainerRecord, pids: boolean): Promise<CgroupStats | undefined> {
    return r.phase === "running" ? this.bound.run(() => this.cgroups.stats(r.cgroupsPath, { pids, oomKills: false })) : Promise.resolve(undefined);
  }

  /** One container's stats and the cgroup counters they came from (read once, for the pod's sum too). */
  private async one(r: ContainerRecord, forPod = false): Promise<{ stats: ContainerStats; cgroup: CgroupStats | undefined }> {
    const [s, usage] = await Promise.all([this.readCgroup(r, forPod), this.writableLayer(r.id)]);
    const now = BigInt(Date.now()) * 1_000_000n;
    const stats: ContainerStats = {
      attributes: { id: r.id, metadata: r.metadata, labels: r.labels, annotations: r.annotations },
      cpu: s ? this.cpu(r.cgroupsPath, s) : { timestamp: now, usageCoreNanoSeconds: u64(0), usageNanoCores: u64(0), psi: undefined },
      memory: s ? this.memory(s) : { timestamp: now, workingSetBytes: u64(0), availableBytes: undefined, usageBytes: u64(0), rssBytes: u64(0), pageFaults: u64(0), majorPageFaults: u64(0), psi: undefined },
      writableLayer: usage ? { timestamp: now, fsId: { mountpoint: r.rootfs }, usedBytes: u64(usage.bytes), inodesUsed: u64(usage.inodes) } : undefined,
      swap: undefined,
      io: undefined,
    };
    return { stats, cgroup: s };
  }

  async containerStats(id: string): Promise<ContainerStats> {
    return (await this.one(await this.containers.record(id))).stats;
  }

  async listContainerStats(filter: ContainerStatsFilter | undefined): Promise<ContainerStats[]> {
    return this.containerStatsOf(await this.containerStatsIds(filter));
  }

  /** The containers ListContainerStats reports on (the running ones the filter picks), in order. */
  async containerStatsIds(filter: ContainerStatsFilter | undefined): Promise<string[]> {
    const all = await this.containers.allContainers();
    return all.filter((r) =>
      (!filter?.id || r.id.startsWith(filter.id)) &&
      (!filter?.podSandboxId || r.sandboxId.startsWith(filter.podSandboxId)) &&
      Object.entries(filter?.labelSelector ?? {}).every(([k, v]) => r.labels[k] === v) &&
      r.phase === "running").map((r) => r.id);
  }

  /** Stats of the given containers; one removed meanwhile is left out. */
  async containerStatsOf(ids: string[]): Promise<ContainerStats[]> {
    const records = await Promise.all(ids.map((id) => this.containers.record(id).catch((err) => {
      if (err instanceof NotFound) return undefined;
      throw err;
    })));
    this.pruneLayerUsage();
    return (await Promise.all(records.filter((r): r is ContainerRecord => r !== undefined).map((r) => this.one(r)))).map((x) => x.stats);
  }

  private async network(sandbox: SandboxRef, members: ContainerRecord[]): Promise<NetworkUsage | undefined> {
    if (!sandbox.netnsPath) return undefined;
    const infra = this.containers.infraOf(sandbox.id);
    const pids = [infra, ...members].filter((r): r is ContainerRecord => r !== undefined && r.phase === "running" && r.pid > 0).map((r) => r.pid);
    for (const pid of pids) {
      const text = await this.bound.run(() => readSmallFile(`/proc/${pid}/net/dev`)).catch(() => undefined);
      if (!text) continue;
      const ifaces: NetworkInterfaceUsage[] = parseNetDev(text).filter((i) => i.name !== "lo").map((i) => ({
        name: i.name, rxBytes: u64(i.rxBytes), rxErrors: u64(i.rxErrors), txBytes: u64(i.txBytes), txErrors: u64(i.txErrors),
      }));
      return { timestamp: BigInt(Date.now()) * 1_000_000n, defaultInterface: ifaces.find((i) => i.name === "eth0") ?? ifaces[0], interfaces: ifaces };
    }
    return undefined;
  }

  async podStats(sandboxId: string): Promise<PodSandboxStats> {
    const sandbox = this.sandboxes.getSandbox(sandboxId);
    if (!sandbox) throw new NotFound(`pod sandbox "${sandboxId}" not found`);
    return this.podOf(sandbox);
  }

  private async podOf(sandbox: SandboxRef): Promise<PodSandboxStats> {
    const members = this.containers.containersOf(sandbox.id);
    const infra = this.containers.infraOf(sandbox.id);
    const [containers, infraCgroup, network] = await Promise.all([
      Promise.all(members.filter((r) => r.phase === "running").map((r) => this.one(r, true))),
      infra ? this.readCgroup(infra, true).catch(() => undefined) : Promise.resolve(undefined),
      this.network(sandbox, members),
    ]);
    // The pod's containers plus its infra container, summed: the pod's cgroup parent may be shared with other pods.
    const cgs = [...containers.map((c) => c.cgroup), infraCgroup].filter((x): x is CgroupStats => x !== undefined);
    const now = BigInt(Date.now()) * 1_000_000n;
    const total = (f: (c: CgroupStats) => bigint) => cgs.reduce((acc, c) => acc + f(c), 0n);
    const summed: CgroupStats = {
      timestamp: now,
      cpuUsageNs: total((c) => c.cpuUsageNs),
      memoryUsageBytes: total((c) => c.memoryUsageBytes),
      workingSetBytes: total((c) => c.workingSetBytes),
      rssBytes: total((c) => c.rssBytes),
      pageFaults: total((c) => c.pageFaults),
      majorPageFaults: total((c) => c.majorPageFaults),
      oomKills: cgs.reduce((acc, c) => acc + c.oomKills, 0),
      pids: cgs.reduce((acc, c) => acc + c.pids, 0),
    };
    return {
      attributes: { id: sandbox.id, metadata: sandbox.metadata, labels: sandbox.labels, annotations: sandbox.annotations },
      linux: {
        cpu: this.cpu(`pod:${sandbox.id}`, summed),
        memory: this.memory(summed),
        network,
        process: { timestamp: now, processCount: u64(summed.pids) },
        containers: containers.map((c) => c.stats),
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
    return this.sandboxIds().filter((id) => {
      if (filter?.id && !id.startsWith(filter.id)) return false;
      const sb = this.sandboxes.getSandbox(id);
      return sb !== undefined && sb.state === "ready" && Object.entries(filter?.labelSelector ?? {}).every(([k, v]) => sb.labels[k] === v);
    });
  }

  /** Stats of the given pods; one removed meanwhile is left out. */
  async podStatsOf(ids: string[]): Promise<PodSandboxStats[]> {
    const picked = ids.map((id) => this.sandboxes.getSandbox(id)).filter((sb): sb is SandboxRef => sb !== undefined);
    this.pruneLayerUsage();
    // Every pod at once: the reads underneath are what the bound limits.
    return Promise.all(picked.map((sb) => this.podOf(sb)));
  }
}
