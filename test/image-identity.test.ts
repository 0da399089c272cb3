// Image identity (the cri-api v0.36 contract, cri-tools v1.36's image specs) against a real berthd:
// one ID for one image whatever names and registry hosts it was pulled under (the registry is
// reached as 127.0.0.1:<port>, as localhost:<port> and as the mirror of mirror.test), in PullImage, ImageStatus, ListImages and
// the containers made from it; RemoveImage by any one name removes the image; ImageSpec.image_ref.
// Pods on a CNI bridge bi0, 10.203.0.0/24.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState } from "../src/gen/api.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage, type PushedImage } from "./harness/images.js";
import { removeCgroupParent } from "./harness/leaks.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { deleteBridge, podConfig, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bi0";
const SUBNET = "10.203.0.0/24";
const CGROUP_PARENT = "/berth-test-image-identity";

type GrpcErr = { code: number; details: string };

describe("one image, one ID", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let img: PushedImage;
  let byIp: string;
  let byName: string;
  const byMirror = "mirror.test/id/busybox";
  const allTags = () => [`${byIp}:1`, `${byIp}:2`, `${byName}:1`, `${byMirror}:1`];

  const dirEntries = async (...p: string[]) => (await readdir(path.join(d.root, "image", ...p))).filter((n) => n !== "empty" && n !== "quarantine").sort();
  const pullAll = async () => {
    const refs = [];
    for (const r of allTags()) refs.push((await d.cri.image.pullImage({ image: { image: r } })).imageRef);
    return refs;
  };
  const assertGone = async (names: string[]) => {
    for (const q of [...names, img.id, `${byIp}@${img.manifestDigest}`, `${byName}@${img.manifestDigest}`, `${byMirror}@${img.manifestDigest}`]) {
      assert.equal((await d.cri.image.imageStatus({ image: { image: q } })).image, undefined, q);
    }
    assert.equal((await d.cri.image.imageStatus({ image: { image: "", imageRef: img.id } })).image, undefined);
    assert.ok(!(await d.cri.image.listImages({})).images.some((i) => i.id === img.id));
  };
  const assertNothingLeft = async () => {
    assert.deepEqual(await dirEntries("layers"), []);
    assert.deepEqual(await dirEntries("blobs", "sha256"), []);
    assert.deepEqual(await dirEntries("meta", "images"), []);
    assert.deepEqual(await dirEntries("snapshots"), []);
  };

  before(async () => {
    reg = await startRegistry();
    img = await pushImage(reg, "id/busybox", { layers: [{ entries: await busyboxEntries(["sh", "true", "sleep"]) }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1", "2"]);
    byIp = `${reg.host}/id/busybox`;
    byName = `${reg.host.replace("127.0.0.1", "localhost")}/id/busybox`;
    d = await startBerthd({ config: `[image]\npause_image = "${byIp}:pause-unused"\n[image.mirrors]\n"mirror.test" = ["http://${reg.host}"]\n` });
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
  });
  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  test("two tags, a second registry host and a mirror: one ID in PullImage, ListImages and ImageStatus by every name", async () => {
    assert.deepEqual(await pullAll(), [img.id, img.id, img.id, img.id]);
    const mine = (await d.cri.image.listImages({})).images.filter((i) => i.id === img.id);
    assert.equal(mine.length, 1, "one image, not one per name");
    const listed = mine[0]!;
    assert.deepEqual([...listed.repoTags].sort(), allTags().sort());
    assert.deepEqual([...listed.repoDigests].sort(), [byIp, byName, byMirror].map((n) => `${n}@${img.manifestDigest}`).sort());
    for (const q of [...listed.repoTags, ...listed.repoDigests, img.id, img.id.slice(7), img.id.slice(7, 19), img.manifestDigest]) {
      assert.deepEqual((await d.cri.image.imageStatus({ image: { image: q } })).image, listed, q);
    }
    // image_ref (the ID PullImage returned) names the image whatever image says.
    assert.deepEqual((await d.cri.image.imageStatus({ image: { image: "", imageRef: img.id } })).image, listed);
    assert.deepEqual((await d.cri.image.imageStatus({ image: { image: `${byIp}:never-pulled`, imageRef: img.id } })).image, listed);
    assert.deepEqual((await d.cri.image.imageStatus({ image: { image: "", imageRef: `${byName}@${img.manifestDigest}` } })).image, listed);
    assert.deepEqual((await d.cri.image.imageStatus({ image: { image: "", imageRef: img.manifestDigest } })).image, listed);
    assert.deepEqual((await d.cri.image.listImages({ filter: { image: { image: "", imageRef: img.id } } })).images, [listed]);
    assert.equal(listed.spec!.imageRef, img.id);
    await assert.rejects(d.cri.image.imageStatus({ image: { image: "" } }), (e: GrpcErr) => e.code === status.INVALID_ARGUMENT);
  });

  test("containers report the same ID as image_id, whichever name or image_ref created them", async () => {
    const cfg = podConfig("identity", { linux: { cgroupParent: CGROUP_PARENT } });
    const podSandboxId = (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId;
    const create = async (name: string, image: { image: string; imageRef?: string }) =>
      (await d.cri.runtime.createContainer({ podSandboxId, sandboxConfig: cfg, config: { metadata: { name }, image, command: ["true"] } })).containerId;
    const a = await create("by-other-host", { image: `${byName}:1` });
    const b = await create("by-image-ref", { image: `${byIp}:never-pulled`, imageRef: img.id });
    await d.cri.runtime.startContainer({ containerId: b });
    const s = await waitFor("container b to exit", async () => {
      const st = (await d.cri.runtime.containerStatus({ containerId: b })).status!;
      return st.state === ContainerState.CONTAINER_EXITED ? st : undefined;
    }, 20_000);
    assert.equal(s.exitCode, 0, "the image_ref-created container ran from the image's rootfs");
    for (const id of [a, b]) {
      const st = (await d.cri.runtime.containerStatus({ containerId: id })).status!;
      assert.equal(st.imageId, img.id, id);
      assert.match(st.imageRef, new RegExp(`@${img.manifestDigest}$`));
    }
    const listed = (await d.cri.runtime.listContainers({ filter: { podSandboxId } })).containers;
    assert.deepEqual(listed.map((c) => c.imageId), [img.id, img.id]);
    await assert.rejects(create("nothing", { image: `${byIp}:never-pulled`, imageRef: `sha256:${"0".repeat(64)}` }),
      (e: GrpcErr) => e.code === status.NOT_FOUND && e.details.includes("never-pulled"));
    await d.cri.runtime.stopPodSandbox({ podSandboxId });
    await d.cri.runtime.removePodSandbox({ podSandboxId });
  });

  test("RemoveImage by one name of another registry host removes the image, every name and everything on disk", async () => {
    await d.cri.image.removeImage({ image: { image: `${byName}:1` } });
    await assertGone(allTags());
    await assertNothingLeft();
  });

  test("RemoveImage of an unknown image succeeds (by tag, digest, ID or image_ref)", async () => {
    await d.cri.image.removeImage({ image: { image: `${byIp}:1` } });
    await d.cri.image.removeImage({ image: { image: `${byIp}@sha256:${"1".repeat(64)}` } });
    await d.cri.image.removeImage({ image: { image: `sha256:${"2".repeat(64)}` } });
    await d.cri.image.removeImage({ image: { image: "", imageRef: `sha256:${"3".repeat(64)}` } });
    await assert.rejects(d.cri.image.removeImage({ image: { image: "" } }), (e: GrpcErr) => e.code === status.INVALID_ARGUMENT);
  });

  test("present as soon as PullImage returns, absent as soon as RemoveImage returns", async () => {
    for (let i = 0; i < 4; i++) {
      const name = i % 2 ? `${byName}:2` : `${byIp}:1`;
      const { imageRef } = await d.cri.image.pullImage({ image: { image: name } });
      assert.equal((await d.cri.image.imageStatus({ image: { image: name } })).image?.id, img.id, `round ${i}`);
      assert.ok((await d.cri.image.listImages({})).images.some((x) => x.id === imageRef), `round ${i}`);
      await d.cri.image.removeImage({ image: i % 2 ? { image: name } : { image: "", imageRef } });
      await assertGone([name]);
    }
    await assertNothingLeft();
  });

  test("concurrent RemoveImage calls of one image all succeed and free its layers once", async () => {
    await pullAll();
    const logLen = d.logs().length;
    const specs = [...allTags(), img.id, img.id.slice(7), `${byIp}@${img.manifestDigest}`, `${byName}:1`, `${byMirror}:1`];
    const results = await Promise.allSettled(specs.map((image) => d.cri.image.removeImage({ image: { image } })));
    assert.deepEqual(results.map((r) => r.status), specs.map(() => "fulfilled"), JSON.stringify(results.filter((r) => r.status === "rejected")));
    await assertGone(allTags());
    await assertNothingLeft();
    const removedLines = d.logs().slice(logLen).split("\n").filter((l) => l.includes('"msg":"image removed"'));
    assert.equal(removedLines.length, 1, "one of the calls removed it");
    // And the store still works: the same content pulls back.
    assert.equal((await d.cri.image.pullImage({ image: { image: `${byName}:1` } })).imageRef, img.id);
    await d.cri.image.removeImage({ image: { image: img.id } });
    await assertNothingLeft();
  });
});
