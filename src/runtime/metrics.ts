// Pod and container metrics in cAdvisor's names (KEP-2371: ListMetricDescriptors and
// ListPodSandboxMetrics, which kubelet serves as /metrics/cadvisor). One cgroup sample per
// container (cgroups.ts reads each file once, synchronously, a batch of containers between
// yields), the container's processes from /proc, its writable layer from the snapshotter (walked
// on every scrape: test/metrics.test.ts wants a layer write seen by the next one), and the pod's
// interfaces from /proc/<pid>/net/dev.
import { stat, statfs } from "node:fs/promises";
import type { Snapshots } from "../image/types.js";
import { countFds } from "../native/native.js";
import { readProcText } from "../proc.js";
import type { CgroupSample, Cgroups } from "./cgroups.js";
import type { ContainerRecord } from "./container-record.js";
import { parseNetDev, podNetDev, Turns, type ContainerSource, type SandboxIds } from "./stats.js";
import type { SandboxLookup, SandboxRef } from "./types.js";

export type MetricKind = "counter" | "gauge";

export interface MetricDescription {
  name: string;
  help: string;
  kind: MetricKind;
  labelKeys: string[];
}

export interface MetricSample {
  name: string;
  kind: MetricKind;
  /** In the order of the descriptor's labelKeys. */
  labelValues: string[];
  value: bigint;
  /** ns since the epoch. */
  timestamp: bigint;
}

export interface PodMetricsSample {
  podSandboxId: string;
  /** Pod-level metrics: the pod's network interfaces. */
  metrics: MetricSample[];
  containers: Array<{ containerId: string; metrics: MetricSample[] }>;
}

/** The labels kubelet's /metrics/cadvisor carries on every container series. */
export const BASE_LABEL_KEYS = ["id", "name", "image", "container", "pod", "namespace"];

type Row = [name: string, kind: MetricKind, help: string, extra?: string[]];

