// A reduced storm in `make test` (the full one is `make storm`, test/soak/storm.ts): 20 pods,
// 40 containers and 10 listing clients at once, then the teardown: every call succeeds or fails
// with a clear status, nothing leaks, RSS returns near idle, no call waits longer than the
// phase's slowest serial call times the calls in flight. Bridge bfst1 (10.207.4.0/24).
import assert from "node:assert/strict";
import { test } from "node:test";
import { runStorm } from "./soak/storm.js";

test("a burst of 20 pods, 40 containers and 10 listing clients, then its teardown", async () => {
  const lines: string[] = [];
  const passed = await runStorm({
    pods: 20, containers: 40, clients: 10,
    bridge: "bfst1", subnet: "10.207.4.0/24", cgroupParent: "/berth-faults-storm-small",
    log: (line) => {
      lines.push(line);
      process.stderr.write(`# ${line}\n`);
    },
  });
  assert.ok(passed, lines.join("\n"));
});
