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
    await writeFile(path.join(dir, "early"), "0");
    const m = new ExitMonitor({
      dir,
      exited: (id) => import("node:fs/promises").then((fs) => fs.access(path.join(dir, id)).then(() => true, () => false)),
      monitorAlive: async (pid) => pid === 4343,
      record: (id) => records.find((r) => r.id === id),
      records: () => records,
      settle: async (r) => {
        settled.push(r.id);
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
    } finally {
      m.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
