// ListMetricDescriptors, ListPodSandboxMetrics, StreamPodSandboxMetrics (KEP-2371).
import type { Metric, MetricDescriptor, PodSandboxMetrics, RuntimeServiceServer } from "../gen/api.js";
import { MetricType } from "../gen/api.js";
import type { Logger } from "../log.js";
import type { MetricDescription, MetricSample, PodMetricsSample } from "../runtime/metrics.js";
import { serverStream, unary } from "./rpc.js";

export interface PodMetrics {
  readonly descriptions: readonly MetricDescription[];
  /** Ready pods' ids, the order the stream sends them in. */
  readyPods(): string[];
  collect(): Promise<PodMetricsSample[]>;
  collectPods(ids: string[]): Promise<PodMetricsSample[]>;
}

/** Pods per StreamPodSandboxMetrics message: each one is collected just before it is sent. */
export const METRICS_STREAM_BATCH = 25;

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

export function metricsHandlers(m: PodMetrics, log: Logger): Pick<RuntimeServiceServer, "listMetricDescriptors" | "listPodSandboxMetrics" | "streamPodSandboxMetrics"> {
  const descriptors: MetricDescriptor[] = m.descriptions.map((d) => ({ name: d.name, help: d.help, labelKeys: d.labelKeys }));
  return {
    listMetricDescriptors: unary(log, "ListMetricDescriptors", async () => ({ descriptors })),
    listPodSandboxMetrics: unary(log, "ListPodSandboxMetrics", async () => ({ podMetrics: (await m.collect()).map(podOf) })),
    streamPodSandboxMetrics: serverStream(log, "StreamPodSandboxMetrics", async (_req, call) => {
      const ids = m.readyPods();
      for (let i = 0; i < ids.length && !call.cancelled; i += METRICS_STREAM_BATCH) {
        const batch = await m.collectPods(ids.slice(i, i + METRICS_STREAM_BATCH));
        if (call.cancelled) return;
        if (!call.write({ podSandboxMetrics: batch.map(podOf) })) {
          await new Promise<void>((resolve) => {
            const go = () => {
              call.off("drain", go);
              call.off("cancelled", go);
              resolve();
            };
            call.on("drain", go);
            call.on("cancelled", go);
          });
        }
      }
    }),
  };
}
