// Image volumes (KEP-4639) through berthd's CRI socket with real runc: a pulled image's layers
// mounted read-only at a container path, held while the container exists, refused requests,
// image_ref honoured, and idmapped in a user-namespaced pod. Network: bridge bu2, 10.208.2.0/24.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { chmod, mkdtemp, readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState, MountPropagation, NamespaceMode } from "../src/gen/api.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { removeCgroupParent } from "./harness/leaks.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { deleteBridge, mountsUnder, podConfig, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bu2";
const SUBNET = "10.208.2.0/24";
const CGROUP_PARENT = "/berth-test-imagevol";
const MAPPING = [{ containerId: 0, hostId: 1_400_000, length: 65536 }];

function rpcError(code: number, re: RegExp) {
  return (err: { code: number; details: string }) => {
    assert.equal(err.code, code, `expected ${status[code]}, got ${status[err.code]}: ${err.details}`);
    assert.match(err.details, re);
    return true;
  };
}

describe("image volumes (Mount.image)", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let data: string;
  let dataId: string;
  let seq = 0;

  before(async () => {
    reg = await startRegistry();
    const base = await busyboxEntries(["sh", "cat", "echo", "touch", "stat", "sleep", "true", "ls"]);
    await pushImage(reg, "iv/busybox", { layers: [{ entries: base }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    // Two layers, the top one replacing a file of the bottom one.
    await pushImage(reg, "iv/data", {
      layers: [{ entries: [{ path: "data/hello.txt", content: "old\n" }, { path: "data/kept.txt", content: "kept\n" }] }, { entries: [{ path: "data/hello.txt", content: "hello from an image\n" }] }],
      config: { Env: ["PATH=/bin"] },
    }, ["1"]);
    image = `${reg.host}/iv/busybox:1`;
    data = `${reg.host}/iv/data:1`;
    const dir = await mkdtemp(path.join(tmpdir(), "berth-imagevol-"));
    await chmod(dir, 0o711);
    d = await startBerthd({ dir });
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    await d.cri.image.pullImage({ image: { image } });
    dataId = (await d.cri.image.pullImage({ image: { image: data } })).imageRef;
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  const newPod = async (name: string, userns = false) => {
    const cfg = podConfig(name, {
      logDirectory: path.join(d.dir, "logs", name),
      linux: {
        cgroupParent: CGROUP_PARENT,
        securityContext: { namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD, ...(userns ? { usernsOptions: { mode: NamespaceMode.POD, uids: MAPPING, gids: MAPPING } } : {}) } },
      },
    });
    return { id: (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId, cfg };
  };
  const create = async (pod: { id: string; cfg: Record<string, unknown> }, command: string[], mounts: unknown[]) => {
    const name = `c${++seq}`;
    return (await d.cri.runtime.createContainer({ podSandboxId: pod.id, sandboxConfig: pod.cfg, config: { metadata: { name }, image: { image }, command, logPath: `${name}.log`, mounts: mounts as never } })).containerId;
  };
  const runToEnd = async (containerId: string) => {
    await d.cri.runtime.startContainer({ containerId });
    const s = await waitFor("the container to exit", async () => {
      const st = (await d.cri.runtime.containerStatus({ containerId })).status!;
      return st.state === ContainerState.CONTAINER_EXITED ? st : undefined;
    }, 30_000);
    return { code: s.exitCode, out: (await readFile(s.logPath, "utf8")).split("\n").filter((l) => l).map((l) => l.split(" ").slice(3).join(" ")) };
  };
  const volume = (over: Record<string, unknown> = {}) => ({ containerPath: "/vol", image: { image: data }, readonly: true, ...over });

  test("the image's files read back inside, the volume cannot be written, and RemoveImage waits for the container", async () => {
    const pod = await newPod("iv-basic");
    const id = await create(pod, ["sh", "-c", "cat /vol/data/hello.txt /vol/data/kept.txt; if touch /vol/data/new 2>/dev/null; then echo WROTE; else echo read-only; fi"], [volume()]);
    const staged = path.join(d.state, "mounts", id);
    assert.equal((await mountsUnder(staged)).length, 1, "one read-only overlay staged for the container");
    const r = await runToEnd(id);
    assert.deepEqual(r.out, ["hello from an image", "kept", "read-only"]);
    await assert.rejects(d.cri.image.removeImage({ image: { image: dataId } }), rpcError(status.FAILED_PRECONDITION, new RegExp(`in use as an image volume by container ${id}`)));
    assert.ok((await d.cri.image.imageStatus({ image: { image: data } })).image, "the image is still there");
    await d.cri.runtime.removeContainer({ containerId: id });
    assert.deepEqual(await mountsUnder(staged), [], "the volume goes with the container");
    assert.deepEqual(await readdir(path.join(d.state, "mounts")), []);
    await d.cri.image.removeImage({ image: { image: dataId } });
    assert.equal((await d.cri.image.imageStatus({ image: { image: data } })).image, undefined);
    await d.cri.image.pullImage({ image: { image: data } });
    await d.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
  });

  test("image_ref (the digest kubelet resolved) is what is mounted; a sub path of the image", async () => {
    const pod = await newPod("iv-ref");
    const id = await create(pod, ["cat", "/sub/hello.txt"], [{ containerPath: "/sub", image: { image: "not-a-pulled-name:1", imageRef: dataId }, imageSubPath: "data", readonly: true }]);
    assert.deepEqual((await runToEnd(id)).out, ["hello from an image"]);
    await d.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
  });

  test("in a user-namespaced pod the volume's files look root-owned", async () => {
    const pod = await newPod("iv-userns", true);
    const id = await create(pod, ["stat", "-c", "%u:%g", "/vol/data/hello.txt", "/vol/data"], [volume()]);
    assert.deepEqual((await runToEnd(id)).out, ["0:0", "0:0"]);
    await d.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
    assert.deepEqual(await readdir(path.join(d.state, "mounts")), []);
  });

  test("refused: an image not present, readonly false, propagation other than private, a sub path leaving the image", async () => {
    const pod = await newPod("iv-bad");
    await assert.rejects(create(pod, ["true"], [volume({ image: { image: `${reg.host}/iv/never-pulled:1` } })]), rpcError(status.NOT_FOUND, /image .*iv\/never-pulled:1 \(an image volume\) not found/));
    await assert.rejects(create(pod, ["true"], [volume({ readonly: false })]), rpcError(status.INVALID_ARGUMENT, /must be read-only/));
    await assert.rejects(create(pod, ["true"], [volume({ propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER })]), rpcError(status.INVALID_ARGUMENT, /private propagation only/));
    await assert.rejects(create(pod, ["true"], [volume({ imageSubPath: "../etc" })]), rpcError(status.INVALID_ARGUMENT, /image_sub_path .* must be relative, without "\.\."/));
    assert.deepEqual((await d.cri.runtime.listContainers({ filter: { podSandboxId: pod.id } })).containers, []);
    assert.deepEqual(await readdir(path.join(d.state, "mounts")).catch(() => []), []);
    await d.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
  });
});