// cAdvisor's names, help texts, types and extra label keys (google/cadvisor lib/metrics/prometheus.go).
const ROWS: Row[] = [
  ["container_blkio_device_usage_total", "counter", "Blkio Device bytes usage", ["device", "major", "minor", "operation"]],
  ["container_cpu_cfs_periods_total", "counter", "Number of elapsed enforcement period intervals."],
  ["container_cpu_cfs_throttled_periods_total", "counter", "Number of throttled period intervals."],
  ["container_cpu_cfs_throttled_seconds_total", "counter", "Total time duration the container has been throttled."],
  ["container_cpu_system_seconds_total", "counter", "Cumulative system cpu time consumed in seconds."],
  ["container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed in seconds.", ["cpu"]],
  ["container_cpu_user_seconds_total", "counter", "Cumulative user cpu time consumed in seconds."],
  ["container_file_descriptors", "gauge", "Number of open file descriptors for the container."],
  ["container_fs_inodes_free", "gauge", "Number of available Inodes", ["device"]],
  ["container_fs_inodes_total", "gauge", "Number of Inodes", ["device"]],
  ["container_fs_limit_bytes", "gauge", "Number of bytes that can be consumed by the container on this filesystem.", ["device"]],
  ["container_fs_reads_bytes_total", "counter", "Cumulative count of bytes read", ["device"]],
  ["container_fs_reads_total", "counter", "Cumulative count of reads completed", ["device"]],
  ["container_fs_usage_bytes", "gauge", "Number of bytes that are consumed by the container on this filesystem.", ["device"]],
  ["container_fs_writes_bytes_total", "counter", "Cumulative count of bytes written", ["device"]],
  ["container_fs_writes_total", "counter", "Cumulative count of writes completed", ["device"]],
  ["container_hugetlb_max_usage_bytes", "gauge", "Maximum hugepage usage recorded in bytes", ["pagesize"]],
  ["container_hugetlb_usage_bytes", "gauge", "Current hugepage usage in bytes", ["pagesize"]],
  ["container_last_seen", "gauge", "Last time a container was seen by the exporter"],
  ["container_memory_cache", "gauge", "Number of bytes of page cache memory."],
  ["container_memory_failcnt", "counter", "Number of memory usage hits limits"],
  ["container_memory_failures_total", "counter", "Cumulative count of memory allocation failures.", ["failure_type", "scope"]],
  ["container_memory_kernel_usage", "gauge", "Size of kernel memory allocated in bytes."],
  ["container_memory_mapped_file", "gauge", "Size of memory mapped files in bytes."],
  ["container_memory_max_usage_bytes", "gauge", "Maximum memory usage recorded in bytes"],
  ["container_memory_rss", "gauge", "Size of RSS in bytes."],
  ["container_memory_swap", "gauge", "Container swap usage in bytes."],
  ["container_memory_usage_bytes", "gauge", "Current memory usage in bytes, including all memory regardless of when it was accessed"],
  ["container_memory_working_set_bytes", "gauge", "Current working set in bytes."],
  ["container_network_receive_bytes_total", "counter", "Cumulative count of bytes received", ["interface"]],
  ["container_network_receive_errors_total", "counter", "Cumulative count of errors encountered while receiving", ["interface"]],
  ["container_network_receive_packets_dropped_total", "counter", "Cumulative count of packets dropped while receiving", ["interface"]],
  ["container_network_receive_packets_total", "counter", "Cumulative count of packets received", ["interface"]],
  ["container_network_transmit_bytes_total", "counter", "Cumulative count of bytes transmitted", ["interface"]],
  ["container_network_transmit_errors_total", "counter", "Cumulative count of errors encountered while transmitting", ["interface"]],
  ["container_network_transmit_packets_dropped_total", "counter", "Cumulative count of packets dropped while transmitting", ["interface"]],
  ["container_network_transmit_packets_total", "counter", "Cumulative count of packets transmitted", ["interface"]],
  ["container_oom_events_total", "counter", "Count of out of memory events observed for the container"],
  ["container_pressure_cpu_stalled_seconds_total", "counter", "Total time duration no tasks in the container could make progress due to CPU congestion."],
  ["container_pressure_cpu_waiting_seconds_total", "counter", "Total time duration tasks in the container have waited due to CPU congestion."],
  ["container_pressure_io_stalled_seconds_total", "counter", "Total time duration no tasks in the container could make progress due to IO congestion."],
  ["container_pressure_io_waiting_seconds_total", "counter", "Total time duration tasks in the container have waited due to IO congestion."],
  ["container_pressure_memory_stalled_seconds_total", "counter", "Total time duration no tasks in the container could make progress due to memory congestion."],
  ["container_pressure_memory_waiting_seconds_total", "counter", "Total time duration tasks in the container have waited due to memory congestion."],
  ["container_processes", "gauge", "Number of processes running inside the container."],
  ["container_sockets", "gauge", "Number of open sockets for the container."],
  ["container_spec_cpu_period", "gauge", "CPU period of the container."],
  ["container_spec_cpu_quota", "gauge", "CPU quota of the container."],
  ["container_spec_cpu_shares", "gauge", "CPU share of the container."],
  ["container_spec_memory_limit_bytes", "gauge", "Memory limit for the container."],
  ["container_spec_memory_reservation_limit_bytes", "gauge", "Memory reservation limit for the container."],
  ["container_spec_memory_swap_limit_bytes", "gauge", "Memory swap limit for the container."],
  ["container_start_time_seconds", "gauge", "Start time of the container since unix epoch in seconds."],
  ["container_threads", "gauge", "Number of threads running inside the container"],
  ["container_threads_max", "gauge", "Maximum number of threads allowed inside the container, infinity if value is zero"],
  ["container_ulimits_soft", "gauge", "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice", ["ulimit"]],
];

export const METRIC_DESCRIPTIONS: readonly MetricDescription[] = ROWS.map(([name, kind, help, extra]) => ({ name, kind, help, labelKeys: [...BASE_LABEL_KEYS, ...(extra ?? [])] }));
const KIND = new Map(ROWS.map(([name, kind]) => [name, kind]));

const SECOND = 1_000_000_000n;

