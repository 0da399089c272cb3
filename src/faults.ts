// Fault injection for crash-recovery tests: named points between the steps of the RPCs
// that change the host. When env BERTH_FAULT_AT names a point, berthd kills itself with
// SIGKILL there: a real kill -9 (no exception, no finally blocks, no flushed logs), so the
// tests see exactly what a crash at that step leaves behind. docs/recovery.md lists them.
import { writeSync } from "node:fs";

export const FAULT_POINTS = [
  "RunPodSandbox.after-record",
  "RunPodSandbox.after-netns",
  "RunPodSandbox.after-sysctls",
  "RunPodSandbox.after-shm",
  "RunPodSandbox.after-files",
  "RunPodSandbox.after-cni-add",
  "RunPodSandbox.after-network",
  "RunPodSandbox.after-hosts",
  "RunPodSandbox.after-infra",
  "RunPodSandbox.after-ready",
  "StopPodSandbox.after-containers",
  "StopPodSandbox.after-record",
  "StopPodSandbox.after-cni-del",
  "StopPodSandbox.after-shm-unmount",
  "StopPodSandbox.after-unpin",
  "RemovePodSandbox.after-containers",
  "RemovePodSandbox.after-cni-del",
  "RemovePodSandbox.after-shm-unmount",
  "RemovePodSandbox.after-unpin",
  "RemovePodSandbox.after-files",
  "RemovePodSandbox.after-record-delete",
  "CreateContainer.after-volumes",
  "CreateContainer.after-snapshot",
  "CreateContainer.after-record",
  "CreateContainer.after-conmon",
  "CreateContainer.after-created",
  "StartContainer.after-runc-start",
  "StartContainer.after-record",
  "StopContainer.after-signal",
  "StopContainer.after-kill",
  "RemoveContainer.after-runc-delete",
  "RemoveContainer.after-files",
  "RemoveContainer.after-record-delete",
  "PullImage.after-layer-unpack",
  "PullImage.after-layer-dir",
  "PullImage.after-layer-record",
  "PullImage.after-layers",
  "PullImage.after-blobs",
  "PullImage.after-record",
] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

/** The point BERTH_FAULT_AT names, and whether berth knows it (a typo would never fire). */
export function faultTarget(): { name: string; known: boolean } | undefined {
  const name = process.env.BERTH_FAULT_AT;
  if (!name) return undefined;
  return { name, known: (FAULT_POINTS as readonly string[]).includes(name) };
}

/** Kills berthd with SIGKILL when BERTH_FAULT_AT is `name`; otherwise returns at once. */
export async function faultPoint(name: FaultPoint): Promise<void> {
  if (process.env.BERTH_FAULT_AT !== name) return;
  // Synchronous on purpose: nothing after this line runs, so the note must be out first.
  writeSync(2, `berthd: fault point ${name} reached (BERTH_FAULT_AT): kill -9 self\n`);
  process.kill(process.pid, "SIGKILL");
  await new Promise<never>(() => undefined);
}
