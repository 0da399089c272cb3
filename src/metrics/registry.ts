// berth's own Prometheus metrics (prom-client): the recorders the lower layers are handed, and
// the gauges computed at scrape time from the stores. Everything is named under `berth_`.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { CniCommand, PluginCallRecorder } from "../cni/invoke.js";
import type { RpcMethodRecorder, RpcRecorder } from "../cri/rpc.js";
import type { LayerProgress, PullRecorder } from "../image/progress.js";

const PREFIX = "berth_";
/** CRI calls take from tens of microseconds (lists) to minutes (pulls, stops). */
const RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const CNI_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const PULL_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/** What the container gauges read at scrape time. */
export interface ContainerCounts {
  /** CRI containers (not infra) per state name ("running"), and pods per state. */
  containersByState(): Promise<Record<string, number>>;
  podsByState(): Record<string, number>;
  /** Live conmon monitor processes. */
  monitors(): Promise<number>;
}

/** The event bus's figures (src/runtime/events.ts). */
export interface EventCounters {
  subscribers(): number;
  droppedTotal(): number;
}

interface MethodCounts {
  calls: number;
  errors: Map<number, number>;
}

export class BerthMetrics {
  readonly registry = new Registry();
  private readonly methods = new Map<string, MethodCounts>();
  private readonly rpcDuration: Histogram<"method">;
  private readonly cniDuration: Histogram<"plugin" | "command">;
  private readonly pullDuration: Histogram<"result">;
  private readonly pullFailures: Counter<"reason">;
  private readonly layerDone: Gauge<"image" | "layer">;
  private readonly layerTotal: Gauge<"image" | "layer">;
  private readonly oomKills: Counter;
  private pullBytes = 0;
  private pullsRunning = 0;
  private layersReused = 0;
  private layersPulled = 0;
  /** Images whose progress gauges are set, so their series go when the pull ends. */
  private readonly progressSeries = new Map<string, string[]>();

