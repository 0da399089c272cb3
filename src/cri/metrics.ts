// ListMetricDescriptors, ListPodSandboxMetrics, StreamPodSandboxMetrics (KEP-2371; the stream
// batches as the other Stream* lists do, list-stream.ts, each slice of pods collected when its turn comes).
import type { Metric, MetricDescriptor, PodSandboxMetrics } from "../gen/api.js";
import { MetricType } from "../gen/api.js";
import type { Logger } from "../log.js";
import type { MetricDescription, MetricSample, PodMetricsSample } from "../runtime/metrics.js";
import { encodePodMetrics } from "./list-encoding.js";
import { sendBatches, slices, type Call } from "./list-stream.js";
import { serverStream, unary, type RuntimeHandlers } from "./rpc.js";

export interface PodMetrics {
  readonly descriptions: readonly MetricDescription[];
  /** Ready pods' ids, the order the stream sends them in. */
  readyPods(): string[];
  collect(): Promise<PodMetricsSample[]>;
  collectPods(ids: string[]): Promise<PodMetricsSample[]>;
}

const metricOf = (m: MetricSample): Metric => ({
  name: m.name,
  timestamp: m.timestamp,
  metricType: m.kind === "counter" ? MetricType.COUNTER : MetricType.GAUGE,
  labelValues: m.labelValues,
  value: { value: m.value },
});

const podOf = (p: PodMetricsSample): PodSandboxMetrics => ({
  podSandboxId: p.podSandboxId,
  metrics: p.metrics.map(metricOf),
  containerMetrics: p.containers.map((c) => ({ containerId: c.containerId, metrics: c.metrics.map(metricOf) })),
});

export function metricsHandlers(m: PodMetrics, log: Logger): Pick<RuntimeHandlers, "listMetricDescriptors" | "listPodSandboxMetrics" | "streamPodSandboxMetrics"> {
  const descriptors: MetricDescriptor[] = m.descriptions.map((d) => ({ name: d.name, help: d.help, labelKeys: d.labelKeys }));
  return {
    listMetricDescriptors: unary(log, "ListMetricDescriptors", async () => ({ descriptors })),
    listPodSandboxMetrics: unary(log, "ListPodSandboxMetrics", async () => ({ podMetrics: (await m.collect()).map(podOf) })),
    streamPodSandboxMetrics: serverStream(log, "StreamPodSandboxMetrics", async (_req, call) =>
      sendBatches(call as Call, log, "StreamPodSandboxMetrics", slices(m.readyPods(), async (ids) => (await m.collectPods(ids)).map(podOf)),
        encodePodMetrics, (podSandboxMetrics) => ({ podSandboxMetrics }))),
  };
}