/** /proc/<pid>/limits: the soft "Max open files" (cAdvisor's one ulimit); -1 (unlimited) is not a uint64, so it is left out. */
export function maxOpenFiles(text: string | undefined): bigint | undefined {
  if (text === undefined) return undefined;
  const key = "\nMax open files ";
  const at = text.indexOf(key);
  if (at < 0) return undefined;
  let i = at + key.length;
  while (text.charCodeAt(i) === 32) i++;
  let j = i;
  while (j < text.length && text.charCodeAt(j) >= 48 && text.charCodeAt(j) <= 57) j++;
  return j > i ? BigInt(text.slice(i, j)) : undefined;
}

/** A sink for one series list: fills in the kind and timestamp, and the base labels it was opened with. */
class Series {
  readonly out: MetricSample[] = [];
  constructor(private readonly base: string[], private readonly timestamp: bigint) {}
  add(name: string, value: bigint | number | undefined, ...extra: string[]): void {
    if (value === undefined) return;
    this.out.push({ name, kind: KIND.get(name)!, labelValues: extra.length ? [...this.base, ...extra] : this.base, value: BigInt(value), timestamp: this.timestamp });
  }
}

export class PodMetricsCollector {
  readonly descriptions = METRIC_DESCRIPTIONS;
  /** "major:minor" -> "/dev/<name>" (block devices do not change names under a running berthd). */
  private readonly deviceNames = new Map<string, string>();

  constructor(
    private readonly containers: ContainerSource,
    private readonly cgroups: Cgroups,
    private readonly snapshots: Snapshots,
    private readonly sandboxes: SandboxLookup,
    private readonly sandboxIds: SandboxIds,
    /** A folder on the filesystem holding the writable layers (for its size, inodes and device). */
    private readonly layerRoot: string,
  ) {}

  /** Ready pods, in the sandbox layer's order. */
  readyPods(): string[] {
    return this.sandboxIds().filter((id) => this.sandboxes.getSandbox(id)?.state === "ready");
  }

  async collect(): Promise<PodMetricsSample[]> {
    return this.collectPods(this.readyPods());
  }

  async collectPods(ids: string[]): Promise<PodMetricsSample[]> {
    const layerFs = await this.layerFilesystem();
    const pods: Array<Promise<PodMetricsSample>> = [];
    const turns = new Turns();
    for (const id of ids) {
      await turns.before(this.containers.containersOf(id).length + 1);
      // Looked up after the yield: a pod removed or stopped during it is left out.
      const sb = this.sandboxes.getSandbox(id);
      if (sb && sb.state === "ready") pods.push(this.pod(sb, layerFs));
    }
    return Promise.all(pods);
  }

  /** A pod's cgroups and interfaces are read before this returns; the fd counts and layer walks it waits on after. */
  private async pod(sb: SandboxRef, layerFs: LayerFs | undefined): Promise<PodMetricsSample> {
    const members = this.containers.containersOf(sb.id).filter((r) => r.phase === "running");
    const network = this.network(sb, members);
    const containers = await Promise.all(members.map(async (r) => ({ containerId: r.id, metrics: await this.container(r, sb, layerFs) })));
    return { podSandboxId: sb.id, metrics: network, containers };
  }

  private network(sb: SandboxRef, members: ContainerRecord[]): MetricSample[] {
    if (!sb.netnsPath) return [];
    const text = podNetDev(this.containers.infraOf(sb.id), members);
    if (!text) return [];
    const s = new Series([sb.id, sb.metadata?.name ?? "", "", "", sb.metadata?.name ?? "", sb.metadata?.namespace ?? ""], BigInt(Date.now()) * 1_000_000n);
    for (const i of parseNetDev(text)) {
      if (i.name === "lo") continue;
      s.add("container_network_receive_bytes_total", i.rxBytes, i.name);
      s.add("container_network_receive_errors_total", i.rxErrors, i.name);
      s.add("container_network_receive_packets_dropped_total", i.rxDropped, i.name);
      s.add("container_network_receive_packets_total", i.rxPackets, i.name);
      s.add("container_network_transmit_bytes_total", i.txBytes, i.name);
      s.add("container_network_transmit_errors_total", i.txErrors, i.name);
      s.add("container_network_transmit_packets_dropped_total", i.txDropped, i.name);
      s.add("container_network_transmit_packets_total", i.txPackets, i.name);
    }
    return s.out;
  }

