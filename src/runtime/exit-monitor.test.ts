import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import type { Logger } from "../log.js";
import type { ContainerRecord } from "./container-record.js";
import { ExitMonitor } from "./exit-monitor.js";

const log = { warn: () => undefined } as unknown as Logger;

test("the exit monitor settles exits found at start and written later, and wakes waiters", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-exits-"));
  try {
    const rec = (id: string, conmonPid = 0) => ({ id, phase: "running", conmonPid }) as ContainerRecord;
    const early = rec("early");
    const late = rec("late");
    const orphaned = rec("monitor-gone", 4242);
    const quiet = rec("quiet", 4343);
    const records = [early, late, orphaned, quiet];
    const settled: string[] = [];
    let killQuiet: (() => void) | undefined;
    let cancelled = false;
    await writeFile(path.join(dir, "early"), "0");
    const m = new ExitMonitor({
      dir,
      exited: (id) => import("node:fs/promises").then((fs) => fs.access(path.join(dir, id)).then(() => true, () => false)),
      monitorAlive: async (pid) => pid === 4343,
      // The real watch is tested in oci/runtimes.test.ts; here, a conmon that dies on cue.
      watchMonitor: (pid, onGone) => {
        if (pid !== 4343) return undefined;
        killQuiet = onGone;
        return () => (cancelled = true);
      },
      record: (id) => records.find((r) => r.id === id),
      records: () => records,
      settle: async (r) => {
        settled.push(r.id);
        r.phase = "exited";
      },
      log,
    });
    await m.start();
    try {
      assert.deepEqual(settled.sort(), ["early", "monitor-gone"], "an exit file, or a conmon that is gone, is settled at start");
      assert.equal(await m.waitExit("late", 50), false, "no exit file: the wait times out");
      const waiting = m.waitExit("late", 10_000);
      await writeFile(path.join(dir, "late"), "3");
      assert.equal(await waiting, true);
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(settled.includes("late"), "the watch settles a container whose exit file appears");
      assert.ok(!settled.includes("quiet"), "a live container is left alone");
      killQuiet?.();
      assert.ok(settled.includes("quiet"), "its conmon's death settles it at once");
      const other = rec("other", 4343);
      records.push(other);
      m.watch(other);
      m.unwatch("other");
      assert.equal(cancelled, true, "unwatch cancels the watch");
    } finally {
      m.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
