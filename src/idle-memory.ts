// After a burst of work, berthd hands memory back. A pull, a pod start or a batch of container
// creates leave dead Buffers (socket reads, zlib and child-process output) on V8's heap and
// freed chunks in glibc's heap; V8 collects them when it next needs room and glibc keeps the
// freed pages, so the daemon's resident size stays at its peak for a long time. Once the work
// has been quiet for `delayMs`, one full GC frees the dead objects and malloc_trim returns the
// free pages to the kernel. Read-only calls (kubelet's relists, status, stats) do not count as
// work, so a kubelet polling every second does not keep this from running.
import type { Logger } from "./log.js";

export interface IdleMemoryOptions {
  delayMs: number;
  /** V8's full collection; undefined when node was started without --expose-gc. */
  gc: (() => void) | undefined;
  /** Returns free malloc pages to the kernel (the native addon's malloc_trim). */
  trim: () => boolean;
  log: Logger;
}

/** Calls that change state or move data: the ones worth collecting after. */
export const WORK_CALLS = new Set([
  "PullImage", "RemoveImage",
  "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox",
  "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
  "ExecSync", "UpdateContainerResources", "ReopenContainerLog",
  "Exec", "Attach", "PortForward", "CheckpointContainer",
]);

export class IdleMemory {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Collections run so far (for tests and the debug log). */
  runs = 0;

  constructor(private readonly o: IdleMemoryOptions) {}

  /** A call finished: `method` is its CRI name. */
  callDone(method: string): void {
    if (WORK_CALLS.has(method)) this.schedule();
  }

  /** Collects once nothing has scheduled again for `delayMs` (also after start-up and recovery). */
  schedule(): void {
    if (this.closed) return;
    if (this.timer) this.timer.refresh();
    else {
      this.timer = setTimeout(() => this.collect(), this.o.delayMs);
      this.timer.unref();
    }
  }

  private collect(): void {
    this.timer = undefined;
    const before = process.memoryUsage.rss();
    const started = process.hrtime.bigint();
    this.o.gc?.();
    const gcMs = Number(process.hrtime.bigint() - started) / 1e6;
    // V8 frees ArrayBuffer memory on a background sweeper after the collection itself:
    // trim a moment later so those chunks are back in malloc's free lists.
    setTimeout(() => {
      const released = this.o.trim();
      this.runs++;
      this.o.log.debug({ rssBefore: before, rssAfter: process.memoryUsage.rss(), fullGc: this.o.gc !== undefined, gcMs, released }, "idle memory collection");
    }, 50).unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
