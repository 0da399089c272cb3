// What kubelet polls, answered from what berth already knows: RuntimeReady follows the handler
// binary (removed, restored, a runtime call that cannot start it) without a process per Status;
// ImageFsInfo follows pulls and removals; stats read once per call and stay right. CNI bridge
// bs0 (10.206.0.0/24).
import assert from "node:assert/strict";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { removeCgroupParent } from "./harness/leaks.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { deleteBridge, podConfig, sh, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bs0";
const SUBNET = "10.206.0.0/24";
const CGROUP_PARENT = "/berth-test-steady";

describe("steady-state polling answers", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let bin: string;
  let seq = 0;

  const runtimeReady = async () => {
    const st = await d.cri.runtime.status({});
    const c = st.status!.conditions.find((x) => x.type === "RuntimeReady")!;
    return c;
  };

  const newPod = async (name: string) => {
    const config = podConfig(`${name}-${++seq}`, { linux: { cgroupParent: CGROUP_PARENT } });
    return { config, id: (await d.cri.runtime.runPodSandbox({ config })).podSandboxId };
  };
  const newContainer = async (pod: { id: string; config: unknown }, name: string, start = true) => {
    const { containerId } = await d.cri.runtime.createContainer({
      podSandboxId: pod.id,
      config: { metadata: { name }, image: { image }, command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"] },
      sandboxConfig: pod.config as never,
    });
    if (start) await d.cri.runtime.startContainer({ containerId });
    return containerId;
  };

  before(async () => {
    reg = await startRegistry();
    await pushImage(reg, "steady/busybox", { layers: [{ entries: await busyboxEntries(["sh", "sleep", "dd", "true"]) }], config: { Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/steady/busybox:1`;
    bin = path.join(await mkdtemp("/tmp/berth-steady-"), "bin");
    await mkdir(bin);
    // The handler is a script run by a copy of sh: removing that copy makes runtime calls fail to
    // start while the handler file itself stays unchanged.
    await copyFile("/bin/sh", path.join(bin, "sh"));
    await chmod(path.join(bin, "sh"), 0o755);
    const runc = (await sh("sh", ["-c", "command -v runc"])).stdout.trim();
    await writeFile(path.join(bin, "runc"), `#!${path.join(bin, "sh")}\nexec ${runc} "$@"\n`, { mode: 0o755 });
    d = await startBerthd({ config: `[runtime.handlers.runc]\npath = "${path.join(bin, "runc")}"\n` });
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    await d.cri.image.pullImage({ image: { image } });
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
    if (bin) await rm(path.dirname(bin), { recursive: true, force: true });
  });

  test("RuntimeReady turns false when the handler binary is removed and true when it is back", async () => {
    assert.equal((await runtimeReady()).status, true);
    const file = path.join(bin, "runc");
    await rename(file, `${file}.away`);
    // berthd learns of the change from an inotify watch, which may reach it just after the call.
    const gone = await waitFor("RuntimeReady false", async () => {
      const c = await runtimeReady();
      return !c.status && c;
    }, 5000);
    assert.equal(gone.reason, "OCIRuntimeNotRunnable");
    assert.match(gone.message, /handler "runc".*not there/);
    await rename(`${file}.away`, file);
    assert.equal((await runtimeReady()).status, true);
    // A rewrite in place (same inode) counts too: a broken binary is not ready.
    const good = await readFile(file);
    await writeFile(file, "#!/nonexistent/interpreter\n");
    await waitFor("RuntimeReady false after a rewrite", async () => !(await runtimeReady()).status, 5000);
    await writeFile(file, good);
    await waitFor("RuntimeReady true again", async () => (await runtimeReady()).status, 5000);
  });

  test("a runtime call that cannot start the handler marks RuntimeReady false until it runs again", async () => {
    const pod = await newPod("unrunnable");
    const id = await newContainer(pod, "c", false);
    const interp = path.join(bin, "sh");
    await rename(interp, `${interp}.away`);
    try {
      await assert.rejects(d.cri.runtime.startContainer({ containerId: id }));
      const c = await runtimeReady();
      assert.equal(c.status, false);
      assert.match(c.message, /a runtime call could not start it/);
    } finally {
      await rename(`${interp}.away`, interp);
    }
    assert.equal((await runtimeReady()).status, true);
    await d.cri.runtime.stopPodSandbox({ podSandboxId: pod.id });
    await d.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
  });

  test("ImageFsInfo follows a pull and a removal", async () => {
    const used = async () => Number((await d.cri.image.imageFsInfo({})).imageFilesystems[0]!.usedBytes!.value);
    const before = await used();
    await pushImage(reg, "steady/other", { layers: [{ entries: [{ path: "big", content: Buffer.alloc(300_000, 7) }] }], config: {} }, ["1"]);
    const other = `${reg.host}/steady/other:1`;
    await d.cri.image.pullImage({ image: { image: other } });
    const pulled = await used();
    assert.ok(pulled > before, `usedBytes ${pulled} after the pull, ${before} before`);
    // Past the 2 s in which a scan is not reused: the next answers come from the kept scan.
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(await used(), pulled);
    await d.cri.image.removeImage({ image: { image: other } });
    assert.equal(await used(), before);
  });

  test("pod stats sum their containers' cgroups, read once per call, and list every pod", async () => {
    const pods = [await newPod("stats"), await newPod("stats")];
    const ids = new Map<string, string[]>();
    for (const p of pods) ids.set(p.id, [await newContainer(p, "a"), await newContainer(p, "b")]);
    const one = ids.get(pods[0]!.id)![0]!;
    await d.cri.runtime.execSync({ containerId: one, cmd: ["/bin/dd", "if=/dev/zero", "of=/data", "bs=1024", "count=1024"], timeout: 10n });
    const first = (await d.cri.runtime.containerStats({ containerId: one })).stats!;
    assert.ok(Number(first.writableLayer!.usedBytes!.value) >= 1 << 20, `writable layer ${first.writableLayer!.usedBytes!.value} bytes`);
    assert.ok(Number(first.memory!.workingSetBytes!.value) > 0);
    // The layer's usage is walked at most once per 30 s: a write right after is not seen yet.
    await d.cri.runtime.execSync({ containerId: one, cmd: ["/bin/dd", "if=/dev/zero", "of=/data2", "bs=1024", "count=1024"], timeout: 10n });
    const again = (await d.cri.runtime.containerStats({ containerId: one })).stats!;
    assert.equal(again.writableLayer!.usedBytes!.value, first.writableLayer!.usedBytes!.value);

    const listed = (await d.cri.runtime.listPodSandboxStats({ filter: { labelSelector: {} } })).stats.filter((s) => ids.has(s.attributes!.id));
    assert.equal(listed.length, 2);
    for (const ps of listed) {
      const mine = ids.get(ps.attributes!.id)!;
      assert.deepEqual(ps.linux!.containers.map((c) => c.attributes!.id).sort(), [...mine].sort());
      const sum = ps.linux!.containers.reduce((acc, c) => acc + c.memory!.workingSetBytes!.value, 0n);
      // Summed from the very readings the containers report (no infra container: PID per container).
      assert.equal(ps.linux!.memory!.workingSetBytes!.value, sum);
      const cpu = ps.linux!.containers.reduce((acc, c) => acc + c.cpu!.usageCoreNanoSeconds!.value, 0n);
      assert.equal(ps.linux!.cpu!.usageCoreNanoSeconds!.value, cpu);
      assert.ok(Number(ps.linux!.process!.processCount!.value) >= 4, `process count ${ps.linux!.process!.processCount!.value}`);
      assert.ok(ps.linux!.network?.interfaces.some((i) => i.name === "eth0"));
    }
    const all = (await d.cri.runtime.listContainerStats({})).stats.map((s) => s.attributes!.id);
    for (const list of ids.values()) for (const id of list) assert.ok(all.includes(id));
  });
});
