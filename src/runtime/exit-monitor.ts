// Notices containers ending: conmon writes <exits>/<id> when a container exits, and that dir is
// watched, so status calls answer from memory. Each live container's conmon is watched too (a
// pidfd on the event loop): a conmon killed before it could write the exit file is noticed when
// it dies, not by a check on every ContainerStatus. A periodic sweep catches what the watches
// miss (an inotify overflow, a conmon whose watch could not be set up). What an exit means for
// the record is the lifecycle's business (`settle`); this module only says when to look.
import { watch, type FSWatcher } from "node:fs";
import { readdir } from "node:fs/promises";
import type { Logger } from "../log.js";
import type { ContainerRecord } from "./container-record.js";

/** How often running containers are checked for a conmon that died without an exit file. */
const SWEEP_INTERVAL_MS = 5_000;

export interface ExitMonitorDeps {
  /** conmon's exit dir. */
  dir: string;
  /** True once the container's exit file exists. */
  exited(id: string): Promise<boolean>;
  /** True while `pid` is a live conmon. */
  monitorAlive(pid: number): Promise<boolean>;
  /** Calls `onGone` once conmon `pid` dies; returns the cancel, or undefined if no live conmon has that pid. */
  watchMonitor(pid: number, onGone: () => void): (() => void) | undefined;
  /** The record of `id`, if any. */
  record(id: string): ContainerRecord | undefined;
  /** Every record. */
  records(): ContainerRecord[];
  /** Brings a record up to date from its exit file. */
  settle(r: ContainerRecord): Promise<void>;
  log: Logger;
}

export class ExitMonitor {
  private watcher: FSWatcher | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private readonly waiters = new Map<string, Set<() => void>>();
  /** The conmon watch of each live container, by id: its cancel. */
  private readonly monitors = new Map<string, () => void>();

  constructor(private readonly d: ExitMonitorDeps) {}

  /** Watches the exit dir, then settles the exits that happened while berthd was down. */
  async start(): Promise<void> {
    this.watcher = watch(this.d.dir, (_event, file) => {
      if (!file) return;
      const id = String(file);
      this.wake(id);
      const r = this.d.record(id);
      if (r && r.phase !== "exited") void this.d.settle(r);
    });
    this.watcher.on("error", (err) => this.d.log.warn({ err: String(err) }, "exit dir watch failed; relying on the periodic sweep"));
    // The watch is up first, so no exit slips between.
    await this.sweep();
    for (const r of this.d.records()) this.watch(r);
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
  }

  close(): void {
    this.watcher?.close();
    clearInterval(this.sweeper);
    for (const cancel of this.monitors.values()) cancel();
    this.monitors.clear();
  }

  /**
   * Watches a live container's conmon (once it has one): its death settles the record at once.
   * A conmon already gone settles it now. Watching a watched record again does nothing.
   */
  watch(r: ContainerRecord): void {
    if (r.phase === "exited" || r.conmonPid <= 0 || this.monitors.has(r.id)) return;
    const settle = () => {
      this.monitors.delete(r.id);
      if (this.d.record(r.id) === r) void this.d.settle(r);
    };
    let cancel: (() => void) | undefined;
    try {
      cancel = this.d.watchMonitor(r.conmonPid, settle);
    } catch (err) {
      // No pidfds (a kernel before 5.3): the sweep still notices a dead conmon.
      this.d.log.warn({ id: r.id, err: String(err) }, "cannot watch the container's conmon; its death is noticed by the periodic sweep");
      return;
    }
    if (cancel) this.monitors.set(r.id, cancel);
    else settle();
  }

  /** Stops watching a container's conmon (the record is going). */
  unwatch(id: string): void {
    this.monitors.get(id)?.();
    this.monitors.delete(id);
  }

  /** Wakes whoever waits for `id` to exit. */
  wake(id: string): void {
    for (const w of this.waiters.get(id) ?? []) w();
  }

  /** Waits up to `ms` for the container's exit file. */
  async waitExit(id: string, ms: number): Promise<boolean> {
    let wake!: () => void;
    const set = this.waiters.get(id) ?? new Set();
    this.waiters.set(id, set);
    const until = Date.now() + ms;
    try {
      for (;;) {
        // Listening before looking: a file written in between still wakes this wait.
        const woke = new Promise<void>((res) => {
          wake = res;
          set.add(wake);
        });
        if (await this.d.exited(id)) return true;
        if (Date.now() >= until) return false;
        await Promise.race([woke, new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, until - Date.now()))))]);
        set.delete(wake);
      }
    } finally {
      set.delete(wake);
      if (set.size === 0) this.waiters.delete(id);
    }
  }

  /** Settles every live container whose exit file exists or whose conmon is gone. */
  private async sweep(): Promise<void> {
    const exitNames = new Set(await readdir(this.d.dir).catch(() => [] as string[]));
    await Promise.all(this.d.records().filter((r) => r.phase !== "exited").map(async (r) => {
      // A watched conmon reports its own death; /proc is read only for one without a watch.
      if (exitNames.has(r.id) || (r.conmonPid > 0 && !this.monitors.has(r.id) && !(await this.d.monitorAlive(r.conmonPid)))) await this.d.settle(r);
    }));
    // A watch ends when its conmon dies or its record is removed (unwatch); this drops any left by a record that went another way.
    for (const id of [...this.monitors.keys()]) if (!this.d.record(id)) this.unwatch(id);
  }
}
