// The contract between the pod layer and the container layer (src/runtime/types.ts), checked
// on SandboxManager directly. The container layer (runc + conmon) is not part of this
// branch, so PodContainers and InfraContainers are stand-ins that record calls; the infra
// stand-in runs a real process so the pod's pidnsPath points at a live namespace.
import { spawn, type ChildProcess } from "node:child_process";
import assert from "node:assert/strict";
import { mkdtemp, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { defaultConfig, type Config } from "../src/config.js";
import { CniNetwork } from "../src/cni/network.js";
import { CniConfWatcher } from "../src/cni/watcher.js";
import { NamespaceMode, PodSandboxConfig } from "../src/gen/api.js";
import { createLogger } from "../src/log.js";
import { SandboxManager } from "../src/runtime/sandbox.js";
import type { InfraContainers, PodContainers, SandboxRef } from "../src/runtime/types.js";
import { filesUnder, mountsUnder } from "./sandbox-net.js";

const log = createLogger("error");

function hostNetPod(name: string, pid: NamespaceMode) {
  return PodSandboxConfig.fromPartial({
    metadata: { name, namespace: "contract", uid: `uid-${name}`, attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid, ipc: NamespaceMode.POD } } },
  });
}

describe("SandboxManager and the container layer's interfaces", () => {
  let dir: string;
  let config: Config;
  let watcher: CniConfWatcher;
  let pods: SandboxManager;
  let network: CniNetwork;
  const calls: string[] = [];
  const procs = new Map<string, ChildProcess>();
  let failStart = false;

  const infra: InfraContainers = {
    async start(ref: SandboxRef) {
      calls.push(`infra.start ${ref.id} ipc=${ref.ipcnsPath !== undefined} state=${ref.state}`);
      if (failStart) throw new Error("pause image not found");
      const p = spawn("sleep", ["600"], { stdio: "ignore" });
      procs.set(ref.id, p);
      return { pid: p.pid!, containerId: `infra-${ref.id.slice(0, 8)}` };
    },
    async stop(id) {
      calls.push(`infra.stop ${id}`);
      procs.get(id)?.kill("SIGKILL");
    },
    async remove(id) {
      calls.push(`infra.remove ${id}`);
      procs.delete(id);
    },
  };
  const containers: PodContainers = {
    async stopAll(id, timeout) {
      calls.push(`stopAll ${id} ${timeout}`);
    },
    async removeAll(id) {
      calls.push(`removeAll ${id}`);
    },
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-contract-"));
    config = { ...defaultConfig(), root: path.join(dir, "root"), state: path.join(dir, "state") };
    watcher = new CniConfWatcher(path.join(dir, "net.d"), ["/usr/lib/cni"], log);
    await watcher.start();
    network = new CniNetwork(watcher, config.root, 5000, log);
    await network.init();
    pods = new SandboxManager({ config, network, log });
    await pods.init();
  });

  after(async () => {
    watcher.close();
    for (const p of procs.values()) p.kill("SIGKILL");
    for (const r of pods.list()) await pods.remove(r.id).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  test("without InfraContainers a shared-PID pod is refused; with it the infra container holds the PID namespace", async () => {
    await assert.rejects(pods.run(hostNetPod("nopause", NamespaceMode.POD), ""), /infra container/);
    // The same dirs, now with an infra runner and a container layer (wired at construction, as berthd does).
    pods = new SandboxManager({ config, network, log, infra, containers });
    await pods.init();
    const id = await pods.run(hostNetPod("shared", NamespaceMode.POD), "");
    const ref = pods.getSandbox(id)!;
    assert.equal(ref.state, "ready");
    assert.ok(ref.ipcnsPath, "own IPC namespace pinned");
    assert.equal(ref.netnsPath, undefined, "host network");
    assert.equal(ref.pidnsPath, `/proc/${procs.get(id)!.pid}/ns/pid`);
    assert.match(await readlink(ref.pidnsPath!), /^pid:\[\d+\]$/);
    assert.deepEqual(calls, [`infra.start ${id} ipc=true state=notready`]);

    await pods.stop(id);
    assert.deepEqual(calls.slice(1), [`stopAll ${id} ${config.runtime.default_stop_timeout}`, `infra.stop ${id}`]);
    await pods.remove(id);
    // Remove stops again (idempotent) before it removes: it may follow a Stop that failed half-way.
    assert.deepEqual(calls.slice(3), [`stopAll ${id} 0`, `removeAll ${id}`, `infra.stop ${id}`, `infra.remove ${id}`]);
    assert.equal(pods.getSandbox(id), undefined);
    calls.length = 0;
  });

  test("a pod with per-container PID namespaces gets no infra container", async () => {
    const id = await pods.run(hostNetPod("nopid", NamespaceMode.CONTAINER), "");
    assert.equal(pods.getSandbox(id)!.pidnsPath, undefined);
    await pods.remove(id);
    assert.deepEqual(calls, [`stopAll ${id} 0`, `removeAll ${id}`]);
    calls.length = 0;
  });

  test("an infra container that fails to start fails RunPodSandbox naming the step, and nothing is left", async () => {
    failStart = true;
    try {
      await assert.rejects(pods.run(hostNetPod("broken", NamespaceMode.POD), ""), /RunPodSandbox "broken_contract_uid-broken_0": start infra container: pause image not found/);
    } finally {
      failStart = false;
    }
    assert.deepEqual(pods.list(), []);
    const id0 = calls[0]!.split(" ")[1]!;
    assert.deepEqual(calls, [`infra.start ${id0} ipc=true state=notready`, `infra.stop ${id0}`, `infra.remove ${id0}`], "a half-started infra container is cleaned up too");
    calls.length = 0;
    assert.deepEqual(await mountsUnder(config.state), []);
    assert.deepEqual(await filesUnder(path.join(config.state, "pods")), []);
    assert.deepEqual(await filesUnder(path.join(config.state, "ns")), []);
    assert.deepEqual((await filesUnder(path.join(config.root, "sandboxes"))).filter((f) => f.endsWith(".json")), []);
    // the name is free again
    const id = await pods.run(hostNetPod("broken", NamespaceMode.POD), "");
    await pods.remove(id);
    await assert.rejects(stat(path.join(config.state, "pods", id)), /ENOENT/);
  });
});
