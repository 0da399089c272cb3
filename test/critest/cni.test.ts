import assert from "node:assert/strict";
import { test } from "node:test";
import { conflist } from "./cni.js";

test("conflist: bridge with host-local in the run's dir, then portmap and loopback", () => {
  const c = JSON.parse(conflist({ name: "berth-critest", bridge: "bcrit0", subnet: "10.93.0.0/16", dataDir: "/tmp/x/ipam" }));
  assert.equal(c.name, "berth-critest");
  assert.deepEqual(c.plugins.map((p: { type: string }) => p.type), ["bridge", "portmap", "loopback"]);
  assert.equal(c.plugins[0].bridge, "bcrit0");
  assert.deepEqual(c.plugins[0].ipam.ranges, [[{ subnet: "10.93.0.0/16" }]]);
  assert.equal(c.plugins[0].ipam.dataDir, "/tmp/x/ipam");
  assert.deepEqual(c.plugins[1].capabilities, { portMappings: true });
});
