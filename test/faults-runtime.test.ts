// Faults a node does to the runtime's helpers, against a real berthd, runc, conmon and CNI
// plugins: a sysctl value the kernel refuses, a conmon (and a pause container's conmon) killed
// with SIGKILL, an OCI runtime that hangs in `create`, a CNI plugin that hangs in ADD. Bridge
// bfrt0 (10.207.1.0/24); the hung runtime and plugin are wrapper scripts (test/harness/hung-helpers.ts).
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState, NamespaceMode, PodSandboxState } from "../src/gen/api.js";
import { processRunning, readProcStat } from "../src/proc.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { hostLeaks, leakDiff, removeCgroupParent, type HostSnapshot } from "./harness/leaks.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { HUNG_PLUGIN, hungSleepers, writeHungHelpers } from "./harness/hung-helpers.js";
import { bridgePorts, deleteBridge, filesUnder, mountsUnder, podConfig } from "./sandbox-net.js";

const BRIDGE = "bfrt0";
const SUBNET = "10.207.1.0/24";
const CGROUP_PARENT = "/berth-faults-rt";
const CALL_TIMEOUT_S = 3;

function rpcError(code: number, re: RegExp) {
  return (err: { code: number; details: string }) => {
    assert.equal(err.code, code, `expected ${status[code]}, got ${status[err.code]}: ${err.details}`);
    assert.match(err.details, re);
    return true;
  };
}