  constructor(private readonly codeName: (code: number) => string) {
    const registers = [this.registry];
    const self = this;
    // Event-loop delay sampled once a second, not prom-client's every 10 ms: the sampling timer
    // wakes berthd each time, and at 100 ms (what berth had) its 600 wake-ups a minute were most
    // of an idle berthd's main-thread CPU (docs/metrics.md has the measurement).
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX, eventLoopMonitoringPrecision: 1000 });
    // prom-client names these gauges *_total, which Prometheus reserves for counters (promtool rejects them): one gauge instead.
    for (const bad of ["active_handles", "active_requests", "active_resources"]) {
      this.registry.removeSingleMetric(`${PREFIX}nodejs_${bad}_total`);
      this.registry.removeSingleMetric(`${PREFIX}nodejs_${bad}`);
    }
    new Gauge({
      name: `${PREFIX}nodejs_active_resources`, help: "Resources (handles, requests, timers) keeping the event loop alive, by type.", labelNames: ["type"], registers,
      collect() {
        this.reset();
        const counts = new Map<string, number>();
        for (const t of process.getActiveResourcesInfo()) counts.set(t, (counts.get(t) ?? 0) + 1);
        for (const [type, n] of counts) this.set({ type }, n);
      },
    });
    new Counter({
      name: `${PREFIX}cri_requests_total`, help: "CRI calls answered, by RPC.", labelNames: ["method"], registers,
      collect() {
        this.reset();
        for (const [method, c] of self.methods) if (c.calls > 0) this.inc({ method }, c.calls);
      },
    });
    new Counter({
      name: `${PREFIX}cri_request_errors_total`, help: "CRI calls answered with an error, by RPC and gRPC code.", labelNames: ["method", "code"], registers,
      collect() {
        this.reset();
        for (const [method, c] of self.methods) for (const [code, n] of c.errors) this.inc({ method, code: self.codeName(code) }, n);
      },
    });
    this.rpcDuration = new Histogram({ name: `${PREFIX}cri_request_duration_seconds`, help: "Time to answer a CRI call, by RPC.", labelNames: ["method"], buckets: RPC_BUCKETS, registers });
    this.cniDuration = new Histogram({ name: `${PREFIX}cni_plugin_duration_seconds`, help: "Time a CNI plugin call took, by plugin type and command.", labelNames: ["plugin", "command"], buckets: CNI_BUCKETS, registers });
    this.pullDuration = new Histogram({ name: `${PREFIX}image_pull_duration_seconds`, help: "Time an image pull took, by result (ok, failed).", labelNames: ["result"], buckets: PULL_BUCKETS, registers });
    this.pullFailures = new Counter({ name: `${PREFIX}image_pull_failures_total`, help: "Failed image pulls, by reason (the gRPC code the caller got).", labelNames: ["reason"], registers });
    new Counter({ name: `${PREFIX}image_pull_bytes_total`, help: "Compressed layer bytes received from registries.", registers, collect() { this.reset(); this.inc(self.pullBytes); } });
    new Gauge({ name: `${PREFIX}image_pulls_in_progress`, help: "Image pulls running now.", registers, collect() { this.set(self.pullsRunning); } });
    new Counter({ name: `${PREFIX}image_layers_reused_total`, help: "Layers a pull found already unpacked.", registers, collect() { this.reset(); this.inc(self.layersReused); } });
    new Counter({ name: `${PREFIX}image_layers_pulled_total`, help: "Layers a pull downloaded.", registers, collect() { this.reset(); this.inc(self.layersPulled); } });
    this.layerDone = new Gauge({ name: `${PREFIX}image_pull_layer_received_bytes`, help: "Bytes received so far of a layer of a running pull (updated every pull progress interval).", labelNames: ["image", "layer"], registers });
    this.layerTotal = new Gauge({ name: `${PREFIX}image_pull_layer_size_bytes`, help: "Size of a layer of a running pull.", labelNames: ["image", "layer"], registers });
    this.oomKills = new Counter({ name: `${PREFIX}container_oom_kills_total`, help: "Containers that exited because the kernel OOM killer ended them.", registers });
  }

  /** The unary wrapper's sink (src/cri/rpc.ts): counts in plain numbers, the histogram child taken once. */
  readonly rpcs: RpcRecorder = {
    method: (name: string): RpcMethodRecorder => {
      let c = this.methods.get(name);
      if (!c) {
        c = { calls: 0, errors: new Map() };
        this.methods.set(name, c);
      }
      const counts = c;
      const hist = this.rpcDuration.labels(name);
      return {
        done(code: number, started: bigint): void {
          counts.calls++;
          if (code !== 0) counts.errors.set(code, (counts.errors.get(code) ?? 0) + 1);
          hist.observe(Number(process.hrtime.bigint() - started) / 1e9);
        },
      };
    },
  };

  readonly cni: PluginCallRecorder = {
    observe: (plugin: string, command: CniCommand, seconds: number) => this.cniDuration.observe({ plugin, command }, seconds),
  };

  readonly pulls: PullRecorder = {
    started: () => void this.pullsRunning++,
    bytes: (n: number) => void (this.pullBytes += n),
    layers: (reused: number, pulled: number) => {
      this.layersReused += reused;
      this.layersPulled += pulled;
    },
    progress: (image: string, layers: readonly LayerProgress[]) => {
      for (const l of layers) {
        this.layerDone.set({ image, layer: l.digest }, l.done);
        this.layerTotal.set({ image, layer: l.digest }, l.total);
      }
      this.progressSeries.set(image, layers.map((l) => l.digest));
    },
    finished: (image: string, seconds: number, failure?: string) => {
      this.pullsRunning--;
      this.pullDuration.observe({ result: failure === undefined ? "ok" : "failed" }, seconds);
      if (failure !== undefined) this.pullFailures.inc({ reason: failure });
      for (const layer of this.progressSeries.get(image) ?? []) {
        this.layerDone.remove({ image, layer });
        this.layerTotal.remove({ image, layer });
      }
      this.progressSeries.delete(image);
    },
  };

  readonly containers = { oomKilled: () => this.oomKills.inc() };

  /** Container, pod and monitor gauges, computed from the stores at each scrape. */
  registerContainerCounts(source: ContainerCounts): void {
    const registers = [this.registry];
    new Gauge({
      name: `${PREFIX}containers`, help: "CRI containers, by state.", labelNames: ["state"], registers,
      async collect() {
        this.reset();
        for (const [state, n] of Object.entries(await source.containersByState())) this.set({ state }, n);
      },
    });
    new Gauge({
      name: `${PREFIX}pod_sandboxes`, help: "Pod sandboxes, by state.", labelNames: ["state"], registers,
      collect() {
        this.reset();
        for (const [state, n] of Object.entries(source.podsByState())) this.set({ state }, n);
      },
    });
    new Gauge({ name: `${PREFIX}monitor_processes`, help: "Live conmon processes (one per created or running container).", registers, async collect() { this.set(await source.monitors()); } });
  }

  /** The event bus's subscriber count and dropped events (wired where the bus is built). */
  registerEventCounters(source: EventCounters): void {
    const registers = [this.registry];
    new Gauge({ name: `${PREFIX}event_subscribers`, help: "GetContainerEvents streams open now.", registers, collect() { this.set(source.subscribers()); } });
    new Counter({ name: `${PREFIX}events_dropped_total`, help: "Container events not delivered because a subscriber fell behind (it was cut off).", registers, collect() { this.reset(); this.inc(source.droppedTotal()); } });
  }
}
