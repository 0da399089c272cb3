// ContainerManager against real runc and conmon, with a busybox rootfs standing in for the
// image layer (a directory copy per container) and a pod pinned with unshare(1).
import type { DeepPartial } from "../src/cri/client.js";
import assert from "node:assert/strict";
import { execa } from "execa";
import { mkdtemp, readFile, rename, rm, stat, writeFile, mkdir, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerConfig, ContainerState, LinuxContainerResources, MountPropagation, NamespaceMode, NamespaceOption } from "../src/gen/api.js";
import { defaultConfig, type Config } from "../src/config.js";
import { BerthError } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { openCgroups, type Cgroups } from "../src/runtime/cgroups.js";
import { isConmon } from "../src/runtime/oci/conmon.js";
import { ContainerManager } from "../src/runtime/container.js";
import { StateLayout } from "../src/layout.js";
import { containerListFilter, toContainerItem, toContainerStatus } from "../src/cri/container-status.js";
import type { ContainerFilter } from "../src/gen/api.js";
import type { SandboxRef } from "../src/runtime/types.js";
import { CopySnapshots, DirImages, makeBusyboxRootfs, makePod, Pods, sleep } from "./container-fixtures.js";


const CRI_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) (stdout|stderr) (F|P) (.*)$/;

describe("ContainerManager with runc and conmon", () => {
  let dir: string;
  let config: Config;
  let images: DirImages;
  let snapshots: CopySnapshots;
  let pods: Pods;
  let cgroups: Cgroups;
  let mgr: ContainerManager;
  // As the CRI front answers ContainerStatus and ListContainers (src/cri/container.ts).
  const statusOf = async (id: string, verbose: boolean) => {
    const i = mgr.status(id);
    return { status: toContainerStatus(i.record, i.user), info: verbose ? await mgr.statusInfo(i.record) : {} };
  };
  const listOf = async (filter: ContainerFilter | undefined) => mgr.list(containerListFilter(filter)).map(toContainerItem);
  let pod: SandboxRef;
  const cleanups: Array<() => Promise<void>> = [];
  let n = 0;

  const newManager = async () => {
    const m = new ContainerManager({ config, log: createLogger("error"), images, snapshots, sandboxes: pods, cgroups });
    await m.init();
    return m;
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-ctr-"));
    config = defaultConfig();
    config.root = path.join(dir, "root");
    config.state = path.join(dir, "state");
    images = new DirImages();
    await makeBusyboxRootfs(path.join(dir, "busybox"));
    images.add("busybox:test", path.join(dir, "busybox"), { Cmd: ["sh"], Env: ["IMAGE_ENV=1"] });
    images.add("busybox-user:test", path.join(dir, "busybox"), { Cmd: ["sh"], User: "1000" });
    await mkdir(path.join(dir, "snap"));
    snapshots = new CopySnapshots(images, path.join(dir, "snap"));
    pods = new Pods();
    cgroups = await openCgroups("cgroupfs");
    const p = await makePod(dir, "pod1");
    pod = p.pod;
    pods.pods.set(pod.id, pod);
    cleanups.push(p.cleanup);
    mgr = await newManager();
  });

  after(async () => {
    for (const r of await mgr.allContainers()) await mgr.remove(r.id).catch(() => undefined);
    mgr.close();
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  const cfg = (over: DeepPartial<ContainerConfig>): ContainerConfig =>
    ContainerConfig.fromPartial({ image: { image: "busybox:test" }, logPath: `c${++n}.log`, ...over, metadata: { name: `c${n}`, ...over.metadata } });

  const run = async (over: DeepPartial<ContainerConfig>, sandbox = pod) => {
    const id = await mgr.create(sandbox.id, cfg(over));
    await mgr.start(id);
    return id;
  };

  const waitExited = async (id: string, ms = 15_000) => {
    const until = Date.now() + ms;
    for (;;) {
      const s = (await statusOf(id, false)).status;
      if (s.state === ContainerState.CONTAINER_EXITED) return s;
      if (Date.now() > until) throw new Error(`container ${id} still ${ContainerState[s.state]}`);
      await sleep(50);
    }
  };

  const logLines = async (id: string) => {
    const s = (await statusOf(id, false)).status;
    const text = await readFile(s.logPath, "utf8").catch(() => "");
    return text.split("\n").filter((l) => l !== "").map((l) => {
      const m = CRI_LINE.exec(l);
      assert.ok(m, `not a CRI log line: ${l}`);
      return { stream: m[2], tag: m[3], text: m[4]! };
    });
  };

  const output = async (over: DeepPartial<ContainerConfig>) => {
    const id = await run(over);
    const s = await waitExited(id);
    const lines = await logLines(id);
    await mgr.remove(id);
    return { status: s, out: lines.filter((l) => l.stream === "stdout").map((l) => l.text).join("\n"), err: lines.filter((l) => l.stream === "stderr").map((l) => l.text).join("\n") };
  };

  test("output lands in the CRI log format; exit code, reason and times are reported", async () => {
    const id = await run({ command: ["sh", "-c", "echo hello; echo oops >&2; printf partial; exit 3"] });
    const s = await waitExited(id);
    assert.equal(s.exitCode, 3);
    assert.equal(s.reason, "Error");
    assert.ok(s.startedAt > 0n && s.finishedAt >= s.startedAt && s.createdAt <= s.startedAt);
    assert.equal(s.logPath, path.join(pod.logDirectory, `c${n}.log`));
    const lines = await logLines(id);
    assert.deepEqual(lines.map((l) => [l.stream, l.tag, l.text]).sort(), [["stderr", "F", "oops"], ["stdout", "F", "hello"], ["stdout", "P", "partial"]].sort());
    await mgr.remove(id);
  });

  test("exit 0 is Completed; env comes from image then config", async () => {
    const r = await output({ command: ["sh", "-c", "echo $IMAGE_ENV $MINE $HOSTNAME"], envs: [{ key: "MINE", value: Buffer.from("x") }] });
    assert.equal(r.status.reason, "Completed");
    assert.equal(r.status.exitCode, 0);
    assert.equal(r.out, "1 x pod1-host");
  });

  test("a container killed for memory under a 16 MiB limit is OOMKilled", async () => {
    const r = await output({
      command: ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1"],
      linux: { resources: { memoryLimitInBytes: 16n * 1024n * 1024n } },
    });
    assert.equal(r.status.reason, "OOMKilled");
    assert.equal(r.status.exitCode, 137);
  });

  test("users and groups: uid, name, uid:gid, image groups, supplemental groups", async () => {
    const id = async (over: DeepPartial<ContainerConfig>) => (await output({ command: ["sh", "-c", "echo $(id -u):$(id -g):$(id -G):$(id -un)"], ...over })).out;
    assert.equal(await id({}), "0:0:0:root");
    assert.equal(await id({ linux: { securityContext: { runAsUser: { value: 1001n } } } }), "1001:0:0:1001");
    assert.equal(await id({ linux: { securityContext: { runAsUser: { value: 1001n }, runAsGroup: { value: 1002n } } } }), "1001:1002:1002:1001");
    assert.equal(await id({ linux: { securityContext: { runAsUsername: "nobody" } } }), "65534:65534:65534:nobody");
    assert.equal(await id({ image: { image: "busybox-user:test" }, linux: { securityContext: { supplementalGroups: [1234n] } } }), "1000:1000:1000 1234 50000:default-user");
  });

  test("a dropped capability is absent from /proc/self/status", async () => {
    const capBnd = async (over: DeepPartial<ContainerConfig>) => BigInt("0x" + /CapBnd:\s*([0-9a-f]+)/.exec((await output({ command: ["cat", "/proc/self/status"], ...over })).out)![1]);
    const NET_RAW = 1n << 13n;
    assert.notEqual(await capBnd({}) & NET_RAW, 0n);
    assert.equal(await capBnd({ linux: { securityContext: { capabilities: { dropCapabilities: ["NET_RAW"] } } } }) & NET_RAW, 0n);
    assert.equal(await capBnd({ linux: { securityContext: { capabilities: { dropCapabilities: ["ALL"] } } } }), 0n);
  });

  test("readonly rootfs refuses writes; host bind mounts read-only and read-write", async () => {
    const ro = await output({ command: ["sh", "-c", "touch /x && echo wrote"], linux: { securityContext: { readonlyRootfs: true } } });
    assert.match(ro.err, /Read-only file system/);
    assert.notEqual(ro.status.exitCode, 0);
    const hostDir = path.join(dir, "bind-rw");
    const missing = path.join(dir, "bind-new", "deep");
    await mkdir(hostDir);
    await writeFile(path.join(hostDir, "in.txt"), "from host\n");
    const r = await output({
      command: ["sh", "-c", "cat /data/in.txt; echo back > /data/out.txt; touch /ro/x || echo ro-refused; ls /new && echo new-ok"],
      mounts: [
        { containerPath: "/data", hostPath: hostDir },
        { containerPath: "/ro", hostPath: hostDir, readonly: true },
        { containerPath: "/new", hostPath: missing, propagation: MountPropagation.PROPAGATION_PRIVATE },
      ],
    });
    assert.equal(r.out, "from host\nro-refused\nnew-ok");
    assert.equal(await readFile(path.join(hostDir, "out.txt"), "utf8"), "back\n");
    assert.ok((await stat(missing)).isDirectory());
  });

  test("two containers in one pod share localhost and IPC", async () => {
    const server = await run({ command: ["sh", "-c", "mkdir -p /tmp/www && echo hi-from-a > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:18100 -h /tmp/www"] });
    await sleep(300);
    const r = await output({ command: ["sh", "-c", "wget -qO- http://127.0.0.1:18100/index.html"] });
    assert.equal(r.out, "hi-from-a");
    const nsA = (await mgr.execSync(server, ["readlink", "/proc/self/ns/ipc", "/proc/self/ns/net"], 10)).stdout.toString();
    const b = await output({ command: ["readlink", "/proc/self/ns/ipc", "/proc/self/ns/net"] });
    assert.equal(b.out, nsA.trim());
    await mgr.stop(server, 0);
    await mgr.remove(server);
  });

  test("shared PID namespace: containers joining the pod's pid namespace see each other", async () => {
    // The pod layer pins PID via an infra container; here the first container holds it.
    const holder = await run({ command: ["sleep", "300"], linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.CONTAINER } } } });
    const holderPid = (await mgr.record(holder)).pid;
    const shared: SandboxRef = { ...pod, id: "pod1-pid", pidnsPath: `/proc/${holderPid}/ns/pid`, namespaceOptions: NamespaceOption.fromPartial({ pid: NamespaceMode.POD }) };
    pods.pods.set(shared.id, shared);
    const id = await mgr.create(shared.id, cfg({ command: ["sh", "-c", "ps -o comm; echo"], linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } } }));
    await mgr.start(id);
    await waitExited(id);
    const out = (await logLines(id)).map((l) => l.text);
    assert.ok(out.includes("sleep"), out.join(","));
    await mgr.remove(id);
    await mgr.remove(holder);
    pods.pods.delete(shared.id);
  });

  test("ExecSync: output and exit code, timeout kills the process tree, a background child does not hang it", async () => {
    const id = await run({ command: ["sleep", "300"] });
    const r = await mgr.execSync(id, ["sh", "-c", "echo out; echo err >&2; exit 7"], 10);
    assert.equal(r.stdout.toString(), "out\n");
    assert.equal(r.stderr.toString(), "err\n");
    assert.equal(r.exitCode, 7);
    const t0 = Date.now();
    await assert.rejects(mgr.execSync(id, ["sh", "-c", "sleep 4321 & sleep 4322"], 1), (err: unknown) => err instanceof BerthError && err.code === 4 && /timed out after 1 s/.test(err.message));
    assert.ok(Date.now() - t0 < 5000);
    await sleep(100);
    const ps = (await mgr.execSync(id, ["ps", "-o", "args"], 10)).stdout.toString();
    assert.doesNotMatch(ps, /sleep 432/);
    const t1 = Date.now();
    const bg = await mgr.execSync(id, ["sh", "-c", "sleep 30 & echo started"], 10);
    assert.equal(bg.stdout.toString(), "started\n");
    assert.ok(Date.now() - t1 < 3000, `took ${Date.now() - t1} ms`);
    const big = await mgr.execSync(id, ["sh", "-c", "yes 0123456789abcdef | head -c 20000000"], 30);
    // stdout and stderr together fit one 16 MiB gRPC response (kubelet's limit) with room for its framing.
    assert.equal(big.stdout.length, 16 * 1024 * 1024 - 4096);
    // Background children outlive the exec, as with containerd: one that let go of the output and
    // one that still holds it (the call above did not wait for it, nor killed it).
    await mgr.execSync(id, ["sh", "-c", "sleep 31 >/dev/null 2>&1 &"], 10);
    const left = (await mgr.execSync(id, ["ps", "-o", "stat,args"], 10)).stdout.toString();
    assert.match(left, /sleep 31/);
    assert.match(left, /sleep 30/);
    await assert.rejects(mgr.execSync(id, ["no-such-binary"], 10), (err: unknown) => err instanceof BerthError && err.code === 13 && /executable file not found/.test(err.message));
    await mgr.remove(id);
  });

  test("ReopenContainerLog: conmon writes to a fresh file after rotation, no line lost", async () => {
    const id = await run({ command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo line$i; sleep 0.05; done"] });
    const s = (await statusOf(id, false)).status;
    await sleep(300);
    await rename(s.logPath, s.logPath + ".1");
    await mgr.reopenLog(id);
    await sleep(300);
    await mgr.stop(id, 0);
    const rotated = (await readFile(s.logPath + ".1", "utf8")).trim().split("\n").map((l) => CRI_LINE.exec(l)![4]);
    const fresh = (await readFile(s.logPath, "utf8")).trim().split("\n").map((l) => CRI_LINE.exec(l)![4]);
    assert.ok(fresh.length > 0);
    const all = [...rotated, ...fresh].map((t) => Number(t!.slice(4)));
    assert.deepEqual(all, all.map((_v, i) => i + 1));
    await mgr.remove(id);
  });

  test("UpdateContainerResources applies through runc and shows in ContainerStatus", async () => {
    const id = await run({ command: ["sleep", "300"], linux: { resources: { memoryLimitInBytes: 64n * 1024n * 1024n, cpuShares: 256n } } });
    const r = await mgr.record(id);
    const memFile = `/sys/fs/cgroup/memory${r.cgroupsPath}/memory.limit_in_bytes`;
    assert.equal((await readFile(memFile, "utf8")).trim(), String(64 * 1024 * 1024));
    await mgr.updateResources(id, LinuxContainerResources.fromPartial({ memoryLimitInBytes: 32n * 1024n * 1024n, cpuShares: 512n }), {});
    assert.equal((await readFile(memFile, "utf8")).trim(), String(32 * 1024 * 1024));
    assert.equal((await readFile(`/sys/fs/cgroup/cpu${r.cgroupsPath}/cpu.shares`, "utf8")).trim(), "512");
    const s = (await statusOf(id, false)).status;
    assert.equal(s.resources!.linux!.memoryLimitInBytes, 32n * 1024n * 1024n);
    await mgr.remove(id);
  });

  test("Stop: stop signal first, SIGKILL after the timeout; idempotent; Remove leaves nothing", async () => {
    const id = await run({ command: ["sh", "-c", "trap 'echo term' TERM; while true; do sleep 0.1; done"] });
    const rec = await mgr.record(id);
    await sleep(200);
    const t0 = Date.now();
    await mgr.stop(id, 1);
    const took = Date.now() - t0;
    assert.ok(took >= 900 && took < 5000, `stop took ${took} ms`);
    const s = (await statusOf(id, false)).status;
    assert.equal(s.state, ContainerState.CONTAINER_EXITED);
    assert.equal(s.exitCode, 137);
    assert.match(await readFile(rec.logPath, "utf8"), /stdout F term/, "the stop signal reached the process");
    await mgr.stop(id, 1);
    await mgr.remove(id);
    await mgr.remove(id);
    await assert.rejects(statusOf(id, false), (e: unknown) => e instanceof BerthError && e.code === 5);
    assert.equal(await stat(rec.bundle).then(() => true, () => false), false);
    assert.equal(await stat(`/sys/fs/cgroup/memory${rec.cgroupsPath}`).then(() => true, () => false), false);
    assert.equal(await isConmon(rec.conmonPid), false);
    assert.ok(!(await snapshots.keys()).includes(id));
    assert.ok(!(await readdir(new StateLayout(config).exits)).includes(id));
  });

  test("Stop: a process that exits on the stop signal stops at once with its own exit code", async () => {
    const id = await run({ command: ["sh", "-c", "trap 'exit 3' TERM; sleep 300 & wait"] });
    await sleep(200);
    const t0 = Date.now();
    await mgr.stop(id, 30);
    const took = Date.now() - t0;
    assert.ok(took < 2000, `stop took ${took} ms`);
    assert.equal((await statusOf(id, false)).status.exitCode, 3);
    await mgr.remove(id);
  });

  test("a container keeps running across a manager restart and is stopped by the new one", async () => {
    const id = await run({ command: ["sleep", "300"] });
    mgr.close();
    mgr = await newManager();
    const s = (await statusOf(id, true));
    assert.equal(s.status.state, ContainerState.CONTAINER_RUNNING);
    assert.ok(JSON.parse(s.info.info!).pid > 0);
    await mgr.stop(id, 0);
    assert.equal((await statusOf(id, false)).status.state, ContainerState.CONTAINER_EXITED);
    await mgr.remove(id);
  });

  test("ListContainers filters by id prefix, state, pod and labels; names are unique", async () => {
    const a = await mgr.create(pod.id, cfg({ command: ["sleep", "300"], labels: { app: "a" } }));
    const b = await run({ command: ["sleep", "300"], labels: { app: "b" } });
    assert.deepEqual((await listOf(undefined)).map((c) => c.id).sort(), [a, b].sort());
    assert.deepEqual((await listOf({ id: a.slice(0, 12), podSandboxId: "", labelSelector: {}, state: undefined })).map((c) => c.id), [a]);
    assert.deepEqual((await listOf({ id: "", podSandboxId: "", labelSelector: { app: "b" }, state: undefined })).map((c) => c.id), [b]);
    assert.deepEqual((await listOf({ id: "", podSandboxId: "", labelSelector: {}, state: { state: ContainerState.CONTAINER_CREATED } })).map((c) => c.id), [a]);
    assert.deepEqual((await listOf({ id: "", podSandboxId: "other", labelSelector: {}, state: undefined })), []);
    const meta = (await statusOf(a, false)).status.metadata!;
    await assert.rejects(mgr.create(pod.id, cfg({ metadata: meta, command: ["true"] })), (e: unknown) => e instanceof BerthError && e.code === 6);
    await mgr.remove(a);
    await mgr.remove(b);
  });
});
