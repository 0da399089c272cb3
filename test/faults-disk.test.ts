// A full disk under berth's root: root is a 48 MiB tmpfs of its own (made here), filled with a
// fallocated file. A pull and a create that run out of space fail with RESOURCE_EXHAUSTED and
// leave nothing; a container whose log fills the disk keeps running and berthd keeps answering;
// no record is half-written; once space is freed everything works without a restart.
// Bridge bfdk0 (10.207.2.0/24).
import { status } from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState } from "../src/gen/api.js";
import { decodeRecord } from "../src/store/records.js";
import { removeAllPods, startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { removeCgroupParent } from "./harness/leaks.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { deleteBridge, filesUnder, podConfig, sh, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bfdk0";
const SUBNET = "10.207.2.0/24";
const CGROUP_PARENT = "/berth-faults-disk";
const SIZE_MIB = 48;

function rpcError(code: number, re: RegExp) {
  return (err: { code: number; details: string }) => {
    assert.equal(err.code, code, `expected ${status[code]}, got ${status[err.code]}: ${err.details}`);
    assert.match(err.details, re);
    process.stderr.write(`# ${status[code]}: ${err.details}\n`);
    return true;
  };
}

/** Every berth record file under root (store/records.ts format), by path. */
async function recordFiles(root: string): Promise<string[]> {
  const all = (await readdir(root, { recursive: true })).map(String);
  return all.filter((f) => f.endsWith(".json") && !f.includes("quarantine") && !f.startsWith("podlogs") && !f.includes("blobs")).map((f) => path.join(root, f));
}

describe("a full disk under berth's root", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let dir: string;
  let root: string;
  let image: string;
  let bigImage: string;
  let logDir: string;

  const avail = async () => {
    const s = await statfs(root);
    return s.bavail * s.bsize;
  };
  /** Fills root's filesystem up to `keep` bytes free. */
  const fill = async (keep: number) => {
    await rm(path.join(root, "filler"), { force: true });
    const n = (await avail()) - keep;
    if (n > 0) assert.equal((await sh("fallocate", ["-l", String(n), path.join(root, "filler")])).code, 0);
  };
  const unfill = () => rm(path.join(root, "filler"), { force: true });
  /** Nothing half-made under root: no temp files of interrupted writes, every record decodes. */
  const assertRecordsWhole = async () => {
    const temps = (await readdir(root, { recursive: true })).map(String).filter((f) => path.basename(f).startsWith(".tmp-") || /(^|\/)tmp-\d+$/.test(f));
    assert.deepEqual(temps, []);
    for (const f of await recordFiles(root)) assert.doesNotThrow(() => decodeRecord(readFileSyncText(f)), `record ${f} is torn`);
  };
  const texts = new Map<string, string>();
  const readFileSyncText = (f: string) => texts.get(f)!;
  const loadTexts = async () => {
    texts.clear();
    for (const f of await recordFiles(root)) texts.set(f, await readFile(f, "utf8"));
  };
  const imageDirs = async () => ({
    layers: (await readdir(path.join(root, "image", "layers"))).sort(),
    blobs: (await readdir(path.join(root, "image", "blobs", "sha256"))).sort(),
    snapshots: (await readdir(path.join(root, "image", "snapshots")).catch(() => [] as string[])).sort(),
  });

  before(async () => {
    reg = await startRegistry();
    const base = await busyboxEntries(["sh", "sleep", "echo", "true", "cat", "yes", "head"]);
    await pushImage(reg, "faults/busybox", { layers: [{ entries: base }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    // 6 MiB that does not compress: more than the space left when it is pulled.
    await pushImage(reg, "faults/big", { layers: [{ entries: base }, { entries: [{ path: "big", content: randomBytes(6 << 20) }] }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/faults/busybox:1`;
    bigImage = `${reg.host}/faults/big:1`;
    dir = await mkdtemp(path.join(tmpdir(), "berth-faults-disk-"));
    root = path.join(dir, "root");
    await mkdir(root);
    assert.equal((await sh("mount", ["-t", "tmpfs", "-o", `size=${SIZE_MIB}m,mode=0711`, "berth-faults-disk", root])).code, 0);
    logDir = path.join(root, "podlogs");
    await writeBridgeConflist(dir, BRIDGE, SUBNET);
    d = await startBerthd({ dir });
    await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
    await d.cri.image.pullImage({ image: { image } });
  });

  after(async () => {
    await unfill().catch(() => undefined);
    if (d) {
      await removeAllPods(d);
      await d.stop();
    }
    await sh("umount", [root]);
    await rm(dir, { recursive: true, force: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  let seq = 0;
  const newPod = async (name: string) => {
    const cfg = podConfig(name, { logDirectory: path.join(logDir, name), linux: { cgroupParent: CGROUP_PARENT } });
    return { podSandboxId: (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId, cfg };
  };
  const create = async (pod: { podSandboxId: string; cfg: Record<string, unknown> }, command: string[], img = image) =>
    (await d.cri.runtime.createContainer({ podSandboxId: pod.podSandboxId, sandboxConfig: pod.cfg, config: { metadata: { name: `c${++seq}` }, image: { image: img }, command, logPath: `c${seq}.log` } })).containerId;

  test("full disk: pull and create fail with RESOURCE_EXHAUSTED leaving nothing; a log that fills the disk does not stop the container or berthd; space freed: all works", async () => {
    const pod = await newPod("disk");
    const imagesBefore = await imageDirs();
    const listedBefore = (await d.cri.image.listImages({})).images.map((i) => i.id).sort();

    // A pull that runs out of space.
    await fill(1 << 20);
    await assert.rejects(d.cri.image.pullImage({ image: { image: bigImage } }), rpcError(status.RESOURCE_EXHAUSTED, new RegExp(`faults/big.*no space left on the filesystem of ${root}/image`)));
    assert.deepEqual((await d.cri.image.listImages({})).images.map((i) => i.id).sort(), listedBefore);
    assert.deepEqual(await imageDirs(), imagesBefore, "a partial blob, layer or snapshot is left");
    await loadTexts();
    await assertRecordsWhole();

    // A create that runs out of space.
    await fill(0);
    await assert.rejects(create(pod, ["sleep", "1000"]), rpcError(status.RESOURCE_EXHAUSTED, new RegExp(`no space left on the filesystem of ${root}/`)));
    assert.deepEqual((await d.cri.runtime.listContainers({})).containers, []);
    assert.deepEqual((await imageDirs()).snapshots, imagesBefore.snapshots, "a snapshot is left");
    assert.deepEqual(await filesUnder(path.join(d.state, "containers")), [], "a bundle is left");
    const cgroups = (await readdir(path.join("/sys/fs/cgroup/memory", CGROUP_PARENT)).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}$/.test(n));
    assert.deepEqual(cgroups, [], "a cgroup is left");

    // A container whose log fills the disk.
    await fill(4 << 20);
    const loud = await create(pod, ["sh", "-c", "yes 'the disk fills with this line, over and over'"]);
    await d.cri.runtime.startContainer({ containerId: loud });
    await waitFor("the log to fill the disk", async () => (await avail()) < 64 * 1024, 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    const started = Date.now();
    assert.equal((await d.cri.runtime.containerStatus({ containerId: loud })).status!.state, ContainerState.CONTAINER_RUNNING);
    const ex = await d.cri.runtime.execSync({ containerId: loud, cmd: ["echo", "still here"], timeout: 10n });
    assert.equal(Buffer.from(ex.stdout).toString(), "still here\n");
    await d.cri.runtime.version({});
    await d.cri.runtime.listPodSandbox({});
    await d.cri.image.imageFsInfo({});
    process.stderr.write(`# disk full: status, exec, version, list, imageFsInfo answered in ${Date.now() - started} ms\n`);
    // Calls that write records while the disk is full either succeed or say so.
    const other = await create(pod, ["sleep", "1000"]).catch((err: { code: number; details: string }) => {
      assert.equal(err.code, status.RESOURCE_EXHAUSTED, err.details);
      return undefined;
    });
    if (other) await d.cri.runtime.removeContainer({ containerId: other });
    await d.cri.runtime.stopContainer({ containerId: loud, timeout: 0n }).catch((err: { code: number; details: string }) => assert.equal(err.code, status.RESOURCE_EXHAUSTED, err.details));
    await loadTexts();
    await assertRecordsWhole();

    // Space freed: everything works, no restart.
    await unfill();
    await d.cri.runtime.stopContainer({ containerId: loud, timeout: 0n });
    assert.equal((await d.cri.runtime.containerStatus({ containerId: loud })).status!.state, ContainerState.CONTAINER_EXITED);
    await d.cri.runtime.removeContainer({ containerId: loud });
    await rm(path.join(logDir, "disk"), { recursive: true, force: true });
    await mkdir(path.join(logDir, "disk"));
    await d.cri.image.pullImage({ image: { image: bigImage } });
    const fine = await create(pod, ["sh", "-c", "echo fine; sleep 1000"], bigImage);
    await d.cri.runtime.startContainer({ containerId: fine });
    assert.equal((await d.cri.runtime.containerStatus({ containerId: fine })).status!.state, ContainerState.CONTAINER_RUNNING);

    // Every record reads back after a kill -9 and a restart: none is quarantined.
    await d.stop("SIGKILL");
    await loadTexts();
    await assertRecordsWhole();
    d = await d.restart();
    assert.doesNotMatch(d.logs(), /quarantined/);
    assert.equal((await d.cri.runtime.containerStatus({ containerId: fine })).status!.state, ContainerState.CONTAINER_RUNNING);
    await d.cri.runtime.removeContainer({ containerId: fine });
    await d.cri.runtime.stopPodSandbox({ podSandboxId: pod.podSandboxId });
    await d.cri.runtime.removePodSandbox({ podSandboxId: pod.podSandboxId });
  });
});
