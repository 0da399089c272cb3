// The streaming lists (KEP-5825) against a real berthd with runc, conmon and a CNI bridge
// (bels1, 10.204.2.0/24): with 300 containers (created, not started; 3 running) across 3 pods,
// StreamContainers, StreamPodSandboxes, StreamImages, StreamContainerStats and
// StreamPodSandboxStats return the unary lists' items, with the same filters, in batches; a
// client that stops reading and cancels stops the stream's work.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import http2 from "node:http2";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { collect } from "../src/cri/client.js";
import { ContainerState, PodSandboxState, StreamContainersResponse } from "../src/gen/api.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { rawServerStream } from "./harness/grpc-raw.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { removeCgroupParent } from "./recovery-check.js";
import { deleteBridge, podConfig, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bels1";
const SUBNET = "10.204.2.0/24";
const CGROUP_PARENT = "/berth-test-list-stream";
const PODS = 3;
const PER_POD = 100;
const RUNNING = 3;

describe("streaming lists", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  const pods: string[] = [];
  const containers: string[] = [];

  before(async () => {
    reg = await startRegistry();
    const base = await busyboxEntries(["sh", "sleep"]);
    await pushImage(reg, "ls/busybox", { layers: [{ entries: base }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    await pushImage(reg, "ls/other", { layers: [{ entries: base }], config: { Cmd: ["sleep", "1"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/ls/busybox:1`;
    d = await startBerthd();
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    await d.cri.image.pullImage({ image: { image } });
    await d.cri.image.pullImage({ image: { image: `${reg.host}/ls/other:1` } });
    await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
    const started = Date.now();
    // 12 KiB of annotations each: 100 items pass BATCH_BYTES, so the byte bound splits the batches.
    const ballast = "y".repeat(12 * 1024);
    for (let p = 0; p < PODS; p++) {
      const cfg = podConfig(`lister-${p}`, { labels: { group: `g${p}` }, logDirectory: path.join(d.dir, "logs", `p${p}`), linux: { cgroupParent: CGROUP_PARENT } });
      const podId = (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId;
      pods.push(podId);
      const ids = new Array<string>(PER_POD);
      await Promise.all([0, 1, 2].map(async (w) => {
        for (let i = w; i < PER_POD; i += 3) {
          ids[i] = (await d.cri.runtime.createContainer({
            podSandboxId: podId, sandboxConfig: cfg,
            config: { metadata: { name: `c${i}` }, image: { image }, command: ["sleep", "1000"], logPath: `c${i}.log`, labels: { parity: i % 2 ? "odd" : "even" }, annotations: { "berth.test/ballast": ballast } },
          })).containerId;
        }
      }));
      containers.push(...ids);
    }
    for (const id of containers.slice(0, RUNNING)) await d.cri.runtime.startContainer({ containerId: id });
    process.stderr.write(`# ${containers.length} containers created in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  test("StreamContainers: the ListContainers items, with each filter, in batches of at most 100 items and 1 MiB", async () => {
    const all = await collect(d.cri.runtimeStreams.streamContainers({}));
    assert.ok(all.length >= 4, `${all.length} messages`);
    for (const m of all) {
      assert.ok(m.containers.length > 0 && m.containers.length <= 100);
      assert.ok(StreamContainersResponse.encode(m).finish().length <= 1024 * 1024, "at most 1 MiB");
    }
    const items = all.flatMap((m) => m.containers);
    assert.equal(items.length, PODS * PER_POD);
    assert.deepEqual(items, (await d.cri.runtime.listContainers({})).containers);
    const filters = [
      { podSandboxId: pods[1] },
      { labelSelector: { parity: "odd" } },
      { state: { state: ContainerState.CONTAINER_RUNNING } },
      { id: containers[150]!.slice(0, 12) },
      { podSandboxId: pods[2], labelSelector: { parity: "even" }, state: { state: ContainerState.CONTAINER_CREATED } },
    ];
    for (const filter of filters) {
      const streamed = (await collect(d.cri.runtimeStreams.streamContainers({ filter }))).flatMap((m) => m.containers);
      const listed = (await d.cri.runtime.listContainers({ filter })).containers;
      assert.ok(listed.length > 0, JSON.stringify(filter));
      assert.deepEqual(streamed, listed, JSON.stringify(filter));
    }
    assert.equal((await d.cri.runtime.listContainers({ filter: { state: { state: ContainerState.CONTAINER_RUNNING } } })).containers.length, RUNNING);
    assert.equal((await collect(d.cri.runtimeStreams.streamContainers({ filter: { podSandboxId: "no-such-pod" } }))).length, 0, "nothing matches: no message");
  });

  test("StreamPodSandboxes and StreamImages: the unary lists' items, with filters", async () => {
    const streamedPods = async (filter?: object) => (await collect(d.cri.runtimeStreams.streamPodSandboxes({ filter }))).flatMap((m) => m.podSandboxes);
    assert.deepEqual(await streamedPods(), (await d.cri.runtime.listPodSandbox({})).items);
    assert.deepEqual((await streamedPods()).map((p) => p.id), pods);
    for (const filter of [{ labelSelector: { group: "g1" } }, { id: pods[2]!.slice(0, 10) }, { state: { state: PodSandboxState.SANDBOX_READY } }]) {
      const listed = (await d.cri.runtime.listPodSandbox({ filter })).items;
      assert.ok(listed.length > 0);
      assert.deepEqual(await streamedPods(filter), listed, JSON.stringify(filter));
    }
    await assert.rejects(streamedPods({ state: { state: 7 } }), (err: { code: number; details: string }) => err.code === status.INVALID_ARGUMENT && /SANDBOX_READY or SANDBOX_NOTREADY/.test(err.details));
    await assert.rejects(d.cri.runtime.listPodSandbox({ filter: { state: { state: 7 as PodSandboxState } } }), (err: { code: number }) => err.code === status.INVALID_ARGUMENT);

    const streamedImages = async (filter?: object) => (await collect(d.cri.imageStreams.streamImages({ filter }))).flatMap((m) => m.images);
    const listed = (await d.cri.image.listImages({})).images;
    assert.equal(listed.length, 2);
    assert.deepEqual(await streamedImages(), listed);
    const one = { image: { image: `${reg.host}/ls/other:1` } };
    assert.deepEqual(await streamedImages(one), (await d.cri.image.listImages({ filter: one })).images);
    assert.equal((await streamedImages(one)).length, 1);
  });

  test("StreamContainerStats and StreamPodSandboxStats: the same containers and pods as the unary lists", async () => {
    const ids = (stats: Array<{ attributes?: { id: string } }>) => stats.map((s) => s.attributes!.id);
    const streamed = (await collect(d.cri.runtimeStreams.streamContainerStats({}))).flatMap((m) => m.containerStats);
    const listed = (await d.cri.runtime.listContainerStats({})).stats;
    assert.equal(listed.length, RUNNING);
    assert.deepEqual(ids(streamed), ids(listed));
    for (const s of streamed) assert.ok(s.cpu!.usageCoreNanoSeconds!.value > 0n && s.memory!.workingSetBytes!.value > 0n, "real cgroup figures");
    const byPod = { podSandboxId: pods[0] };
    assert.deepEqual(ids((await collect(d.cri.runtimeStreams.streamContainerStats({ filter: byPod }))).flatMap((m) => m.containerStats)),
      ids((await d.cri.runtime.listContainerStats({ filter: byPod })).stats));
    const none = { podSandboxId: pods[1] };
    assert.deepEqual((await collect(d.cri.runtimeStreams.streamContainerStats({ filter: none }))).length, 0);

    const podStats = (await collect(d.cri.runtimeStreams.streamPodSandboxStats({}))).flatMap((m) => m.podSandboxStats);
    assert.deepEqual(ids(podStats), ids((await d.cri.runtime.listPodSandboxStats({})).stats));
    assert.deepEqual(ids(podStats), pods);
    const g2 = { labelSelector: { group: "g2" } };
    assert.deepEqual(ids((await collect(d.cri.runtimeStreams.streamPodSandboxStats({ filter: g2 }))).flatMap((m) => m.podSandboxStats)), [pods[2]]);
  });

  test("PodSandboxStatus lists the pod's 100 containers as ContainerStatus answers them, and stays fast", async () => {
    const res = await d.cri.runtime.podSandboxStatus({ podSandboxId: pods[1] });
    assert.ok(res.timestamp > 0n);
    assert.deepEqual(res.containersStatuses.map((c) => c.id).sort(), containers.slice(PER_POD, 2 * PER_POD).sort());
    for (const c of res.containersStatuses.slice(0, 10)) assert.deepEqual(c, (await d.cri.runtime.containerStatus({ containerId: c.id })).status);
    const ms: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = process.hrtime.bigint();
      await d.cri.runtime.podSandboxStatus({ podSandboxId: pods[1] });
      ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    ms.sort((x, y) => x - y);
    const served = [...d.logs().matchAll(/"method":"PodSandboxStatus","ms":([\d.]+)/g)].map((m) => Number(m[1])).slice(-20).sort((x, y) => x - y);
    process.stderr.write(`# PodSandboxStatus with 100 containers (1.2 MB of annotations): median ${ms[10]!.toFixed(2)} ms at the client, ${served[10]} ms in berthd\n`);
    assert.ok(ms[10]! < 100, `median ${ms[10]} ms`);
  });

  test("a client that stops reading and cancels stops the stream", async () => {
    const raw = rawServerStream(d.socket, "/runtime.v1.RuntimeService/StreamContainers");
    await raw.headers;
    // The first ~1 MiB message cannot pass the 64 KiB window of a client that does not read.
    await new Promise((r) => setTimeout(r, 1000));
    raw.stream.close(http2.constants.NGHTTP2_CANCEL);
    const line = await waitFor("berthd to stop the stream", async () => /"method":"StreamContainers","items":(\d+)[^\n]*stream list stopped: the caller is gone/.exec(d.logs()) ?? undefined, 10_000);
    process.stderr.write(`# StreamContainers stopped after ${line![1]} of ${PODS * PER_POD} items\n`);
    assert.ok(Number(line![1]) < PODS * PER_POD, `${line![1]} items counted as sent`);
    raw.close();
    // berthd still answers.
    assert.equal((await d.cri.runtime.listContainers({})).containers.length, PODS * PER_POD);
  });
});
