// Containers end to end through berthd's gRPC socket: images from a local registry, pods on a
// CNI bridge (bctr0, 10.90.0.0/16), runc + conmon underneath, host port 18101.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState, NamespaceMode } from "../src/gen/api.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { removeCgroupParent } from "./harness/leaks.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { hostLeaks, leakDiff, type HostSnapshot } from "./harness/leaks.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { GROUP, PASSWD } from "./container-fixtures.js";
import { deleteBridge, podConfig, sh, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bctr0";
const SUBNET = "10.90.0.0/16";
const CGROUP_PARENT = "/berth-test-ctr";
const CRI_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) (stdout|stderr) (F|P) (.*)$/;
const APPLETS = ["sh", "ls", "cat", "echo", "sleep", "id", "top", "true", "env", "touch", "mkdir", "dd", "ps", "readlink", "yes", "head",
  "printf", "wget", "httpd", "hostname", "grep", "seq", "sha256sum", "rm", "cp", "tail"];

function rpcError(code: number, re: RegExp) {
  return (err: { code: number; details: string }) => {
    assert.equal(err.code, code, `expected ${status[code]}, got ${status[err.code]}: ${err.details}`);
    assert.match(err.details, re);
    return true;
  };
}

describe("containers through berthd's CRI socket", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let userImage: string;
  let leaksBefore: HostSnapshot;
  let seq = 0;

  before(async () => {
    leaksBefore = await hostLeaks();
    reg = await startRegistry();
    const base = await busyboxEntries(APPLETS);
    const etc = { entries: [{ path: "etc/passwd", content: PASSWD }, { path: "etc/group", content: GROUP }, { path: "home/default-user/", type: "dir" as const }] };
    await pushImage(reg, "ctr/busybox", { layers: [{ entries: base }, etc], config: { Cmd: ["sh"], Env: ["PATH=/bin", "FROM_IMAGE=yes"] } }, ["1"]);
    await pushImage(reg, "ctr/busybox-user", { layers: [{ entries: base }, etc], config: { Cmd: ["sh"], Env: ["PATH=/bin"], User: "1000" } }, ["1"]);
    await pushImage(reg, "ctr/pause", { layers: [{ entries: base }], config: { Entrypoint: ["/bin/sleep", "2147483647"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/ctr/busybox:1`;
    userImage = `${reg.host}/ctr/busybox-user:1`;
    d = await startBerthd({ config: `[image]\npause_image = "${reg.host}/ctr/pause:1"\n` });
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    await d.cri.image.pullImage({ image: { image } });
    await d.cri.image.pullImage({ image: { image: userImage } });
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  const newPod = async (name: string, extra: Record<string, unknown> = {}) => {
    const cfg = podConfig(name, { ...extra, linux: { cgroupParent: CGROUP_PARENT, ...(extra.linux as object | undefined) } });
    const podSandboxId = (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId;
    return { podSandboxId, cfg };
  };

  const create = async (pod: { podSandboxId: string; cfg: Record<string, unknown> }, over: Record<string, unknown>) => {
    const name = `c${++seq}`;
    const r = await d.cri.runtime.createContainer({
      podSandboxId: pod.podSandboxId,
      sandboxConfig: pod.cfg,
      config: { metadata: { name }, image: { image }, logPath: `${name}.log`, ...over },
    });
    return r.containerId;
  };

  const run = async (pod: { podSandboxId: string; cfg: Record<string, unknown> }, over: Record<string, unknown>) => {
    const id = await create(pod, over);
    await d.cri.runtime.startContainer({ containerId: id });
    return id;
  };

  const exited = async (id: string) =>
    waitFor(`container ${id} to exit`, async () => {
      const s = (await d.cri.runtime.containerStatus({ containerId: id })).status!;
      return s.state === ContainerState.CONTAINER_EXITED ? s : undefined;
    }, 20_000);

  const logOf = async (id: string) => {
    const s = (await d.cri.runtime.containerStatus({ containerId: id })).status!;
    const text = await readFile(s.logPath, "utf8");
    return text.split("\n").filter((l) => l).map((l) => {
      const m = CRI_LINE.exec(l);
      assert.ok(m, `not a CRI log line: ${l}`);
      return { stream: m[2]!, text: m[4]! };
    });
  };

  test("create, start, logs in CRI format, exit code, reasons, status fields, list", async () => {
    const pod = await newPod("ctr-basic", { logDirectory: path.join(d.dir, "logs", "basic") });
    const t0 = Date.now();
    const id = await create(pod, { command: ["sh", "-c", "echo hello World; echo to-err >&2; exit 4"], labels: { tier: "x" }, annotations: { note: "n" } });
    await d.cri.runtime.startContainer({ containerId: id });
    console.log(`# CreateContainer+StartContainer over gRPC: ${Date.now() - t0} ms`);
    const s = await exited(id);
    assert.equal(s.exitCode, 4);
    assert.equal(s.reason, "Error");
    assert.equal(s.logPath, path.join(d.dir, "logs", "basic", `c${seq}.log`));
    assert.equal(s.image!.image, image);
    assert.match(s.imageRef, /^.+@sha256:[0-9a-f]{64}$/);
    assert.deepEqual(s.labels, { tier: "x" });
    assert.deepEqual(s.annotations, { note: "n" });
    assert.ok(s.startedAt > 0n && s.finishedAt >= s.startedAt);
    assert.deepEqual((await logOf(id)).map((l) => `${l.stream}:${l.text}`).sort(), ["stderr:to-err", "stdout:hello World"]);
    const ok = await run(pod, { command: ["sh", "-c", "echo $FROM_IMAGE"] });
    const s2 = await exited(ok);
    assert.equal(s2.reason, "Completed");
    assert.deepEqual((await logOf(ok)).map((l) => l.text), ["yes"]);
    const listed = await d.cri.runtime.listContainers({ filter: { podSandboxId: pod.podSandboxId } });
    assert.deepEqual(listed.containers.map((c) => c.id).sort(), [id, ok].sort());
    const byLabel = await d.cri.runtime.listContainers({ filter: { labelSelector: { tier: "x" } } });
    assert.deepEqual(byLabel.containers.map((c) => c.id), [id]);
    const verbose = await d.cri.runtime.containerStatus({ containerId: id, verbose: true });
    const info = JSON.parse(verbose.info.info!);
    assert.equal(info.sandboxID, pod.podSandboxId);
    assert.equal(info.runtimeSpec.process.args[0], "sh");
    await d.cri.runtime.removeContainer({ containerId: id });
    await d.cri.runtime.removeContainer({ containerId: id });
    await assert.rejects(d.cri.runtime.containerStatus({ containerId: id }), rpcError(status.NOT_FOUND, /not found/));
  });

  test("bad requests get clear errors", async () => {
    const pod = await newPod("ctr-bad");
    await assert.rejects(d.cri.runtime.createContainer({ podSandboxId: "nope", config: { metadata: { name: "x" }, image: { image } } }), rpcError(status.NOT_FOUND, /pod sandbox "nope" not found/));
    await assert.rejects(create(pod, { image: { image: `${reg.host}/ctr/missing:1` } }), rpcError(status.NOT_FOUND, /not found: pull it first/));
    await assert.rejects(create(pod, { command: ["true"], linux: { securityContext: { seccompProfilePath: "/no/prefix.json" } } }), rpcError(status.INVALID_ARGUMENT, /localhost/));
    await assert.rejects(create(pod, { command: ["true"], linux: { securityContext: { apparmor: { profileType: 2, localhostRef: "p" } } } }), rpcError(status.FAILED_PRECONDITION, /AppArmor is not enabled/));
    await assert.rejects(create(pod, { command: ["true"], logPath: "../../etc/evil.log" }), rpcError(status.INVALID_ARGUMENT, /log_path/));
    await assert.rejects(d.cri.runtime.startContainer({ containerId: "0123456789" }), rpcError(status.NOT_FOUND, /not found/));
    await assert.rejects(d.cri.runtime.execSync({ containerId: "0123456789", cmd: ["true"] }), rpcError(status.NOT_FOUND, /not found/));
  });

  test("OOM kill under a 16 MiB limit reports OOMKilled and 137", async () => {
    const pod = await newPod("ctr-oom");
    const id = await run(pod, { command: ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=20M"], linux: { resources: { memoryLimitInBytes: 16n * 1024n * 1024n } } });
    const s = await exited(id);
    assert.equal(s.reason, "OOMKilled");
    assert.equal(s.exitCode, 137);
  });

  test("users and groups: image uid with image-defined group plus supplemental groups (id output)", async () => {
    const pod = await newPod("ctr-user");
    const id = await run(pod, { image: { image: userImage }, command: ["sh", "-c", "id"], linux: { securityContext: { supplementalGroups: [1234n] } } });
    await exited(id);
    assert.deepEqual((await logOf(id)).map((l) => l.text), ["uid=1000(default-user) gid=1000(default-user) groups=1000(default-user),1234,50000(group-defined-in-image)"]);
    const s = (await d.cri.runtime.containerStatus({ containerId: id })).status!;
    assert.equal(s.user!.linux!.uid, 1000n);
    assert.deepEqual(s.user!.linux!.supplementalGroups, [1000n, 1234n, 50000n]);
  });

  test("two containers of a pod share localhost and IPC; a shared-PID pod shows the pause process", async () => {
    const pod = await newPod("ctr-share");
    const server = await run(pod, { command: ["sh", "-c", "mkdir -p /tmp/w && echo from-a > /tmp/w/i && exec httpd -f -p 127.0.0.1:18101 -h /tmp/w"] });
    await new Promise((r) => setTimeout(r, 300));
    const client = await run(pod, { command: ["sh", "-c", "wget -qO- http://127.0.0.1:18101/i; readlink /proc/self/ns/ipc"] });
    await exited(client);
    const ipcA = (await d.cri.runtime.execSync({ containerId: server, cmd: ["readlink", "/proc/self/ns/ipc"], timeout: 10n })).stdout.toString().trim();
    assert.deepEqual((await logOf(client)).map((l) => l.text), ["from-a", ipcA]);

    const shared = await newPod("ctr-pid", { linux: { securityContext: { namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.POD, ipc: NamespaceMode.POD } } } });
    const a = await run(shared, { command: ["sleep", "300"], linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } } });
    const ps = (await d.cri.runtime.execSync({ containerId: a, cmd: ["ps", "-o", "pid,args"], timeout: 10n })).stdout.toString();
    assert.match(ps, /^\s*1\s+\/bin\/sleep 2147483647$/m);
    assert.match(ps, /sleep 300/);
    const podInfo = JSON.parse((await d.cri.runtime.podSandboxStatus({ podSandboxId: shared.podSandboxId, verbose: true })).info.info!);
    assert.ok(podInfo.pid > 0);
  });

  test("ExecSync: output, exit code, timeout is DEADLINE_EXCEEDED and kills the process", async () => {
    const pod = await newPod("ctr-exec");
    const id = await run(pod, { command: ["sleep", "300"] });
    const r = await d.cri.runtime.execSync({ containerId: id, cmd: ["sh", "-c", "echo -n hello; echo bad >&2; exit 5"], timeout: 10n });
    assert.equal(r.stdout.toString(), "hello");
    assert.equal(r.stderr.toString(), "bad\n");
    assert.equal(r.exitCode, 5);
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = Date.now();
      await d.cri.runtime.execSync({ containerId: id, cmd: ["true"], timeout: 10n });
      times.push(Date.now() - t);
    }
    times.sort((a, b) => a - b);
    const root = JSON.parse((await d.cri.runtime.containerStatus({ containerId: id, verbose: true })).info.info!).runtimeRoot;
    const bare: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = Date.now();
      await sh("runc", [`--root=${root}`, "exec", id, "true"]);
      bare.push(Date.now() - t);
    }
    bare.sort((a, b) => a - b);
    console.log(`# ExecSync "true" over gRPC: median ${times[5]} ms; bare runc exec of the same: median ${bare[5]} ms`);
    await assert.rejects(d.cri.runtime.execSync({ containerId: id, cmd: ["sleep", "4321"], timeout: 1n }), rpcError(status.DEADLINE_EXCEEDED, /timed out after 1 s/));
    // As critest checks right after the timeout: not even a zombie of the killed process is left.
    const ps = await d.cri.runtime.execSync({ containerId: id, cmd: ["sh", "-c", "pgrep sleep || true"], timeout: 10n });
    assert.equal(ps.stdout.toString(), "");
    const bg = Date.now();
    const held = await d.cri.runtime.execSync({ containerId: id, cmd: ["sh", "-c", "sleep 60 & echo bg"], timeout: 20n });
    assert.equal(held.stdout.toString(), "bg\n");
    assert.ok(Date.now() - bg < 5000);
  });

  test("ReopenContainerLog after rotation loses no line", async () => {
    const pod = await newPod("ctr-log");
    const id = await run(pod, { command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo line$i; sleep 0.02; done"] });
    const s = (await d.cri.runtime.containerStatus({ containerId: id })).status!;
    await new Promise((r) => setTimeout(r, 300));
    await rename(s.logPath, `${s.logPath}.1`);
    await d.cri.runtime.reopenContainerLog({ containerId: id });
    await new Promise((r) => setTimeout(r, 300));
    await d.cri.runtime.stopContainer({ containerId: id, timeout: 0n });
    const nums = [...(await readFile(`${s.logPath}.1`, "utf8")).split("\n"), ...(await readFile(s.logPath, "utf8")).split("\n")]
      .filter((l) => l).map((l) => Number(CRI_LINE.exec(l)![4]!.slice(4)));
    assert.ok((await stat(s.logPath)).size > 0);
    assert.deepEqual(nums, nums.map((_n, i) => i + 1));
  });

  test("stats move when a container burns CPU and memory; pod stats add the network interface", async () => {
    const pod = await newPod("ctr-stats");
    const id = await run(pod, { command: ["sh", "-c", "sleep 1; yes > /dev/null & dd if=/dev/zero bs=24M count=1 | sleep 300"], linux: { resources: { memoryLimitInBytes: 256n * 1024n * 1024n } } });
    const first = (await d.cri.runtime.containerStats({ containerId: id })).stats!;
    await new Promise((r) => setTimeout(r, 2500));
    const second = (await d.cri.runtime.containerStats({ containerId: id })).stats!;
    assert.ok(second.cpu!.usageCoreNanoSeconds!.value > first.cpu!.usageCoreNanoSeconds!.value + 500_000_000n, `cpu ${first.cpu!.usageCoreNanoSeconds!.value} -> ${second.cpu!.usageCoreNanoSeconds!.value}`);
    assert.ok(second.cpu!.usageNanoCores!.value > 300_000_000n);
    assert.ok(second.memory!.workingSetBytes!.value > first.memory!.workingSetBytes!.value + 10_000_000n, `mem ${first.memory!.workingSetBytes!.value} -> ${second.memory!.workingSetBytes!.value}`);
    assert.ok(second.writableLayer!.usedBytes !== undefined);
    assert.equal(second.attributes!.id, id);
    const list = await d.cri.runtime.listContainerStats({ filter: { podSandboxId: pod.podSandboxId } });
    assert.deepEqual(list.stats.map((s) => s.attributes!.id), [id]);
    const ps = (await d.cri.runtime.podSandboxStats({ podSandboxId: pod.podSandboxId })).stats!;
    assert.equal(ps.linux!.containers.length, 1);
    assert.ok(ps.linux!.cpu!.usageCoreNanoSeconds!.value > 0n);
    assert.equal(ps.linux!.network!.defaultInterface!.name, "eth0");
    assert.ok(ps.linux!.network!.defaultInterface!.rxBytes!.value >= 0n);
    const all = await d.cri.runtime.listPodSandboxStats({});
    assert.ok(all.stats.some((s) => s.attributes!.id === pod.podSandboxId));
    await d.cri.runtime.stopContainer({ containerId: id, timeout: 0n });
  });

  test("UpdateContainerResources changes the cgroup and ContainerStatus", async () => {
    const pod = await newPod("ctr-update");
    const id = await run(pod, { command: ["sleep", "300"], linux: { resources: { memoryLimitInBytes: 100n * 1024n * 1024n } } });
    await d.cri.runtime.updateContainerResources({ containerId: id, linux: { memoryLimitInBytes: 50n * 1024n * 1024n, cpuQuota: 20000n, cpuPeriod: 100000n } });
    const s = (await d.cri.runtime.containerStatus({ containerId: id })).status!;
    assert.equal(s.resources!.linux!.memoryLimitInBytes, 50n * 1024n * 1024n);
    const cg = JSON.parse((await d.cri.runtime.containerStatus({ containerId: id, verbose: true })).info.info!).cgroupsPath;
    assert.equal((await readFile(`/sys/fs/cgroup/memory${cg}/memory.limit_in_bytes`, "utf8")).trim(), String(50 * 1024 * 1024));
    assert.equal((await readFile(`/sys/fs/cgroup/cpu${cg}/cpu.cfs_quota_us`, "utf8")).trim(), "20000");
  });

  test("host bind mounts read-only and read-write; readonly rootfs; dropped capability", async () => {
    const pod = await newPod("ctr-mounts");
    const host = path.join(d.dir, "hostdata");
    await mkdir(host, { recursive: true });
    await writeFile(path.join(host, "f"), "host-file\n");
    const id = await run(pod, {
      command: ["sh", "-c", "cat /rw/f; echo c > /rw/c; touch /ro/x 2>/dev/null || echo ro-denied; touch /root-x 2>/dev/null || echo rootfs-ro; grep CapBnd /proc/self/status"],
      mounts: [{ containerPath: "/rw", hostPath: host }, { containerPath: "/ro", hostPath: host, readonly: true }],
      linux: { securityContext: { readonlyRootfs: true, capabilities: { dropCapabilities: ["NET_RAW", "CHOWN"] } } },
    });
    await exited(id);
    const lines = (await logOf(id)).map((l) => l.text);
    assert.deepEqual(lines.slice(0, 3), ["host-file", "ro-denied", "rootfs-ro"]);
    const bnd = BigInt("0x" + /CapBnd:\s*([0-9a-f]+)/.exec(lines[3]!)![1]);
    assert.equal(bnd & (1n << 13n), 0n);
    assert.equal(bnd & 1n, 0n);
    assert.notEqual(bnd & (1n << 5n), 0n);
    assert.equal(await readFile(path.join(host, "c"), "utf8"), "c\n");
  });

  test("containers keep running across a berthd restart; StopPodSandbox and RemovePodSandbox take them down", async () => {
    const pod = await newPod("ctr-restart");
    const id = await run(pod, { command: ["sleep", "300"] });
    await d.stop("SIGTERM");
    d = await d.restart();
    const s = (await d.cri.runtime.containerStatus({ containerId: id })).status!;
    assert.equal(s.state, ContainerState.CONTAINER_RUNNING);
    const r = await d.cri.runtime.execSync({ containerId: id, cmd: ["echo", "still"], timeout: 10n });
    assert.equal(r.stdout.toString(), "still\n");
    await d.cri.runtime.stopPodSandbox({ podSandboxId: pod.podSandboxId });
    assert.equal((await d.cri.runtime.containerStatus({ containerId: id })).status!.state, ContainerState.CONTAINER_EXITED);
    await d.cri.runtime.removePodSandbox({ podSandboxId: pod.podSandboxId });
    await assert.rejects(d.cri.runtime.containerStatus({ containerId: id }), rpcError(status.NOT_FOUND, /not found/));
  });

  test("nothing is left behind once every pod is removed", async () => {
    for (const c of (await d.cri.runtime.listContainers({})).containers) await d.cri.runtime.stopContainer({ containerId: c.id, timeout: 0n });
    const pods = await d.cri.runtime.listPodSandbox({});
    for (const p of pods.items) {
      await d.cri.runtime.stopPodSandbox({ podSandboxId: p.id });
      await d.cri.runtime.removePodSandbox({ podSandboxId: p.id });
    }
    assert.deepEqual((await d.cri.runtime.listContainers({})).containers, []);
    // Other suites run beside this one: only what names this berthd's dirs counts.
    const mine = (s: HostSnapshot): HostSnapshot => ({ netns: [], links: [], conmons: s.conmons.filter((c) => c.includes(d.dir)), mounts: s.mounts.filter((m) => m.includes(d.dir)) });
    await waitFor("no leftovers", async () => leakDiff(mine(leaksBefore), mine(await hostLeaks())).length === 0, 5000).catch(async () => {
      assert.deepEqual(leakDiff(mine(leaksBefore), mine(await hostLeaks())), []);
    });
    for (const c of ["memory", "cpu", "pids"]) {
      // container-manager.test.ts uses mgr-* parents beside this suite.
      const left = await sh("find", [`/sys/fs/cgroup/${c}${CGROUP_PARENT}`, "-mindepth", "1", "-type", "d", "-not", "-path", "*/mgr-*"]);
      assert.equal(left.stdout.trim(), "", `cgroups left under ${c}${CGROUP_PARENT}`);
    }
  });
});
