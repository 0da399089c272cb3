// The contract between the pod (sandbox) layer and the container layer.
import type { NamespaceOption, PodSandboxMetadata } from "../gen/api.js";
import type { PodUserns } from "./userns.js";

export type SandboxState = "ready" | "notready";

/** What a container needs to know about the pod it joins. */
export interface SandboxRef {
  id: string;
  metadata: PodSandboxMetadata;
  state: SandboxState;
  /** Pinned namespaces (bind mounts under <state>); undefined when the pod uses the host's. */
  netnsPath?: string;
  ipcnsPath?: string;
  utsnsPath?: string;
  /** The pod's user namespace (pinned) and its mappings; undefined: the host's. */
  userns?: PodUserns & { path: string };
  /** /proc/<infra pid>/ns/pid when the pod shares a PID namespace (NamespaceMode.POD). */
  pidnsPath?: string;
  namespaceOptions: NamespaceOption;
  hostname: string;
  /** Files the pod's containers bind-mount. */
  resolvConfPath: string;
  hostsPath: string;
  hostnamePath: string;
  /** The pod's /dev/shm (a tmpfs, or the host's /dev/shm with host IPC). */
  shmPath: string;
  /** Absolute cgroup parent for the pod's containers (cgroupfs path or systemd slice). */
  cgroupParent: string;
  logDirectory: string;
  runtimeHandler: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Namespaced sysctls applied to every container of the pod. */
  sysctls: Record<string, string>;
  privileged: boolean;
}

export interface SandboxLookup {
  getSandbox(id: string): SandboxRef | undefined;
  /** Told when a pod's infra container exited on its own (its process or its conmon died). */
  infraExited?(sandboxId: string): void;
}

/** What the pod layer asks of the container layer when a pod stops or goes away. */
export interface PodContainers {
  /** Stops every container of the pod (SIGKILL after `timeoutSec`). */
  stopAll(sandboxId: string, timeoutSec: number): Promise<void>;
  /** Removes every container of the pod. */
  removeAll(sandboxId: string): Promise<void>;
}

/**
 * Runs the pod's infra (pause) container when the pod needs a process to hold its PID
 * namespace; implemented by the container layer (runc + conmon).
 */
export interface InfraContainers {
  start(sandbox: SandboxRef): Promise<{ pid: number; containerId: string }>;
  stop(sandboxId: string): Promise<void>;
  remove(sandboxId: string): Promise<void>;
}
