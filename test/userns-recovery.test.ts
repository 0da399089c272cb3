// kill -9 at the steps user namespaces and image volumes add (the user-namespace pin made with
// the pod's other namespaces, its /dev/shm, the staged image volume and idmapped bind, the
// idmapped rootfs layers, container removal): after a restart on the same dirs nothing is
// left behind once the pods are removed. Network: bridge bu3, 10.208.3.0/24.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { NamespaceMode } from "../src/gen/api.js";
import { FAULT_POINTS, type FaultPoint } from "../src/faults.js";
import { startBerthd, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { removeCgroupParent } from "./harness/leaks.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { forceRemoveDir } from "./recovery-check.js";
import { deleteBridge, mountsUnder, podConfig, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bu3";
const SUBNET = "10.208.3.0/24";
const CGROUP_PARENT = "/berth-test-userns-rec";
const MAPPING = [{ containerId: 0, hostId: 1_500_000, length: 65536 }];
const POD_POINTS: FaultPoint[] = ["RunPodSandbox.after-netns", "RunPodSandbox.after-sysctls", "RunPodSandbox.after-shm", "RunPodSandbox.after-hosts"];
const CONTAINER_POINTS: FaultPoint[] = ["CreateContainer.after-volumes", "CreateContainer.after-snapshot", "CreateContainer.after-record", "RemoveContainer.after-runc-delete", "RemoveContainer.after-files"];

describe("kill -9 at the user-namespace and image-volume steps", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let data: string;
  let seq = 0;

  before(async () => {
    for (const p of [...POD_POINTS, ...CONTAINER_POINTS]) assert.ok(FAULT_POINTS.includes(p), p);
    reg = await startRegistry();
    const base = await busyboxEntries(["sh", "cat", "sleep", "true"]);
    await pushImage(reg, "ur/busybox", { layers: [{ entries: base }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    await pushImage(reg, "ur/data", { layers: [{ entries: [{ path: "d/x", content: "x\n" }] }] }, ["1"]);
    image = `${reg.host}/ur/busybox:1`;
    data = `${reg.host}/ur/data:1`;
    const dir = await mkdtemp(path.join(tmpdir(), "berth-userns-rec-"));
    await chmod(dir, 0o711);
    d = await startBerthd({ dir, config: "[cni]\nplugin_timeout = \"20s\"\n" });
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    await d.cri.image.pullImage({ image: { image } });
    await d.cri.image.pullImage({ image: { image: data } });
    await mkdir(path.join(d.dir, "vol"));
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    if (d) await forceRemoveDir(d.dir);
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  const podCfg = () => podConfig(`ur-${++seq}`, {
    logDirectory: path.join(d.dir, "logs"),
    linux: {
      cgroupParent: CGROUP_PARENT,
      sysctls: { "kernel.shm_rmid_forced": "1" },
      securityContext: { namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD, usernsOptions: { mode: NamespaceMode.POD, uids: MAPPING, gids: MAPPING } } },
    },
  });
  const ctrCfg = () => ({
    metadata: { name: `c${++seq}` }, image: { image }, command: ["sleep", "1000"], logPath: `c${seq}.log`,
    mounts: [
      { containerPath: "/data", image: { image: data }, readonly: true },
      { containerPath: "/vol", hostPath: path.join(d.dir, "vol"), uidMappings: MAPPING, gidMappings: MAPPING },
    ],
  });

  const crashAt = async (point: FaultPoint, op: () => Promise<unknown>) => {
    await d.stop();
    d = await d.restart({ env: { BERTH_FAULT_AT: point } });
    await assert.rejects(op(), (err: { code: number }) => err.code === status.UNAVAILABLE || err.code === status.INTERNAL);
    await d.stop();
    assert.equal(d.proc.signalCode, "SIGKILL", `berthd died at ${point}`);
    d = await d.restart({ env: {} });
  };

  /** After every pod is removed: no mount, pin or staged dir of berth's is left. */
  const assertNothingLeft = async (point: string) => {
    for (const p of (await d.cri.runtime.listPodSandbox({})).items) {
      await d.cri.runtime.stopPodSandbox({ podSandboxId: p.id });
      await d.cri.runtime.removePodSandbox({ podSandboxId: p.id });
    }
    assert.deepEqual(await mountsUnder(d.dir), [], `mounts left after ${point}`);
    // These dirs exist once the first pod or staged mount was made; only a missing dir counts as empty.
    const entries = (dir: string) => readdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" && path.dirname(dir).startsWith(d.dir)) return [];
      throw err;
    });
    assert.deepEqual(await entries(d.layout.stagedMounts), [], `staged mounts left after ${point}`);
    assert.deepEqual(await entries(d.layout.pins), [], `namespace pins left after ${point}`);
    assert.deepEqual(await readdir(path.join(d.root, "image", "snapshots")), [], `snapshots left after ${point}`);
    // The image volume's image is free again.
    await d.cri.image.removeImage({ image: { image: data } });
    await d.cri.image.pullImage({ image: { image: data } });
  };

  for (const point of POD_POINTS) {
    test(`kill -9 at ${point} of a user-namespaced pod`, async () => {
      await crashAt(point, () => d.cri.runtime.runPodSandbox({ config: podCfg() }));
      assert.deepEqual((await d.cri.runtime.listPodSandbox({})).items, [], "the half-made pod is rolled back");
      await assertNothingLeft(point);
    });
  }

  for (const point of CONTAINER_POINTS) {
    test(`kill -9 at ${point} of a container with an image volume and an idmapped bind`, async () => {
      const cfg = podCfg();
      const { podSandboxId } = await d.cri.runtime.runPodSandbox({ config: cfg });
      const op = async () => {
        const { containerId } = await d.cri.runtime.createContainer({ podSandboxId, sandboxConfig: cfg, config: ctrCfg() });
        await d.cri.runtime.startContainer({ containerId });
        await d.cri.runtime.stopContainer({ containerId, timeout: 0n });
        await d.cri.runtime.removeContainer({ containerId });
      };
      await crashAt(point, op);
      await assertNothingLeft(point);
    });
  }
});