  /** Its cgroup and open-files limit are read before the first await; then its fd counts (on the pool) and its layer walk. */
  private async container(r: ContainerRecord, sb: SandboxRef, layerFs: LayerFs | undefined): Promise<MetricSample[]> {
    let cg: CgroupSample | undefined;
    try {
      cg = this.cgroups.sample(r.cgroupsPath);
    } catch {
      cg = undefined;
    }
    if (!cg) return [];
    // The init process's open-files limit, else the first process's.
    const initPid = r.pid > 0 ? r.pid : cg.pids[0];
    const openFiles = initPid !== undefined ? maxOpenFiles(readProcText(`/proc/${initPid}/limits`)) : undefined;
    const layerUsage = layerFs ? this.snapshots.usage(r.id).catch(() => undefined) : undefined;
    const [procs, usage] = await Promise.all([cg.pids.length > 0 ? countFds(cg.pids) : { fds: 0, sockets: 0 }, layerUsage]);
    const s = new Series([r.id, r.name, r.imageName, r.metadata?.name ?? "", sb.metadata?.name ?? "", sb.metadata?.namespace ?? ""], cg.timestamp);
    this.cpu(s, cg);
    this.memory(s, cg);
    if (layerFs) {
      const dev = layerFs.device;
      const io = cg.blkio.find((b) => b.major === layerFs.major && b.minor === layerFs.minor);
      s.add("container_fs_inodes_free", layerFs.inodesFree, dev);
      s.add("container_fs_inodes_total", layerFs.inodesTotal, dev);
      s.add("container_fs_limit_bytes", layerFs.limitBytes, dev);
      s.add("container_fs_usage_bytes", usage?.bytes, dev);
      s.add("container_fs_reads_bytes_total", io?.readBytes ?? 0n, dev);
      s.add("container_fs_reads_total", io?.reads ?? 0n, dev);
      s.add("container_fs_writes_bytes_total", io?.writeBytes ?? 0n, dev);
      s.add("container_fs_writes_total", io?.writes ?? 0n, dev);
      // The layer's device always has its two series, so a container that did no direct I/O still shows them.
      if (!io) cg.blkio.push({ major: layerFs.major, minor: layerFs.minor, readBytes: 0n, writeBytes: 0n, reads: 0n, writes: 0n });
    }
    for (const b of cg.blkio) {
      const dev = this.deviceName(b.major, b.minor);
      s.add("container_blkio_device_usage_total", b.readBytes, dev, String(b.major), String(b.minor), "Read");
      s.add("container_blkio_device_usage_total", b.writeBytes, dev, String(b.major), String(b.minor), "Write");
    }
    for (const h of cg.hugetlb) {
      s.add("container_hugetlb_usage_bytes", h.usage, h.pageSize);
      s.add("container_hugetlb_max_usage_bytes", h.maxUsage, h.pageSize);
    }
    const p = cg.pressure;
    s.add("container_pressure_cpu_stalled_seconds_total", p?.cpu && p.cpu.fullUs / 1_000_000n);
    s.add("container_pressure_cpu_waiting_seconds_total", p?.cpu && p.cpu.someUs / 1_000_000n);
    s.add("container_pressure_memory_stalled_seconds_total", p?.memory && p.memory.fullUs / 1_000_000n);
    s.add("container_pressure_memory_waiting_seconds_total", p?.memory && p.memory.someUs / 1_000_000n);
    s.add("container_pressure_io_stalled_seconds_total", p?.io && p.io.fullUs / 1_000_000n);
    s.add("container_pressure_io_waiting_seconds_total", p?.io && p.io.someUs / 1_000_000n);
    s.add("container_processes", cg.pids.length);
    s.add("container_threads", cg.threads);
    s.add("container_threads_max", cg.threadsMax);
    s.add("container_file_descriptors", procs.fds);
    s.add("container_sockets", procs.sockets);
    s.add("container_ulimits_soft", openFiles, "max_open_files");
    s.add("container_start_time_seconds", r.startedAt / SECOND);
    s.add("container_last_seen", BigInt(Math.floor(Date.now() / 1000)));
    return s.out;
  }

