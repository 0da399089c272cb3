// The start-up warm-up (src/grpc/warmup.ts, wired in daemon.ts): berthd sends itself read-only
// calls on a private socket right after start. They must not show in its logs or RPC metrics,
// kubelet's calls must be answered while it runs, and the socket must be gone afterwards.
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";

describe("start-up warm-up", () => {
  let d: Berthd;
  before(async () => {
    d = await startBerthd({ config: "warmup_calls = 1200\n" });
  });
  after(async () => {
    await d.cleanup();
  });

  test("answers calls while it runs, logs one summary line and none of its calls, then removes its socket", async () => {
    // Right after start: the warm-up is still running (1200 calls take longer than this).
    const during = await d.cri.runtime.version({}, { timeoutMs: 5000 });
    assert.equal(during.runtimeName, "berth");
    const line = await waitFor("the warm-up summary", async () => d.logs().split("\n").find((l) => l.includes("start-up warm-up done")), 30_000);
    const summary = JSON.parse(line) as { calls: number; ms: number; cpuMs: number };
    assert.equal(summary.calls, 1200);
    assert.ok(summary.cpuMs >= 0);
    const versionLines = d.logs().split("\n").filter((l) => l.includes('"method":"Version"'));
    assert.equal(versionLines.length, 1, `only the test's own Version call is logged, not the warm-up's 200:\n${versionLines.join("\n")}`);
    await assert.rejects(stat(d.layout.warmupSocket), { code: "ENOENT" });
  });
});
