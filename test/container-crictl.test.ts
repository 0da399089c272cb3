// crictl create / start / ps / inspect / logs / exec -s / stats / update / stop / rm against a
// real berthd (bridge bctr1, 10.90.1.0/24). Needs env CRICTL (e.g. /work/tools/v1.29.0/crictl).
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { CRICTL_SKIP, crictlFor } from "./harness/crictl.js";
import { startBerthd, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { deleteBridge, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bctr1";

describe("crictl drives containers", { skip: CRICTL_SKIP }, () => {
  let d: Berthd;
  let reg: TestRegistry;
  let dir: string;
  let image: string;
  const { run: crictl, ok } = crictlFor(() => d.socket, { imageEndpoint: true });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-ctr-crictl-"));
    reg = await startRegistry();
    await pushImage(reg, "crictl/busybox", { layers: [{ entries: await busyboxEntries(["sh", "echo", "sleep", "cat", "id", "yes", "head"]) }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/crictl/busybox:1`;
    await writeBridgeConflist(dir, BRIDGE, "10.90.1.0/24");
    d = await startBerthd({ dir });
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await rm(dir, { recursive: true, force: true });
  });

  test("create, start, ps, inspect, logs, exec -s, stats, update, stop, rm", async () => {
    const podFile = path.join(dir, "pod.json");
    const ctrFile = path.join(dir, "ctr.json");
    await writeFile(podFile, JSON.stringify({
      metadata: { name: "crictl-ctr-pod", namespace: "default", uid: "crictl-ctr-uid", attempt: 0 },
      log_directory: path.join(dir, "logs"),
      linux: { cgroup_parent: "/berth-test-ctr", security_context: { namespace_options: { pid: 1 } } },
    }));
    await writeFile(ctrFile, JSON.stringify({
      metadata: { name: "busy" },
      image: { image },
      command: ["sh", "-c", "echo hello from crictl; sleep 300"],
      log_path: "busy.log",
      labels: { app: "busy" },
      linux: { resources: { memory_limit_in_bytes: 67108864 } },
    }));
    await ok("pull", image);
    const pod = await ok("runp", podFile);
    const id = await ok("create", pod, ctrFile, podFile);
    assert.match(id, /^[0-9a-f]{64}$/);
    assert.match(await ok("ps", "-a"), /busy\s+0\s/);
    await ok("start", id);
    assert.equal(await ok("ps", "-q", "--label", "app=busy"), id);
    assert.match(await ok("ps", "--state", "running"), /Running/);
    const inspect = JSON.parse(await ok("inspect", id));
    assert.equal(inspect.status.state, "CONTAINER_RUNNING");
    assert.equal(inspect.status.metadata.name, "busy");
    assert.ok(inspect.info.pid > 0);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await ok("logs", id), "hello from crictl");
    assert.equal(await ok("exec", "-s", id, "echo", "exec-ok"), "exec-ok");
    const stats = JSON.parse(await ok("stats", "-o", "json", id));
    assert.equal(stats.stats[0].attributes.id, id);
    assert.ok(Number(stats.stats[0].memory.workingSetBytes.value) > 0);
    await ok("update", "--memory", "33554432", id);
    const after = JSON.parse(await ok("inspect", id));
    assert.equal(String(after.status.resources.linux.memoryLimitInBytes), "33554432");
    const t0 = Date.now();
    await ok("stop", "--timeout", "1", id);
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(JSON.parse(await ok("inspect", id)).status.state, "CONTAINER_EXITED");
    await ok("rm", id);
    assert.equal(await ok("ps", "-a", "-q"), "");
    await ok("stopp", pod);
    await ok("rmp", pod);
  });
});
