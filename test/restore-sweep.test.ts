// Restore's orphan sweep (src/runtime/restore.ts, step 4): with berthd down, every kind of
// orphan is left under its state and root — a container whose record is gone (its conmon, runc
// state, cgroup, rootfs overlay, bundle and socket link are real), and planted ones: a namespace
// pin bind mount and a /dev/shm tmpfs of no pod, a staged overlay mount, a socket link and an
// exit file of no container, an empty container cgroup, a process that looks like a container's
// conmon. After a start each is gone, and the pod that has a record is untouched.
// Network: bridge br209s, 10.209.1.0/24; cgroups under /berth-test-sweep.
import { spawn, type ChildProcess } from "node:child_process";
import assert from "node:assert/strict";
import { lstat, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { PodSandboxState } from "../src/gen/api.js";
import { processRunning } from "../src/proc.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { forceRemoveDir, removeCgroupParent } from "./recovery-check.js";
import { deleteBridge, mountsUnder, podConfig, sh, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "br209s";
const SUBNET = "10.209.1.0/24";
const CGROUP_PARENT = "/berth-test-sweep";
const CGROUP_ROOT = "/sys/fs/cgroup";

const gone = (p: string) => lstat(p).then(() => false, (err: NodeJS.ErrnoException) => err.code === "ENOENT");
const alive = (pid: number) => processRunning(pid);

describe("restore sweeps every kind of orphan", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let fakeConmon: ChildProcess | undefined;

  before(async () => {
    reg = await startRegistry();
    const base = await busyboxEntries(["sh", "sleep"]);
    await pushImage(reg, "sweep/busybox", { layers: [{ entries: base }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/sweep/busybox:1`;
    d = await startBerthd({ config: `[cni]\nplugin_timeout = "20s"\n` });
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    await d.cri.image.pullImage({ image: { image } });
    await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
  });

  after(async () => {
    fakeConmon?.kill("SIGKILL");
    await d?.cleanup({ removePods: true });
    if (d) await forceRemoveDir(d.dir);
    await reg?.stop();
    await deleteBridge(BRIDGE);
    for (const hier of await readdir(CGROUP_ROOT).catch(() => [] as string[])) {
      // Cleanup after a failure only: what the test left (a passing run leaves nothing).
      for (const e of await readdir(path.join(CGROUP_ROOT, hier, CGROUP_PARENT)).catch(() => [] as string[])) {
        if (e.startsWith("berth-")) await sh("rmdir", [path.join(CGROUP_ROOT, hier, CGROUP_PARENT, e)]);
      }
    }
    await removeCgroupParent(CGROUP_PARENT);
  });

  test("pins, mounts, links, exit files, cgroups and conmons of no record are removed at start", async () => {
    const L = d.layout;
    const cfg = podConfig("keep", { linux: { cgroupParent: CGROUP_PARENT } });
    const pod = (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId;
    const doomed = (await d.cri.runtime.createContainer({ podSandboxId: pod, sandboxConfig: cfg, config: { metadata: { name: "doomed" }, image: { image }, command: ["sleep", "1000"] } })).containerId;
    await d.cri.runtime.startContainer({ containerId: doomed });
    const info = JSON.parse((await d.cri.runtime.containerStatus({ containerId: doomed, verbose: true })).info.info!) as { conmonPid: number; pid: number; runtimeRoot: string; cgroupsPath: string; rootfs: string };
    await d.stop("SIGKILL");

    // The real orphan: berth forgets the container (its record file is gone) while it runs.
    await rm(path.join(L.containerRecords, `${doomed}.json`));
    const doomedCgroups = (await readdir(CGROUP_ROOT)).map((h) => path.join(CGROUP_ROOT, h, info.cgroupsPath)).filter((p) => p.includes(CGROUP_PARENT));
    assert.ok((await Promise.all(doomedCgroups.map((p) => stat(p).then(() => true, () => false)))).some(Boolean), "the doomed container has a cgroup to sweep");
    assert.ok((await mountsUnder(info.rootfs)).length > 0, "the doomed container's rootfs is mounted");
    assert.ok(!(await gone(L.socketLink(doomed))), "conmon linked the doomed container's attach socket");

    // Planted orphans, named like berth ids no record has.
    const fakePod = "e".repeat(64);
    const fakeCtr = "f".repeat(64);
    const pin = L.pin(fakePod, "net");
    await mkdir(path.dirname(pin), { recursive: true });
    await writeFile(pin, "");
    assert.equal((await sh("mount", ["--bind", "/proc/self/ns/net", pin])).code, 0);
    const shm = L.podShm(fakePod);
    await mkdir(shm, { recursive: true });
    assert.equal((await sh("mount", ["-t", "tmpfs", "-o", "size=1m", "shm", shm])).code, 0);
    const staged = path.join(L.stagedMounts, fakeCtr, "0");
    const ovl = path.join(d.dir, "ovl");
    for (const sub of ["lower", "upper", "work"]) await mkdir(path.join(ovl, sub), { recursive: true });
    await mkdir(staged, { recursive: true });
    assert.equal((await sh("mount", ["-t", "overlay", "-o", `lowerdir=${ovl}/lower,upperdir=${ovl}/upper,workdir=${ovl}/work`, "overlay", staged])).code, 0);
    await symlink(L.bundle(fakeCtr).attach, L.socketLink(fakeCtr));
    await writeFile(L.exitFile(fakeCtr), "0");
    const plantedCgroups: string[] = [];
    for (const hier of ["memory", "cpu,cpuacct", "pids"]) {
      const dir = path.join(CGROUP_ROOT, hier, CGROUP_PARENT, `berth-${fakeCtr}`);
      if (await mkdir(dir, { recursive: true }).then(() => true, () => false)) plantedCgroups.push(dir);
    }
    assert.ok(plantedCgroups.length > 0, "a cgroup was planted");
    // A process that passes for the container's conmon: its name and the flags conmon is started with.
    fakeConmon = spawn("python3", ["-c", "open('/proc/self/comm','w').write('conmon'); import time; time.sleep(1000)", "--bundle", L.bundle(fakeCtr).dir, "--cid", fakeCtr], { stdio: "ignore" });
    const fakePid = fakeConmon.pid!;
    await waitFor("the fake conmon to take its name", async () => (await readFile(`/proc/${fakePid}/comm`, "utf8").catch(() => "")).trim() === "conmon", 5000);
    const fakeExited = new Promise<void>((resolve) => fakeConmon!.once("exit", () => resolve()));

    d = await d.restart();

    assert.match(d.logs(), /removed the resources of a pod berth has no record of/);
    assert.match(d.logs(), /removed the resources of a container berth has no record of/);
    assert.match(d.logs(), /removed the staged mounts/);
    // The pod with a record and its network stay.
    const kept = await d.cri.runtime.podSandboxStatus({ podSandboxId: pod });
    assert.equal(kept.status!.state, PodSandboxState.SANDBOX_READY);
    assert.deepEqual((await d.cri.runtime.listContainers({})).containers, []);

    // Planted pod orphans.
    assert.deepEqual(await mountsUnder(L.pinDir(fakePod)), [], "the stray pin is unmounted");
    assert.ok(await gone(L.pinDir(fakePod)), "the stray pin dir is removed");
    assert.deepEqual(await mountsUnder(L.podDir(fakePod)), [], "the stray /dev/shm is unmounted");
    assert.ok(await gone(L.podDir(fakePod)));
    // Planted container orphans.
    assert.deepEqual(await mountsUnder(path.join(L.stagedMounts, fakeCtr)), [], "the staged overlay is unmounted");
    assert.ok(await gone(path.join(L.stagedMounts, fakeCtr)));
    assert.ok(await gone(L.socketLink(fakeCtr)), "the stray socket link is removed");
    assert.ok(await gone(L.exitFile(fakeCtr)), "the stray exit file is removed");
    for (const dir of plantedCgroups) assert.ok(await gone(dir), `${dir} is removed`);
    await Promise.race([fakeExited, new Promise((_, reject) => setTimeout(() => reject(new Error("the fake conmon still runs")), 5000))]);
    fakeConmon = undefined;
    // The forgotten container: its processes, runtime state, cgroup, rootfs and files.
    await waitFor("the doomed container's conmon and process to go", async () => !(await alive(info.conmonPid)) && !(await alive(info.pid)), 5000);
    assert.ok(await gone(path.join(info.runtimeRoot, doomed)), "runc's state is deleted");
    for (const p of doomedCgroups) assert.ok(await gone(p), `${p} is removed`);
    assert.deepEqual(await mountsUnder(info.rootfs), [], "the rootfs overlay is unmounted");
    assert.ok(await gone(L.snapshot(doomed)), "the snapshot is removed");
    assert.ok(await gone(L.bundle(doomed).dir), "the bundle is removed");
    assert.ok(await gone(L.socketLink(doomed)), "the socket link is removed");
    // Nothing else of either is left in berth's container dirs.
    for (const dir of [L.bundles, L.exits, L.sockets, L.stagedMounts]) {
      assert.deepEqual((await readdir(dir)).filter((n) => n === doomed || n === fakeCtr), [], `${dir} is swept`);
    }
  });
});
