// RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox.
import { PodSandboxConfig, PodSandboxState, type PodSandbox, type PodSandboxFilter, type PodSandboxStatus } from "../gen/api.js";
import { InvalidArgument } from "../errors.js";
import type { Logger } from "../log.js";
import type { SandboxFilter, SandboxRecord } from "../runtime/sandbox.js";
import type { ContainerInspection } from "../runtime/container.js";
import { toContainerStatus } from "./container-status.js";
import { callerGone, unary, type RuntimeHandlers } from "./rpc.js";

/** What the CRI front needs of the pod sandbox back-end. */
export interface PodSandboxes {
  run(config: PodSandboxConfig | undefined, runtimeHandler: string, callerGone?: AbortSignal): Promise<string>;
  stop(id: string): Promise<void>;
  remove(id: string): Promise<void>;
  get(id: string): SandboxRecord;
  list(filter: SandboxFilter): SandboxRecord[];
}

const state = (rec: SandboxRecord) => (rec.state === "ready" ? PodSandboxState.SANDBOX_READY : PodSandboxState.SANDBOX_NOTREADY);

/** What PodSandboxStatus needs of the container back-end: the pod's containers as ContainerStatus (verbose = false). */
export interface PodContainerRecords {
  /** What ContainerStatus reports of each of a pod's CRI containers (not its infra container), from memory. */
  statusesOf(sandboxId: string): ContainerInspection[];
}

const statuses = new WeakMap<SandboxRecord, { state: PodSandboxState; network: SandboxRecord["network"]; detached: boolean; status: PodSandboxStatus }>();

/**
 * A pod's PodSandboxStatus: the same object while its state and network stay the same (the
 * rest of the record is fixed at RunPodSandbox), so its encoded bytes are reused. Never
 * mutated once handed out.
 */
export function toStatus(rec: SandboxRecord): PodSandboxStatus {
  const m = statuses.get(rec);
  const st = state(rec);
  if (m && m.state === st && m.network === rec.network && m.detached === rec.networkDetached) return m.status;
  const status = buildStatus(rec);
  statuses.set(rec, { state: st, network: rec.network, detached: rec.networkDetached, status });
  return status;
}

function buildStatus(rec: SandboxRecord): PodSandboxStatus {
  // Like containerd: a pod whose network is torn down reports no IP.
  const ips = rec.networkDetached ? [] : rec.network?.ips ?? [];
  return {
    id: rec.id,
    metadata: rec.metadata,
    state: state(rec),
    createdAt: rec.createdAt,
    network: { ip: ips[0] ?? "", additionalIps: ips.slice(1).map((ip) => ({ ip })) },
    linux: { namespaces: { options: rec.namespaceOptions } },
    labels: rec.config.labels,
    annotations: rec.config.annotations,
    runtimeHandler: rec.requestedHandler ?? rec.runtimeHandler,
  };
}

function verboseInfo(rec: SandboxRecord): string {
  return JSON.stringify({
    pid: rec.infra?.pid ?? 0,
    infraContainerId: rec.infra?.containerId ?? "",
    netNamespacePath: rec.netnsPath ?? "",
    netNamespaceClosed: rec.networkDetached,
    ipcNamespacePath: rec.ipcnsPath ?? "",
    utsNamespacePath: rec.utsnsPath ?? "",
    hostname: rec.hostname,
    resolvConfPath: rec.resolvConfPath,
    hostsPath: rec.hostsPath,
    shmPath: rec.shmPath,
    cgroupParent: rec.cgroupParent,
    sysctls: rec.sysctls,
    runtimeHandler: rec.runtimeHandler,
    cniNetwork: rec.network?.name ?? "",
    cniResult: rec.network?.result ?? null,
    config: PodSandboxConfig.toJSON(rec.config),
  });
}

const listItems = new WeakMap<SandboxRecord, PodSandbox>();

/**
 * A pod's ListPodSandbox entry: the same object while its state stays the same, so its
 * encoded bytes are reused (list-encoding.ts). Never mutated once handed out.
 */
export function toListItem(rec: SandboxRecord): PodSandbox {
  const memo = listItems.get(rec);
  if (memo && memo.state === state(rec)) return memo;
  const item: PodSandbox = {
    id: rec.id,
    metadata: rec.metadata,
    state: state(rec),
    createdAt: rec.createdAt,
    labels: rec.config.labels,
    annotations: rec.config.annotations,
    runtimeHandler: rec.requestedHandler ?? rec.runtimeHandler,
  };
  listItems.set(rec, item);
  return item;
}

/** ListPodSandbox's filter in the back-end's terms (StreamPodSandboxes uses it too). */
export function sandboxFilter(f: PodSandboxFilter | undefined): SandboxFilter {
  const filter: SandboxFilter = {};
  if (f?.id) filter.id = f.id;
  if (f?.state) {
    if (f.state.state !== PodSandboxState.SANDBOX_READY && f.state.state !== PodSandboxState.SANDBOX_NOTREADY) throw new InvalidArgument(`filter.state.state ${f.state.state} is not SANDBOX_READY or SANDBOX_NOTREADY`);
    filter.state = f.state.state === PodSandboxState.SANDBOX_READY ? "ready" : "notready";
  }
  if (f && Object.keys(f.labelSelector).length) filter.labelSelector = f.labelSelector;
  return filter;
}

export function sandboxHandlers(pods: PodSandboxes, containers: PodContainerRecords, log: Logger): Pick<RuntimeHandlers, "runPodSandbox" | "stopPodSandbox" | "removePodSandbox" | "podSandboxStatus" | "listPodSandbox"> {
  return {
    runPodSandbox: unary(log, "RunPodSandbox", async (req, call) => ({ podSandboxId: await pods.run(req.config, req.runtimeHandler, callerGone(call)) })),

    stopPodSandbox: unary(log, "StopPodSandbox", async (req) => {
      await pods.stop(req.podSandboxId);
      return {};
    }),

    removePodSandbox: unary(log, "RemovePodSandbox", async (req) => {
      await pods.remove(req.podSandboxId);
      return {};
    }),

    podSandboxStatus: unary(log, "PodSandboxStatus", async (req) => {
      if (req.podSandboxId === "") throw new InvalidArgument("pod_sandbox_id is required");
      const rec = pods.get(req.podSandboxId);
      return {
        status: toStatus(rec),
        info: (req.verbose ? { info: verboseInfo(rec) } : {}) as Record<string, string>,
        // Evented PLEG takes the pod's containers from here whenever timestamp is set.
        containersStatuses: containers.statusesOf(rec.id).map((i) => toContainerStatus(i.record, i.user)),
        timestamp: BigInt(Date.now()) * 1_000_000n,
      };
    }),

    listPodSandbox: unary(log, "ListPodSandbox", async (req) => ({ items: pods.list(sandboxFilter(req.filter)).map(toListItem) })),
  };
}
