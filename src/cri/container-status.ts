// A container record (runtime/container-record.ts) as the CRI's messages say it: ContainerStatus
// and the ListContainers item, as cri/sandbox.ts does for pods.
import { ContainerState, ContainerStatus, type Container, type ContainerFilter } from "../gen/api.js";
import type { ContainerPhase, ContainerRecord } from "../runtime/container-record.js";
import type { ContainerListFilter, ProcessUser } from "../runtime/container.js";
import { stopSignalEnum } from "../runtime/stop-signal.js";

export function containerState(p: ContainerPhase): ContainerState {
  return p === "created" ? ContainerState.CONTAINER_CREATED : p === "running" ? ContainerState.CONTAINER_RUNNING : ContainerState.CONTAINER_EXITED;
}

function phaseOf(s: ContainerState): ContainerPhase | undefined {
  return s === ContainerState.CONTAINER_CREATED ? "created" : s === ContainerState.CONTAINER_RUNNING ? "running" : s === ContainerState.CONTAINER_EXITED ? "exited" : undefined;
}

/** ListContainers' filter in the back-end's words; a state no container has (UNKNOWN) matches none. */
export function containerListFilter(f: ContainerFilter | undefined): ContainerListFilter {
  if (!f) return {};
  const phase = f.state ? phaseOf(f.state.state) ?? "none" : undefined;
  return { id: f.id || undefined, podSandboxId: f.podSandboxId || undefined, labelSelector: f.labelSelector, phase };
}

/** The ids the container's spec gave its process (what status reports when the process is not read). */
export function specUser(r: ContainerRecord): ProcessUser {
  return { uid: BigInt(r.user.uid), gid: BigInt(r.user.gid), supplementalGroups: r.user.additionalGids.map(BigInt) };
}

function imageOf(r: ContainerRecord) {
  return { image: r.imageName, annotations: r.image.annotations, userSpecifiedImage: r.image.userSpecifiedImage || r.image.image, runtimeHandler: r.image.runtimeHandler, imageRef: r.image.imageRef ?? "" };
}

/** The record's fields that change after it is made: a status is reused while these (and the process's ids) are the same. */
const CHANGING = ["phase", "startedAt", "finishedAt", "exitCode", "reason", "message", "annotations", "resources"] as const;

const statuses = new WeakMap<ContainerRecord, { key: unknown[]; user: ProcessUser | undefined; status: ContainerStatus }>();

/**
 * A container's status from its record; `user` (the ids read from its process) defaults to the
 * ids its spec gave it. The same object while `changing` gives the same values (list-encoding.ts
 * then keeps its bytes: kubelet asks for every container's status again and again). Never
 * mutated once handed out.
 */
export function toContainerStatus(r: ContainerRecord, user?: ProcessUser): ContainerStatus {
  const m = statuses.get(r);
  // Compared in place: a reused status costs no allocation (PodSandboxStatus asks for every container of the pod).
  if (m && m.user === user && CHANGING.every((f, i) => m.key[i] === r[f])) return m.status;
  const status = buildContainerStatus(r, user ?? specUser(r));
  statuses.set(r, { key: CHANGING.map((f) => r[f]), user, status });
  return status;
}

function buildContainerStatus(r: ContainerRecord, user: ProcessUser): ContainerStatus {
  return ContainerStatus.fromPartial({
    id: r.id,
    metadata: r.metadata,
    state: containerState(r.phase),
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    exitCode: r.exitCode,
    image: imageOf(r),
    imageRef: r.imageRef,
    imageId: r.imageId,
    reason: r.reason,
    message: r.message,
    labels: r.labels,
    annotations: r.annotations,
    mounts: r.mounts,
    logPath: r.logPath,
    resources: r.resources ? { linux: r.resources } : undefined,
    user: { linux: user },
    stopSignal: stopSignalEnum(r.stopSignal),
  });
}

const listViews = new WeakMap<ContainerRecord, { state: ContainerState; annotations: Record<string, string>; labels: Record<string, string>; view: Container }>();

/**
 * A record's ListContainers entry: the same object until the container's state or
 * annotations change, so list-encoding.ts can keep its encoded bytes (kubelet lists every
 * container every second). Never mutated once handed out.
 */
export function toContainerItem(r: ContainerRecord): Container {
  const state = containerState(r.phase);
  const memo = listViews.get(r);
  if (memo && memo.state === state && memo.annotations === r.annotations && memo.labels === r.labels) return memo.view;
  const view: Container = {
    id: r.id,
    podSandboxId: r.sandboxId,
    metadata: r.metadata,
    image: imageOf(r),
    imageRef: r.imageRef,
    imageId: r.imageId,
    state,
    createdAt: r.createdAt,
    labels: r.labels,
    annotations: r.annotations,
  };
  listViews.set(r, { state, annotations: r.annotations, labels: r.labels, view });
  return view;
}
