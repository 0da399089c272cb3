// What berth keeps about a container, in the crash-safe record store: enough to answer every
// status call and to find the live container again after a berthd restart (conmon pid, bundle,
// exit file, runtime root).
import type { ContainerMetadata, ImageSpec, LinuxContainerResources, Mount } from "../gen/api.js";
import type { OciProcess } from "./spec.js";

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
