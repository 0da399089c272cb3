// ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats.
import type { ContainerStats, ContainerStatsFilter, PodSandboxStats, PodSandboxStatsFilter } from "../gen/api.js";
import { InvalidArgument } from "../errors.js";
import type { Logger } from "../log.js";
import { unary, type RuntimeHandlers } from "./rpc.js";

export interface Stats {
  containerStats(id: string): Promise<ContainerStats>;
  listContainerStats(filter: ContainerStatsFilter | undefined): Promise<ContainerStats[]>;
  podStats(sandboxId: string): Promise<PodSandboxStats>;
  listPodStats(filter: PodSandboxStatsFilter | undefined): Promise<PodSandboxStats[]>;
  /** What the list calls cover, then their stats a slice at a time (StreamContainerStats, StreamPodSandboxStats). */
  containerStatsIds(filter: ContainerStatsFilter | undefined): Promise<string[]>;
  containerStatsOf(ids: string[]): Promise<ContainerStats[]>;
  podStatsIds(filter: PodSandboxStatsFilter | undefined): string[];
  podStatsOf(ids: string[]): Promise<PodSandboxStats[]>;
}

export function statsHandlers(s: Stats, log: Logger): Pick<RuntimeHandlers, "containerStats" | "listContainerStats" | "podSandboxStats" | "listPodSandboxStats"> {
  return {
    containerStats: unary(log, "ContainerStats", async (req) => {
      if (!req.containerId) throw new InvalidArgument("container_id is required");
      return { stats: await s.containerStats(req.containerId) };
    }),
    listContainerStats: unary(log, "ListContainerStats", async (req) => ({ stats: await s.listContainerStats(req.filter) })),
    podSandboxStats: unary(log, "PodSandboxStats", async (req) => {
      if (!req.podSandboxId) throw new InvalidArgument("pod_sandbox_id is required");
      return { stats: await s.podStats(req.podSandboxId) };
    }),
    listPodSandboxStats: unary(log, "ListPodSandboxStats", async (req) => ({ stats: await s.listPodStats(req.filter) })),
  };
}