describe("faults around runc, conmon and CNI plugins", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let binDir: string;
  let leaksBefore: HostSnapshot;

  before(async () => {
    leaksBefore = await hostLeaks();
    reg = await startRegistry();
    const base = await busyboxEntries(["sh", "sleep", "echo", "true", "cat"]);
    await pushImage(reg, "faults/busybox", { layers: [{ entries: base }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    await pushImage(reg, "faults/pause", { layers: [{ entries: base }], config: { Entrypoint: ["/bin/sleep", "2147483647"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/faults/busybox:1`;
    const dir = await mkdtemp(path.join(tmpdir(), "berth-faults-rt-"));
    binDir = path.join(dir, "bin");
    const runtime = await writeHungHelpers(binDir, path.join(dir, "hung-runtime.pid"));
    await mkdir(path.join(dir, "cni"), { recursive: true });
    await writeFile(path.join(dir, "cni", `10-${BRIDGE}.conflist`), JSON.stringify({
      cniVersion: "1.0.0",
      name: `${BRIDGE}-net`,
      plugins: [
        { type: "bridge", bridge: BRIDGE, isGateway: true, ipMasq: true, ipam: { type: "host-local", dataDir: path.join(dir, "ipam"), ranges: [[{ subnet: SUBNET }]] } },
        { type: HUNG_PLUGIN },
      ],
    }));
    d = await startBerthd({
      dir,
      config: `[runtime]\ncall_timeout = "${CALL_TIMEOUT_S}s"\n[runtime.handlers.hang]\npath = "${runtime}"\n` +
        `[cni]\nbin_dirs = ["${binDir}", "/usr/lib/cni"]\nplugin_timeout = "${CALL_TIMEOUT_S}s"\n[image]\npause_image = "${reg.host}/faults/pause:1"\n`,
    });
    await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
    await d.cri.image.pullImage({ image: { image } });
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  const newPod = async (name: string, extra: Record<string, unknown> = {}, runtimeHandler = "") => {
    const cfg = podConfig(name, { ...extra, linux: { cgroupParent: CGROUP_PARENT, ...(extra.linux as object | undefined) } });
    const podSandboxId = (await d.cri.runtime.runPodSandbox({ config: cfg, runtimeHandler })).podSandboxId;
    return { podSandboxId, cfg };
  };
  let seq = 0;
  const create = async (pod: { podSandboxId: string; cfg: Record<string, unknown> }, command: string[]) =>
    (await d.cri.runtime.createContainer({ podSandboxId: pod.podSandboxId, sandboxConfig: pod.cfg, config: { metadata: { name: `c${++seq}` }, image: { image }, command } })).containerId;
  const run = async (pod: { podSandboxId: string; cfg: Record<string, unknown> }, command: string[]) => {
    const id = await create(pod, command);
    await d.cri.runtime.startContainer({ containerId: id });
    return id;
  };
  const info = async (id: string) =>
    JSON.parse((await d.cri.runtime.containerStatus({ containerId: id, verbose: true })).info.info!) as { pid: number; conmonPid: number; bundle: string; cgroupsPath: string };
  const removePod = async (id: string) => {
    await d.cri.runtime.stopPodSandbox({ podSandboxId: id });
    await d.cri.runtime.removePodSandbox({ podSandboxId: id });
  };
  /** Nothing of berth's is left on the host or under its dirs once every pod is gone. */
  const assertNoLeaks = async () => {
    assert.deepEqual((await d.cri.runtime.listPodSandbox({})).items, []);
    assert.deepEqual((await d.cri.runtime.listContainers({})).containers, []);
    const mine = (s: HostSnapshot): HostSnapshot => ({ netns: [], links: [], conmons: s.conmons.filter((c) => c.includes(d.dir)), mounts: s.mounts.filter((m) => m.includes(d.dir)) });
    assert.deepEqual(leakDiff(mine(leaksBefore), mine(await hostLeaks())), []);
    assert.deepEqual(await filesUnder(d.layout.bundles), []);
    assert.deepEqual(await filesUnder(d.layout.pins), []);
    assert.deepEqual(await filesUnder(d.layout.pods), []);
    assert.deepEqual(await filesUnder(path.join(d.root, "image", "snapshots")), []);
    assert.deepEqual((await readdir(path.join(d.root, "containers"))).filter((f) => f.endsWith(".json")), []);
    assert.deepEqual(await bridgePorts(BRIDGE), []);
    const cg = await readdir(path.join("/sys/fs/cgroup/memory", CGROUP_PARENT)).catch(() => [] as string[]);
    assert.deepEqual(cg.filter((n) => /^[0-9a-f]{64}$/.test(n) || n.startsWith("berth")), []);
  };

  test("a sysctl value the kernel refuses is INVALID_ARGUMENT naming the sysctl and the kernel's answer; the half-made pod is gone", async () => {
    const before = await readFile("/proc/sys/kernel/core_pattern", "utf8");
    const hostile = "1+kernel.core_pattern=|/bin/sh -c id";
    await assert.rejects(newPod("sysctl-refused", { linux: { sysctls: { "kernel.shm_rmid_forced": hostile } } }), (err: { code: number; details: string }) => {
      assert.equal(err.code, status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, /kernel\.shm_rmid_forced/);
      assert.match(err.details, /the kernel refused the value .*: Invalid argument/);
      assert.doesNotMatch(err.details, /tee:/);
      assert.ok(!err.details.includes(d.state), `berth's state path in: ${err.details}`);
      return true;
    });
    assert.equal(await readFile("/proc/sys/kernel/core_pattern", "utf8"), before);
    assert.deepEqual((await d.cri.runtime.listPodSandbox({})).items, []);
    assert.deepEqual(await mountsUnder(d.state), []);
    assert.deepEqual(await filesUnder(d.layout.pins), []);
    assert.deepEqual(await filesUnder(d.layout.pods), []);
    assert.deepEqual((await readdir(path.join(d.root, "sandboxes"))).filter((f) => f.endsWith(".json")), []);
    // The name is free: the same pod with a value the kernel takes runs.
    const ok = await newPod("sysctl-refused", { linux: { sysctls: { "kernel.shm_rmid_forced": "1" } } });
    await removePod(ok.podSandboxId);
  });

  test("a container whose conmon is killed is reported exited (MonitorDied), its processes killed; stop and remove succeed", async () => {
    const pod = await newPod("monitor-killed");
    const id = await run(pod, ["sh", "-c", "sleep 1000 & exec sleep 1001"]);
    const i = await info(id);
    assert.ok(await processRunning(i.pid));
    const children = (await readFile(`/proc/${i.pid}/task/${i.pid}/children`, "utf8")).trim().split(/\s+/).map(Number);
    const killedAt = Date.now();
    process.kill(i.conmonPid, "SIGKILL");
    const s = await waitFor("ContainerStatus to say exited", async () => {
      const st = (await d.cri.runtime.containerStatus({ containerId: id })).status!;
      return st.state === ContainerState.CONTAINER_EXITED ? st : undefined;
    }, 15_000);
    const noticedMs = Date.now() - killedAt;
    process.stderr.write(`# conmon killed: ContainerStatus reported the exit after ${noticedMs} ms\n`);
    assert.ok(noticedMs < 3000, `noticed after ${noticedMs} ms`);
    assert.equal(s.reason, "MonitorDied");
    assert.match(s.message, /monitor \(conmon, pid \d+\) died.*processes were killed/);
    assert.equal(s.exitCode, 137);
    assert.equal(await processRunning(i.pid), false, "the container's init still runs");
    for (const c of children) assert.equal(await processRunning(c), false, `the container's child ${c} still runs`);
    const listed = (await d.cri.runtime.listContainers({ filter: { id } })).containers[0]!;
    assert.equal(listed.state, ContainerState.CONTAINER_EXITED);
    await d.cri.runtime.stopContainer({ containerId: id, timeout: 2n });
    await d.cri.runtime.removeContainer({ containerId: id });
    await removePod(pod.podSandboxId);
    await assertNoLeaks();
  });

  test("a container whose conmon died while berthd was down is killed and reported MonitorDied after the restart", async () => {
    const pod = await newPod("monitor-killed-while-down");
    const id = await run(pod, ["sleep", "1000"]);
    const i = await info(id);
    await d.stop("SIGKILL");
    process.kill(i.conmonPid, "SIGKILL");
    d = await d.restart();
    const s = (await d.cri.runtime.containerStatus({ containerId: id })).status!;
    assert.equal(s.state, ContainerState.CONTAINER_EXITED);
    assert.equal(s.reason, "MonitorDied");
    assert.equal(await processRunning(i.pid), false, "the container's init still runs");
    await d.cri.runtime.removeContainer({ containerId: id });
    await removePod(pod.podSandboxId);
    await assertNoLeaks();
  });

  test("a pod whose pause container's conmon is killed becomes NOTREADY, its processes killed; stop and remove succeed", async () => {
    const pod = await newPod("pause-monitor-killed", { linux: { securityContext: { namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.POD, ipc: NamespaceMode.POD } } } });
    const ps = await d.cri.runtime.podSandboxStatus({ podSandboxId: pod.podSandboxId, verbose: true });
    const pausePid = (JSON.parse(ps.info.info!) as { pid: number }).pid;
    assert.ok(pausePid > 0 && (await processRunning(pausePid)));
    const app = await run(pod, ["sleep", "1000"]);
    const appPid = (await info(app)).pid;
    const conmonOfPause = (await readProcStat(pausePid))!.ppid;
    assert.equal((await readFile(`/proc/${conmonOfPause}/comm`, "utf8")).trim(), "conmon");
    process.kill(conmonOfPause, "SIGKILL");
    await waitFor("the pod to be NOTREADY", async () =>
      (await d.cri.runtime.podSandboxStatus({ podSandboxId: pod.podSandboxId })).status!.state === PodSandboxState.SANDBOX_NOTREADY, 15_000);
    await waitFor("the pause process to be gone", async () => !(await processRunning(pausePid)), 10_000);
    // The pod's PID namespace died with its init: the app went with it, and its conmon recorded that.
    const s = await waitFor("the app to be exited", async () => {
      const st = (await d.cri.runtime.containerStatus({ containerId: app })).status!;
      return st.state === ContainerState.CONTAINER_EXITED ? st : undefined;
    }, 15_000);
    assert.equal(await processRunning(appPid), false);
    assert.equal(s.exitCode, 137);
    await removePod(pod.podSandboxId);
    await assertNoLeaks();
  });

  test("a pod whose pause process is killed becomes NOTREADY at once; stop and remove succeed", async () => {
    const pod = await newPod("pause-killed", { linux: { securityContext: { namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.POD, ipc: NamespaceMode.POD } } } });
    const ps = await d.cri.runtime.podSandboxStatus({ podSandboxId: pod.podSandboxId, verbose: true });
    const pausePid = (JSON.parse(ps.info.info!) as { pid: number }).pid;
    const killedAt = Date.now();
    process.kill(pausePid, "SIGKILL");
    // conmon records the exit: the exit-dir watch settles the infra container, and the pod follows.
    await waitFor("the pod to be NOTREADY", async () =>
      (await d.cri.runtime.podSandboxStatus({ podSandboxId: pod.podSandboxId })).status!.state === PodSandboxState.SANDBOX_NOTREADY, 15_000, 20);
    const ms = Date.now() - killedAt;
    process.stderr.write(`# pause process killed: the pod was NOTREADY after ${ms} ms\n`);
    assert.ok(ms < 3000, `NOTREADY after ${ms} ms`);
    await removePod(pod.podSandboxId);
    await assertNoLeaks();
  });

  test("an OCI runtime that hangs in create: DEADLINE_EXCEEDED naming it within runtime.call_timeout, cleaned up, other pods go on", async () => {
    const hungPod = await newPod("hung-runtime", {}, "hang");
    const other = await newPod("beside-hung-runtime");
    const t0 = Date.now();
    let hungDoneAt = 0;
    const hung = create(hungPod, ["sleep", "1000"]).finally(() => (hungDoneAt = Date.now()));
    hung.catch(() => undefined);
    const pidFile = path.join(d.dir, "hung-runtime.pid");
    const hungPid = await waitFor("the runtime to hang", async () => Number((await readFile(pidFile, "utf8").catch(() => "")).trim()) || undefined, 10_000);
    // Meanwhile: a container on another pod is made, started, listed and asked about.
    const otherId = await run(other, ["sleep", "1000"]);
    assert.equal((await d.cri.runtime.containerStatus({ containerId: otherId })).status!.state, ContainerState.CONTAINER_RUNNING);
    await d.cri.runtime.listContainers({});
    await d.cri.runtime.podSandboxStatus({ podSandboxId: hungPod.podSandboxId });
    const otherDoneAt = Date.now();
    await assert.rejects(hung, rpcError(status.DEADLINE_EXCEEDED, /hang-runc create".*did not finish within 3000 ms \(runtime\.call_timeout\)/));
    const tookMs = hungDoneAt - t0;
    process.stderr.write(`# hung runtime: CreateContainer failed after ${tookMs} ms; the other pod's create+start+status+list finished ${hungDoneAt - otherDoneAt} ms before it\n`);
    assert.ok(otherDoneAt < hungDoneAt, "the other pod's calls waited for the hung one");
    assert.ok(tookMs < CALL_TIMEOUT_S * 1000 + 10_000, `took ${tookMs} ms`);
    assert.equal(await processRunning(hungPid), false, "the hung runtime still runs");
    assert.deepEqual(await hungSleepers(), [], "the hung runtime's sleep still runs");
    assert.deepEqual((await d.cri.runtime.listContainers({ filter: { podSandboxId: hungPod.podSandboxId } })).containers, []);
    await d.cri.runtime.removeContainer({ containerId: otherId });
    await removePod(other.podSandboxId);
    await removePod(hungPod.podSandboxId);
    await assertNoLeaks();
  });

  test("a CNI plugin that hangs in ADD: DEADLINE_EXCEEDED naming it within cni.plugin_timeout, the pod rolled back, other pods go on", async () => {
    const t0 = Date.now();
    let hungDoneAt = 0;
    const hung = newPod("hang-cni").finally(() => (hungDoneAt = Date.now()));
    hung.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    const other = await newPod("beside-hung-cni");
    const st = await d.cri.runtime.podSandboxStatus({ podSandboxId: other.podSandboxId });
    assert.equal(st.status!.state, PodSandboxState.SANDBOX_READY);
    const otherDoneAt = Date.now();
    await assert.rejects(hung, rpcError(status.DEADLINE_EXCEEDED, /CNI plugin "berth-hang" ADD timed out after 3000 ms \(cni\.plugin_timeout\)/));
    const tookMs = hungDoneAt - t0;
    process.stderr.write(`# hung CNI plugin: RunPodSandbox failed after ${tookMs} ms; another pod was made ${hungDoneAt - otherDoneAt} ms before it\n`);
    assert.ok(otherDoneAt < hungDoneAt, "the other pod waited for the hung one");
    assert.ok(tookMs < CALL_TIMEOUT_S * 1000 + 10_000, `took ${tookMs} ms`);
    assert.deepEqual(await hungSleepers(), [], "the hung plugin's sleep still runs");
    assert.deepEqual((await d.cri.runtime.listPodSandbox({})).items.map((p) => p.metadata!.name), ["beside-hung-cni"]);
    assert.equal((await bridgePorts(BRIDGE)).length, 1, "only the other pod's veth is on the bridge");
    // host-local holds one address (the other pod's): the hung pod's was released by the rollback's DEL.
    const leases = (await readdir(path.join(d.dir, "ipam", `${BRIDGE}-net`))).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
    assert.equal(leases.length, 1, `leases: ${leases.join(", ")}`);
    await removePod(other.podSandboxId);
    await assertNoLeaks();
  });
});
