// CreateContainer, StartContainer, StopContainer, RemoveContainer, ContainerStatus,
// ListContainers, UpdateContainerResources, ReopenContainerLog.
import type { ContainerConfig, LinuxContainerResources } from "../gen/api.js";
import { InvalidArgument } from "../errors.js";
import type { Logger } from "../log.js";
import type { ContainerRecord } from "../runtime/container-record.js";
import type { ContainerInspection, ContainerListFilter } from "../runtime/container.js";
import { validateResources } from "../runtime/container-validate.js";
import { containerListFilter, toContainerItem, toContainerStatus } from "./container-status.js";
import { unary, type RuntimeHandlers } from "./rpc.js";

/** What the CRI front needs of the container back-end. */
export interface Containers {
  create(sandboxId: string, config: ContainerConfig): Promise<string>;
  start(id: string): Promise<void>;
  stop(id: string, timeoutSec: number): Promise<void>;
  remove(id: string): Promise<void>;
  status(id: string): ContainerInspection;
  statusInfo(r: ContainerRecord): Promise<Record<string, string>>;
  list(filter: ContainerListFilter): readonly ContainerRecord[];
  updateResources(id: string, linux: LinuxContainerResources | undefined, annotations: Record<string, string>): Promise<void>;
  reopenLog(id: string): Promise<void>;
}

function need(id: string, what = "container_id"): string {
  if (!id) throw new InvalidArgument(`${what} is required`);
  return id;
}

export function containerHandlers(c: Containers, log: Logger): Pick<RuntimeHandlers,
  "createContainer" | "startContainer" | "stopContainer" | "removeContainer" | "containerStatus" | "listContainers" | "updateContainerResources" | "reopenContainerLog"> {
  return {
    createContainer: unary(log, "CreateContainer", async (req) => {
      if (!req.config) throw new InvalidArgument("config is required");
      return { containerId: await c.create(need(req.podSandboxId, "pod_sandbox_id"), req.config) };
    }),
    startContainer: unary(log, "StartContainer", async (req) => {
      await c.start(need(req.containerId));
      return {};
    }),
    stopContainer: unary(log, "StopContainer", async (req) => {
      if (req.timeout < 0n) throw new InvalidArgument(`timeout ${req.timeout} must not be negative`);
      await c.stop(need(req.containerId), Number(req.timeout));
      return {};
    }),
    removeContainer: unary(log, "RemoveContainer", async (req) => {
      await c.remove(need(req.containerId));
      return {};
    }),
    containerStatus: unary(log, "ContainerStatus", async (req) => {
      const { record, user } = c.status(need(req.containerId));
      return { status: toContainerStatus(record, user), info: req.verbose ? await c.statusInfo(record) : {} };
    }),
    listContainers: unary(log, "ListContainers", async (req) => ({ containers: c.list(containerListFilter(req.filter)).map(toContainerItem) })),
    updateContainerResources: unary(log, "UpdateContainerResources", async (req) => {
      if (req.linux) validateResources(req.linux);
      await c.updateResources(need(req.containerId), req.linux, req.annotations ?? {});
      return {};
    }),
    reopenContainerLog: unary(log, "ReopenContainerLog", async (req) => {
      await c.reopenLog(need(req.containerId));
      return {};
    }),
  };
}
