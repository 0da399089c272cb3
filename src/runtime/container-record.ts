// What berth keeps about a container, in the crash-safe record store: enough to answer every
// status call and to find the live container again after a berthd restart (conmon pid, bundle,
// exit file, runtime root).
import type { ContainerConfig, ContainerMetadata, ImageSpec, LinuxContainerResources, Mount } from "../gen/api.js";
import type { Image } from "../image/types.js";
import type { OciProcess, OciSpec } from "./spec.js";
import { stopSignalName } from "./stop-signal.js";
import type { SandboxRef } from "./types.js";

export type ContainerPhase = "created" | "running" | "exited";

export interface ContainerRecord {
  id: string;
  sandboxId: string;
  /** "container" for CRI containers, "infra" for a pod's pause container (never listed). */
  kind: "container" | "infra";
  /** The unique name kubelet's metadata maps to (name_pod_namespace_uid_attempt). */
  name: string;
  metadata: ContainerMetadata;
  /** The image as the request named it, and the resolved image. */
  image: ImageSpec;
  imageId: string;
  imageRef: string;
  imageName: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  mounts: Mount[];
  /** IDs of the images mounted as volumes (held: RemoveImage refuses them while the container exists). */
  imageVolumes?: string[];
  logPath: string;
  tty: boolean;
  stdin: boolean;
  stdinOnce: boolean;

  phase: ContainerPhase;
  createdAt: bigint;
  startedAt: bigint;
  finishedAt: bigint;
  exitCode: number;
  reason: string;
  message: string;

  handler: string;
  runtimeRoot: string;
  bundle: string;
  rootfs: string;
  exitFile: string;
  socketLink: string;
  cgroupsPath: string;
  conmonPid: number;
  pid: number;
  /** The container process's start time (/proc/PID/stat), so a stop signal never reaches a reused pid. */
  pidStartTime?: string;

  resources: LinuxContainerResources | undefined;
  user: { uid: number; gid: number; additionalGids: number[] };
  /** Signal name runc kill gets first on stop (image StopSignal or the config's, else SIGTERM). */
  stopSignal: string;
  /** The container's process, the base of every ExecSync. */
  process: OciProcess;
}

/** What CreateContainer knows once the spec is built: everything a new record is made of. */
export interface NewRecord extends Pick<ContainerRecord,
  "id" | "kind" | "name" | "imageName" | "logPath" | "handler" | "runtimeRoot" | "bundle" | "rootfs" | "exitFile" | "socketLink" | "cgroupsPath" | "user" | "createdAt"> {
  sandbox: SandboxRef;
  config: ContainerConfig;
  image: Image;
  /** Images mounted as volumes (kept only when there are some). */
  imageVolumes: string[];
  spec: OciSpec;
}

/** A CREATED container's record, before conmon reports its pids. */
export function newContainerRecord(n: NewRecord): ContainerRecord {
  const { config, image } = n;
  return {
    id: n.id, sandboxId: n.sandbox.id, kind: n.kind, name: n.name,
    metadata: config.metadata!,
    image: { ...config.image!, annotations: config.image!.annotations ?? {} },
    imageId: image.id,
    imageRef: image.repoDigests[0] ?? image.id,
    imageName: n.imageName,
    labels: { ...config.labels },
    annotations: { ...config.annotations },
    mounts: config.mounts,
    imageVolumes: n.imageVolumes.length > 0 ? n.imageVolumes : undefined,
    logPath: n.logPath,
    tty: config.tty, stdin: config.stdin, stdinOnce: config.stdinOnce,
    phase: "created",
    createdAt: n.createdAt, startedAt: 0n, finishedAt: 0n, exitCode: 0, reason: "", message: "",
    handler: n.handler,
    runtimeRoot: n.runtimeRoot,
    bundle: n.bundle, rootfs: n.rootfs, exitFile: n.exitFile,
    socketLink: n.socketLink,
    cgroupsPath: n.cgroupsPath,
    conmonPid: 0, pid: 0,
    resources: config.linux?.resources,
    user: { uid: n.user.uid, gid: n.user.gid, additionalGids: n.user.additionalGids },
    stopSignal: stopSignalName(config.stopSignal, image.config.config?.StopSignal),
    process: n.spec.process,
  };
}
