// Start-up sweep of pod resources no sandbox record owns: namespace pins under <state>/ns,
// pod dirs (and their /dev/shm tmpfs) under <state>/pods, and CNI attachments whose result
// is cached under <root>/cni/results. They are left by a record that was quarantined as
// corrupt or by a crash between steps. Only entries named like a berth sandbox id are
// touched; anything else in those dirs is reported and left alone.
import { readdir } from "node:fs/promises";
import path from "node:path";
import { resultAddresses } from "../cni/config.js";
import type { PodNetwork } from "../cni/network.js";
import { causeChain } from "../errors.js";
import type { Logger } from "../log.js";
import type { StateLayout } from "../layout.js";
import { unmount } from "../image/mount.js";
import { isPinned, removePath, stageNetnsForTeardown, unpinNamespaces } from "./namespaces.js";

const SANDBOX_ID = /^[0-9a-f]{64}$/;

export interface SweepOptions {
  layout: StateLayout;
  /** Ids of every sandbox record (loaded or not: a record berth could read but ignored still owns its resources). */
  known: Set<string>;
  network: PodNetwork;
  log: Logger;
}

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}

/** Removes orphaned pod resources; returns the ids cleaned up. */
export async function sweepPodOrphans(opts: SweepOptions): Promise<string[]> {
  const { layout, known, network, log } = opts;
  const orphans = new Map<string, { result?: unknown; attached: boolean }>();
  const note = (id: string) => orphans.get(id) ?? orphans.set(id, { attached: false }).get(id)!;

  for (const dir of [layout.pins, layout.pods]) {
    for (const name of await entries(dir)) {
      if (!SANDBOX_ID.test(name)) {
        log.warn({ path: path.join(dir, name) }, "unknown entry in berth's pod state dir; left alone");
        continue;
      }
      if (!known.has(name)) note(name);
    }
  }
  const cached = await network.cachedAttachments();
  for (const file of cached.foreign) log.warn({ path: file }, "unknown file in the CNI result cache; left alone");
  for (const a of cached.attachments) {
    if (known.has(a.containerId)) continue;
    if (!SANDBOX_ID.test(a.containerId)) {
      log.warn({ containerId: a.containerId }, "cached CNI attachment of no sandbox and not named like one; left alone");
      continue;
    }
    Object.assign(note(a.containerId), { attached: true, result: a.result });
  }

  const cleaned: string[] = [];
  for (const [id, o] of orphans) {
    const nsDir = layout.pinDir(id);
    const podDir = layout.podDir(id);
    try {
      if (o.attached) {
        let netns = path.join(nsDir, "net");
        if (!(await isPinned(netns))) {
          // As for a pod whose pin vanished: plugins find their rules through eth0's addresses.
          const cidrs = resultAddresses(o.result);
          netns = cidrs.length ? await stageNetnsForTeardown(nsDir, "eth0", cidrs).catch(() => "") : "";
        }
        await network.tearDown({ containerId: id, netns, podName: "", podNamespace: "", podUid: "" });
      }
      await unmount(layout.podShm(id));
      await removePath(podDir);
      await unpinNamespaces(nsDir);
      cleaned.push(id);
      log.warn({ id, network: o.attached }, "removed the resources of a pod berth has no record of (orphaned netns pins, /dev/shm, CNI attachment, files)");
    } catch (err) {
      log.error({ id, err: causeChain(err) }, "cannot clean up an orphaned pod's resources; left for the next start");
    }
  }
  return cleaned;
}
