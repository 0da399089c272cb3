// Crash recovery of containers (runc + conmon): berthd is killed with SIGKILL at every step of
// CreateContainer, StartContainer, StopContainer and RemoveContainer, restarted on the same
// dirs; every listed container must be consistent and operable, a bystander container must
// keep running with exec and logs working, and nothing may leak (mounts, conmon processes,
// cgroups, runc state, files). Then 20 running containers through a kill -9 and restart, and
// orphans left by a quarantined record or a vanished runtime state.
// Network: bridge brel2, 10.94.2.0/24; cgroups under /berth-test-rel.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState, NamespaceMode } from "../src/gen/api.js";
import { FAULT_POINTS } from "../src/faults.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { hostLeaks, type HostSnapshot } from "./harness/leaks.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { cgroupLeaks, containerProblems, forceRemoveDir, ownLeaks, podProblems, removeCgroupParent } from "./recovery-check.js";
import { bridgePorts, deleteBridge, podConfig, sh, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "brel2";
const SUBNET = "10.94.2.0/24";
const CGROUP_PARENT = "/berth-test-rel";
const POINTS = FAULT_POINTS.filter((p) => /^(Create|Start|Stop|Remove)Container\./.test(p));
const TICKER = ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"];

type Pod = { podSandboxId: string; cfg: Record<string, unknown> };

describe("container recovery after kill -9", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let baseline: HostSnapshot;
  let bystanderPod: Pod;
  let bystander: string;
  let seq = 0;
  let survived = 0;

  const newPod = async (name: string, extra: Record<string, unknown> = {}): Promise<Pod> => {
    const cfg = podConfig(name, { ...extra, logDirectory: path.join(d.dir, "logs", name), linux: { cgroupParent: CGROUP_PARENT, ...(extra.linux as object | undefined) } });
    return { podSandboxId: (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId, cfg };
  };
  const containerConfig = (name: string, command: string[]) => ({ metadata: { name }, image: { image }, command, logPath: `${name}.log` });
  const create = async (pod: Pod, name: string, command: string[]) =>
    (await d.cri.runtime.createContainer({ podSandboxId: pod.podSandboxId, sandboxConfig: pod.cfg, config: containerConfig(name, command) })).containerId;
  const run = async (pod: Pod, name: string, command: string[]) => {
    const id = await create(pod, name, command);
    await d.cri.runtime.startContainer({ containerId: id });
    return id;
  };
  const state = async (id: string) => (await d.cri.runtime.containerStatus({ containerId: id })).status!;
  const ticks = async (id: string) => (await readFile((await state(id)).logPath, "utf8")).split("\n").filter((l) => / tick \d+$/.test(l)).length;
  const exec = async (id: string, cmd: string[]) => d.cri.runtime.execSync({ containerId: id, cmd, timeout: 10n });

  /** Removes every pod but the bystander's (and every container in them) through the CRI. */
  const removeAllButBystander = async () => {
    const others = (await d.cri.runtime.listContainers({})).containers.filter((c) => c.id !== bystander);
    await Promise.all(others.map((c) => d.cri.runtime.stopContainer({ containerId: c.id, timeout: 0n })));
    for (const p of (await d.cri.runtime.listPodSandbox({})).items) {
      if (p.id === bystanderPod.podSandboxId) continue;
      await d.cri.runtime.stopPodSandbox({ podSandboxId: p.id });
      await d.cri.runtime.removePodSandbox({ podSandboxId: p.id });
    }
  };

  async function assertBystanderAndNoLeaks(): Promise<void> {
    assert.deepEqual((await d.cri.runtime.listContainers({})).containers.map((c) => c.id), [bystander]);
    const s = await state(bystander);
    assert.equal(s.state, ContainerState.CONTAINER_RUNNING, "the bystander keeps running");
    const before = await ticks(bystander);
    await waitFor("the bystander's log to grow", async () => (await ticks(bystander)) > before, 5000);
    const r = await exec(bystander, ["echo", "still here"]);
    assert.equal(r.stdout.toString(), "still here\n");
    assert.deepEqual(ownLeaks(baseline, await hostLeaks(), d.dir), []);
    assert.deepEqual(await cgroupLeaks(CGROUP_PARENT, [bystander]), []);
    assert.equal((await bridgePorts(BRIDGE)).length, 1);
    // Each dir holds the bystander's entry, so a missing dir (a path that drifted) fails here.
    const L = d.layout;
    for (const dir of [L.bundles, L.exits, L.sockets, L.runtimeRoot("runc")]) {
      const names = await readdir(dir);
      assert.ok(names.includes(bystander) || dir === L.exits, `${dir} holds the bystander`);
      assert.deepEqual(names.filter((n) => n !== bystander), [], `${dir} holds only the bystander`);
    }
    assert.deepEqual((await readdir(L.containerRecords)).filter((n) => n.endsWith(".json") && !n.startsWith(bystander)), []);
    assert.deepEqual((await readdir(path.dirname(L.snapshot(bystander)))).filter((n) => n !== bystander), []);
  }

  before(async () => {
    reg = await startRegistry();
    const base = await busyboxEntries(["sh", "sleep", "echo", "cat", "true", "ls", "seq"]);
    await pushImage(reg, "rel/busybox", { layers: [{ entries: base }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    await pushImage(reg, "rel/pause", { layers: [{ entries: base }], config: { Entrypoint: ["/bin/sleep", "2147483647"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/rel/busybox:1`;
    d = await startBerthd({ config: `[image]\npause_image = "${reg.host}/rel/pause:1"\n[cni]\nplugin_timeout = "20s"\n` });
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    await d.cri.image.pullImage({ image: { image } });
    await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
    bystanderPod = await newPod("bystander");
    bystander = await run(bystanderPod, "ticker", TICKER);
    baseline = await hostLeaks();
  });

  after(async () => {
    process.stderr.write(`# container faults injected and survived: ${survived} of ${POINTS.length}\n`);
    await d?.cleanup({ removePods: true });
    if (d) await forceRemoveDir(d.dir);
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  for (const point of POINTS) {
    test(`kill -9 at ${point}: consistent, operable, bystander runs, nothing leaked`, async () => {
      await d.stop();
      d = await d.restart({ env: { BERTH_FAULT_AT: point } });
      const pod = await newPod(`pod-${++seq}`);
      const name = `victim-${seq}`;
      let id: string | undefined;
      const sequence = async () => {
        id = await create(pod, name, ["sh", "-c", "echo started; sleep 1000"]);
        await d.cri.runtime.startContainer({ containerId: id });
        await d.cri.runtime.stopContainer({ containerId: id, timeout: 1n });
        await d.cri.runtime.removeContainer({ containerId: id });
      };
      await assert.rejects(sequence(), (err: { code: number }) => err.code === status.UNAVAILABLE || err.code === status.INTERNAL);
      await d.stop();
      assert.equal(d.proc.signalCode, "SIGKILL");
      assert.match(d.logs(), new RegExp(`fault point ${point.replace(/\./g, "\\.")} reached`));

      d = await d.restart({ env: {} });
      assert.deepEqual(await containerProblems(d), [], d.logs().slice(-3000));
      assert.deepEqual(await podProblems(d), []);
      const victim = (await d.cri.runtime.listContainers({ filter: { podSandboxId: pod.podSandboxId } })).containers[0];
      const expect: Record<string, ContainerState | undefined> = {
        "CreateContainer.after-snapshot": undefined,
        "CreateContainer.after-record": undefined,
        // runc create is done: recovery adopts the container from its pid files.
        "CreateContainer.after-conmon": ContainerState.CONTAINER_CREATED,
        "CreateContainer.after-created": ContainerState.CONTAINER_CREATED,
        "StartContainer.after-runc-start": ContainerState.CONTAINER_RUNNING,
        "StartContainer.after-record": ContainerState.CONTAINER_RUNNING,
        "StopContainer.after-kill": ContainerState.CONTAINER_EXITED,
        "RemoveContainer.after-record-delete": undefined,
      };
      if (point in expect) assert.equal(victim?.state, expect[point], `state after ${point}`);
      else if (point.startsWith("RemoveContainer.")) assert.equal(victim?.state, ContainerState.CONTAINER_EXITED);
      if (victim && id) assert.equal(victim.id, id);
      if (victim === undefined && point.startsWith("CreateContainer.")) {
        assert.match(d.logs(), /CreateContainer was interrupted|removed the resources of a container berth has no record of/);
        // the name is free again: kubelet's retry succeeds
        const again = await run(pod, name, ["sh", "-c", "echo again; sleep 1000"]);
        assert.equal((await state(again)).state, ContainerState.CONTAINER_RUNNING);
      }
      if (victim?.state === ContainerState.CONTAINER_RUNNING) {
        assert.equal((await exec(victim.id, ["echo", "ok"])).stdout.toString(), "ok\n");
        await d.cri.runtime.stopContainer({ containerId: victim.id, timeout: 1n });
        assert.equal((await state(victim.id)).state, ContainerState.CONTAINER_EXITED);
      }
      if (victim?.state === ContainerState.CONTAINER_CREATED) await d.cri.runtime.startContainer({ containerId: victim.id });
      if (victim) await d.cri.runtime.removeContainer({ containerId: victim.id });
      await removeAllButBystander();
      await assertBystanderAndNoLeaks();
      survived++;
    });
  }

  test("20 running containers survive kill -9 and restart: same processes, exec and logs work; one that exited meanwhile shows its exit code", async () => {
    const pods = [await newPod("many-a"), await newPod("many-b"), await newPod("many-c"),
      await newPod("many-shared", { linux: { securityContext: { namespaceOptions: { network: NamespaceMode.POD, ipc: NamespaceMode.POD, pid: NamespaceMode.POD } } } })];
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await run(pods[i % 4]!, `t${i}`, TICKER));
    const quitter = await run(pods[0]!, "quitter", ["sh", "-c", "sleep 2; exit 7"]);
    const pids = new Map<string, number>();
    for (const id of ids) pids.set(id, JSON.parse((await d.cri.runtime.containerStatus({ containerId: id, verbose: true })).info.info!).pid);
    await d.stop("SIGKILL");
    const killedAt = BigInt(Date.now()) * 1_000_000n;
    await new Promise((r) => setTimeout(r, 3000));
    d = await d.restart();
    const restartedAt = BigInt(Date.now()) * 1_000_000n;
    assert.deepEqual(await containerProblems(d), []);
    const q = await state(quitter);
    assert.equal(q.state, ContainerState.CONTAINER_EXITED);
    assert.equal(q.exitCode, 7);
    assert.equal(q.reason, "Error");
    assert.ok(q.finishedAt > killedAt && q.finishedAt < restartedAt, "finished while berthd was down");
    const before = new Map<string, number>();
    for (const id of ids) {
      const s = await d.cri.runtime.containerStatus({ containerId: id, verbose: true });
      assert.equal(s.status!.state, ContainerState.CONTAINER_RUNNING);
      assert.equal(JSON.parse(s.info.info!).pid, pids.get(id), "the same process");
      assert.equal((await exec(id, ["echo", id.slice(0, 8)])).stdout.toString(), `${id.slice(0, 8)}\n`);
      before.set(id, await ticks(id));
    }
    await waitFor("every log to grow after the restart", async () => {
      for (const id of ids) if ((await ticks(id)) <= before.get(id)!) return false;
      return true;
    }, 10_000);
    process.stderr.write(`# containers through a kill -9 restart: ${ids.length} running kept running, 1 exited during downtime reported exit code ${q.exitCode}\n`);
    await removeAllButBystander();
    await assertBystanderAndNoLeaks();
  });

  test("a quarantined container record's leftovers and a container whose runtime state vanished are cleaned up or reported", async () => {
    const pod = await newPod("orphans");
    const doomed = await run(pod, "doomed", ["sleep", "1000"]);
    const vanished = await run(pod, "vanished", ["sleep", "1000"]);
    const vInfo = JSON.parse((await d.cri.runtime.containerStatus({ containerId: vanished, verbose: true })).info.info!) as { conmonPid: number; runtimeRoot: string };
    await d.stop("SIGKILL");
    // a torn record: berth cannot know the container any more
    const file = path.join(d.root, "containers", `${doomed}.json`);
    const text = await readFile(file, "utf8");
    await writeFile(file, text.slice(0, 40));
    // a reboot-like loss of one container: its monitor, its runc state and any exit file gone
    process.kill(vInfo.conmonPid, "SIGKILL");
    assert.equal((await sh("runc", [`--root=${vInfo.runtimeRoot}`, "delete", "--force", vanished])).code, 0);
    await sh("rm", ["-f", d.layout.exitFile(vanished)]);

    d = await d.restart();
    assert.match(d.logs(), /container record quarantined/);
    assert.match(d.logs(), /removed the resources of a container berth has no record of/);
    const listed = (await d.cri.runtime.listContainers({ filter: { podSandboxId: pod.podSandboxId } })).containers.map((c) => c.id);
    assert.deepEqual(listed, [vanished]);
    const s = await state(vanished);
    assert.equal(s.state, ContainerState.CONTAINER_EXITED);
    assert.equal(s.exitCode, 255);
    assert.match(s.message, /gone from the runtime|no exit code/);
    assert.deepEqual(await containerProblems(d), []);
    await removeAllButBystander();
    await assertBystanderAndNoLeaks();
  });
});
