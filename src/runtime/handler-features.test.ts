// Which handler features berth reports: recursive read-only mounts need Linux 5.12 and "rro".
import assert from "node:assert/strict";
import { release } from "node:os";
import { test } from "node:test";
import { handlerFeatures, kernelAtLeast, probeHandlerFeatures } from "./handler-features.js";

test("kernel release comparison", () => {
  assert.equal(kernelAtLeast("5.12.0-1-amd64", 5, 12), true);
  assert.equal(kernelAtLeast("5.11.22", 5, 12), false);
  assert.equal(kernelAtLeast("6.1.0", 5, 12), true);
  assert.equal(kernelAtLeast("4.19.0", 5, 12), false);
  assert.equal(kernelAtLeast("weird", 5, 12), false);
});

test("rro needs both the kernel and the runtime's mount option", () => {
  assert.deepEqual(handlerFeatures("6.1.0", ["ro", "rro"]), { recursiveReadOnlyMounts: true });
  assert.deepEqual(handlerFeatures("5.10.0", ["ro", "rro"]), { recursiveReadOnlyMounts: false });
  assert.deepEqual(handlerFeatures("6.1.0", ["ro", "rbind"]), { recursiveReadOnlyMounts: false });
  assert.deepEqual(handlerFeatures("6.1.0", undefined), { recursiveReadOnlyMounts: false });
});

test("the real runc here (1.1.5, `runc features`) on this kernel", async () => {
  const want = kernelAtLeast(release(), 5, 12);
  assert.deepEqual(await probeHandlerFeatures("runc"), { recursiveReadOnlyMounts: want });
  // A binary without a `features` command (runc 1.0, or not a runtime at all) reports nothing.
  assert.deepEqual(await probeHandlerFeatures("/bin/false"), { recursiveReadOnlyMounts: false });
});
