// crictl runp / pods / inspectp / stopp / rmp against a real berthd (bridge bpod3, 10.89.3.0/24).
// Needs env CRICTL (a cri-tools crictl binary, e.g. /work/tools/v1.29.0/crictl).
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { CRICTL_SKIP, crictlFor } from "./harness/crictl.js";
import { startBerthd, type Berthd } from "./harness/berthd.js";
import { bridgePorts, deleteBridge, mountsUnder, sh, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bpod3";

describe("crictl drives pod sandboxes", { skip: CRICTL_SKIP }, () => {
  let d: Berthd;
  let dir: string;
  const { run: crictl, ok } = crictlFor(() => d.socket);

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-crictl-"));
    await writeBridgeConflist(dir, BRIDGE, "10.89.3.0/24");
    d = await startBerthd({ dir });
  });

  after(async () => {
    if (d) {
      for (const p of (await d.cri.runtime.listPodSandbox({}).catch(() => ({ items: [] }))).items) {
        await d.cri.runtime.removePodSandbox({ podSandboxId: p.id }).catch(() => undefined);
      }
      await d.cleanup();
    }
    await deleteBridge(BRIDGE);
    await rm(dir, { recursive: true, force: true });
  });

  test("runp, pods, inspectp, stopp, rmp", async () => {
    const podFile = path.join(dir, "pod.json");
    await writeFile(podFile, JSON.stringify({
      metadata: { name: "crictl-pod", namespace: "default", uid: "crictl-uid-1", attempt: 1 },
      hostname: "crictl-pod",
      log_directory: path.join(dir, "logs"),
      dns_config: { servers: ["10.10.10.10"], searches: ["google.com"], options: ["ndots:8"] },
      port_mappings: [{ protocol: 0, container_port: 80, host_port: 18060 }],
      labels: { app: "crictl" },
      annotations: { "berth.test": "yes" },
      linux: { sysctls: { "net.ipv4.ip_unprivileged_port_start": "80" }, security_context: { namespace_options: { pid: 1 } } },
    }));
    const id = await ok("runp", podFile);
    assert.match(id, /^[0-9a-f]{64}$/);

    assert.deepEqual((await ok("pods", "-q")).split("\n"), [id]);
    assert.equal(await ok("pods", "-q", "--label", "app=crictl"), id);
    assert.equal(await ok("pods", "-q", "--label", "app=other"), "");
    assert.equal(await ok("pods", "-q", "--name", "crictl-pod", "--namespace", "default", "--state", "ready"), id);
    assert.equal(await ok("pods", "-q", "--id", id.slice(0, 13)), id);
    const table = await ok("pods");
    assert.match(table, /crictl-pod\s+default\s+1\s+\(default\)/);
    assert.match(table, /Ready/);

    const inspect = JSON.parse(await ok("inspectp", id.slice(0, 12))) as { status: any; info: any };
    assert.equal(inspect.status.id, id);
    assert.equal(inspect.status.state, "SANDBOX_READY");
    assert.match(inspect.status.network.ip, /^10\.89\.3\.\d+$/);
    assert.equal(inspect.status.metadata.name, "crictl-pod");
    assert.equal(inspect.status.labels.app, "crictl");
    assert.equal(inspect.status.annotations["berth.test"], "yes");
    assert.equal(inspect.status.linux.namespaces.options.pid, "CONTAINER");
    const info = inspect.info.info ?? inspect.info;
    assert.ok(info.netNamespacePath.startsWith(d.state), JSON.stringify(inspect.info));
    assert.equal(info.cniResult.ips[0].address.split("/")[0], inspect.status.network.ip);
    assert.equal(await readFile(info.resolvConfPath, "utf8"), "search google.com\nnameserver 10.10.10.10\noptions ndots:8\n");
    assert.equal((await sh("nsenter", [`--net=${info.netNamespacePath}`, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"])).stdout.trim(), "80");

    // a second runp of the same pod config is refused (name reserved)
    const dup = await crictl("runp", podFile);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /reserved for/);
    const badHandler = await crictl("runp", "--runtime", "nope", podFile);
    assert.notEqual(badHandler.code, 0);
    assert.match(badHandler.stderr, /InvalidArgument.*runtime_handler \\+"nope\\+" is not configured/);

    await ok("stopp", id);
    await ok("stopp", id);
    assert.equal(await ok("pods", "-q", "--state", "notready"), id);
    const stopped = JSON.parse(await ok("inspectp", id)) as { status: any };
    assert.equal(stopped.status.state, "SANDBOX_NOTREADY");
    assert.deepEqual(await bridgePorts(BRIDGE), []);

    await ok("rmp", id);
    assert.equal(await ok("pods", "-q"), "");
    assert.deepEqual(await mountsUnder(d.state), []);
    const gone = await crictl("inspectp", id);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /not found/);
  });
});