  // CRI values are whole numbers: seconds are truncated, as containerd and CRI-O do.
  private cpu(s: Series, cg: CgroupSample): void {
    s.add("container_cpu_usage_seconds_total", cg.cpuUsageNs / SECOND, "total");
    s.add("container_cpu_user_seconds_total", cg.cpuUserNs / SECOND);
    s.add("container_cpu_system_seconds_total", cg.cpuSystemNs / SECOND);
    s.add("container_cpu_cfs_periods_total", cg.cfsPeriods);
    s.add("container_cpu_cfs_throttled_periods_total", cg.cfsThrottledPeriods);
    s.add("container_cpu_cfs_throttled_seconds_total", cg.cfsThrottledNs / SECOND);
    s.add("container_spec_cpu_period", cg.cpuPeriodUs);
    s.add("container_spec_cpu_quota", cg.cpuQuotaUs);
    s.add("container_spec_cpu_shares", cg.cpuShares);
  }

  private memory(s: Series, cg: CgroupSample): void {
    s.add("container_memory_cache", cg.memoryCache);
    s.add("container_memory_rss", cg.memoryRss);
    s.add("container_memory_mapped_file", cg.memoryMappedFile);
    s.add("container_memory_swap", cg.memorySwap ?? 0n);
    s.add("container_memory_kernel_usage", cg.memoryKernel);
    s.add("container_memory_usage_bytes", cg.memoryUsage);
    s.add("container_memory_max_usage_bytes", cg.memoryMaxUsage);
    s.add("container_memory_working_set_bytes", cg.workingSet);
    s.add("container_memory_failcnt", cg.memoryFailcnt);
    s.add("container_memory_failures_total", cg.pgfault, "pgfault", "container");
    s.add("container_memory_failures_total", cg.pgmajfault, "pgmajfault", "container");
    s.add("container_memory_failures_total", cg.pgfaultHierarchy, "pgfault", "hierarchy");
    s.add("container_memory_failures_total", cg.pgmajfaultHierarchy, "pgmajfault", "hierarchy");
    s.add("container_spec_memory_limit_bytes", cg.memoryLimit);
    s.add("container_spec_memory_reservation_limit_bytes", cg.memoryReservation);
    s.add("container_spec_memory_swap_limit_bytes", cg.memorySwapLimit);
    s.add("container_oom_events_total", cg.oomKills);
  }

  private async layerFilesystem(): Promise<LayerFs | undefined> {
    try {
      const [st, fs] = await Promise.all([stat(this.layerRoot), statfs(this.layerRoot)]);
      // st.dev packs major and minor the way the kernel's new_encode_dev does.
      const major = Number((BigInt(st.dev) >> 8n) & 0xfffn);
      const minor = Number((BigInt(st.dev) & 0xffn) | ((BigInt(st.dev) >> 12n) & 0xfff00n));
      return {
        major, minor, device: this.deviceName(major, minor),
        limitBytes: BigInt(fs.blocks) * BigInt(fs.bsize), inodesTotal: BigInt(fs.files), inodesFree: BigInt(fs.ffree),
      };
    } catch {
      return undefined;
    }
  }

  /** "/dev/vda" for 254:0, from sysfs (read once per device); "major:minor" for a device sysfs does not name (overlay, tmpfs). */
  private deviceName(major: number, minor: number): string {
    const key = `${major}:${minor}`;
    let name = this.deviceNames.get(key);
    if (name === undefined) {
      const dev = /^DEVNAME=(.+)$/m.exec(readProcText(`/sys/dev/block/${key}/uevent`) ?? "")?.[1];
      name = dev ? `/dev/${dev}` : key;
      this.deviceNames.set(key, name);
    }
    return name;
  }
}

interface LayerFs {
  major: number;
  minor: number;
  device: string;
  limitBytes: bigint;
  inodesTotal: bigint;
  inodesFree: bigint;
}
