import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import { IdleMemory } from "./idle-memory.js";
import { createLogger } from "./log.js";
import { trimMalloc } from "./native/native.js";

function counting(delayMs: number) {
  const seen = { gc: 0, trim: 0 };
  const idle = new IdleMemory({
    delayMs,
    gc: () => void seen.gc++,
    trim: () => (seen.trim++, trimMalloc()),
    log: createLogger("error"),
  });
  return { idle, seen };
}

describe("idle memory collection", () => {
  test("runs once, delayMs after the last state-changing call", async () => {
    const { idle, seen } = counting(150);
    try {
      idle.callDone("PullImage");
      await sleep(80);
      idle.callDone("CreateContainer");
      await sleep(100);
      assert.deepEqual(seen, { gc: 0, trim: 0 }, "a second call within the delay restarts it");
      await sleep(200);
      assert.deepEqual(seen, { gc: 1, trim: 1 });
      assert.equal(idle.runs, 1);
    } finally {
      idle.close();
    }
  });

  test("read-only calls (kubelet's polling) never trigger it", async () => {
    const { idle, seen } = counting(30);
    try {
      for (const m of ["ListContainers", "ListPodSandbox", "ContainerStatus", "ListContainerStats", "Version", "Status", "ImageFsInfo"]) idle.callDone(m);
      await sleep(120);
      assert.deepEqual(seen, { gc: 0, trim: 0 });
    } finally {
      idle.close();
    }
  });

  test("close cancels a pending collection; without --expose-gc it only trims", async () => {
    const { idle, seen } = counting(30);
    idle.callDone("RunPodSandbox");
    idle.close();
    await sleep(120);
    assert.deepEqual(seen, { gc: 0, trim: 0 });

    let trims = 0;
    const noGc = new IdleMemory({ delayMs: 10, gc: undefined, trim: () => (trims++, true), log: createLogger("error") });
    noGc.schedule();
    await sleep(120);
    noGc.close();
    assert.equal(trims, 1);
  });

  test("malloc_trim through the addon answers a boolean", () => {
    assert.equal(typeof trimMalloc(), "boolean");
  });
});
