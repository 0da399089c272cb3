// GetContainerEvents (evented PLEG) against a real berthd with runc, conmon and a CNI bridge
// (beev1, 10.204.1.0/24): the whole life of a pod and its containers seen by two subscribers
// in order with the statuses attached; PodSandboxStatus listing the pod's containers; a
// subscriber that stops reading (raw HTTP/2, flow control stalls) cut off while another gets
// everything and berthd's memory stays bounded; a container that exits while berthd is killed
// (-9) yields its STOPPED event after the restart.
import type { ClientReadableStream } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerEventResponse, ContainerEventType, ContainerState, NamespaceMode, PodSandboxState } from "../src/gen/api.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { rawServerStream } from "./harness/grpc-raw.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { removeCgroupParent } from "./recovery-check.js";
import { deleteBridge, podConfig, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "beev1";
const SUBNET = "10.204.1.0/24";
const CGROUP_PARENT = "/berth-test-events";
const T = ContainerEventType;

/** A GetContainerEvents subscriber that keeps every event it reads. */
interface Subscriber {
  events: ContainerEventResponse[];
  error: Promise<Error>;
  /** Waits for an event matching `pred` and returns it. */
  waitFor(what: string, pred: (e: ContainerEventResponse) => boolean, ms?: number): Promise<ContainerEventResponse>;
  close(): void;
}

async function subscribe(d: Berthd): Promise<Subscriber> {
  const call: ClientReadableStream<ContainerEventResponse> = d.cri.runtimeStreams.getContainerEvents({});
  const events: ContainerEventResponse[] = [];
  call.on("data", (e: ContainerEventResponse) => events.push(e));
  const error = new Promise<Error>((resolve) => call.on("error", resolve));
  // berthd sends the headers once the subscription is in place.
  await new Promise<void>((resolve, reject) => {
    call.once("metadata", () => resolve());
    call.once("error", reject);
  });
  return {
    events,
    error,
    waitFor: (what, pred, ms = 30_000) => waitFor(what, async () => events.find(pred), ms),
    close: () => call.cancel(),
  };
}

const pick = (e: ContainerEventResponse) => [e.containerId, e.containerEventType] as const;

describe("GetContainerEvents", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;

  const newPod = async (name: string, extra: Record<string, unknown> = {}) => {
    const cfg = podConfig(name, { logDirectory: path.join(d.dir, "logs", name), ...extra, linux: { cgroupParent: CGROUP_PARENT, ...(extra.linux as object | undefined) } });
    return { id: (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId, cfg };
  };
  const create = async (pod: { id: string; cfg: Record<string, unknown> }, name: string, command: string[]) =>
    (await d.cri.runtime.createContainer({ podSandboxId: pod.id, sandboxConfig: pod.cfg, config: { metadata: { name }, image: { image }, command, logPath: `${name}.log` } })).containerId;
  const rss = async () => Number(/^VmRSS:\s+(\d+) kB/m.exec(await readFile(`/proc/${d.proc.pid}/status`, "utf8"))![1]) * 1024;

  before(async () => {
    reg = await startRegistry();
    const base = await busyboxEntries(["sh", "sleep", "true"]);
    await pushImage(reg, "ev/busybox", { layers: [{ entries: base }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/ev/busybox:1`;
    d = await startBerthd();
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    await d.cri.image.pullImage({ image: { image } });
    await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  test("two subscribers see a pod's whole life in order, each event with the pod's and its containers' statuses", async () => {
    const a = await subscribe(d);
    const b = await subscribe(d);
    const t0 = BigInt(Date.now()) * 1_000_000n;
    const pod = await newPod("life");
    const c1 = await create(pod, "sleeper", ["sleep", "1000"]);
    await d.cri.runtime.startContainer({ containerId: c1 });
    const c2 = await create(pod, "quitter", ["sh", "-c", "exit 3"]);
    await d.cri.runtime.startContainer({ containerId: c2 });
    const c2Stopped = await a.waitFor("quitter's STOPPED", (e) => e.containerId === c2 && e.containerEventType === T.CONTAINER_STOPPED_EVENT);

    // PodSandboxStatus carries the same container statuses (verbose = false) as the events.
    const ps = await d.cri.runtime.podSandboxStatus({ podSandboxId: pod.id });
    assert.ok(ps.timestamp > 0n);
    assert.deepEqual(ps.containersStatuses.map((s) => [s.id, s.state]), [[c1, ContainerState.CONTAINER_RUNNING], [c2, ContainerState.CONTAINER_EXITED]]);
    assert.deepEqual(ps.containersStatuses, c2Stopped.containersStatuses);
    assert.deepEqual(ps.containersStatuses[1], (await d.cri.runtime.containerStatus({ containerId: c2 })).status);
    assert.deepEqual(ps.status, c2Stopped.podSandboxStatus);

    await d.cri.runtime.stopContainer({ containerId: c1, timeout: 0n });
    await d.cri.runtime.removeContainer({ containerId: c1 });
    await d.cri.runtime.removeContainer({ containerId: c2 });
    await d.cri.runtime.stopPodSandbox({ podSandboxId: pod.id });
    await d.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
    const p = pod.id;
    const expected = [
      [p, T.CONTAINER_CREATED_EVENT], [p, T.CONTAINER_STARTED_EVENT],
      [c1, T.CONTAINER_CREATED_EVENT], [c1, T.CONTAINER_STARTED_EVENT],
      [c2, T.CONTAINER_CREATED_EVENT], [c2, T.CONTAINER_STARTED_EVENT], [c2, T.CONTAINER_STOPPED_EVENT],
      [c1, T.CONTAINER_STOPPED_EVENT], [c1, T.CONTAINER_DELETED_EVENT], [c2, T.CONTAINER_DELETED_EVENT],
      [p, T.CONTAINER_STOPPED_EVENT], [p, T.CONTAINER_DELETED_EVENT],
    ];
    for (const s of [a, b]) await s.waitFor("the pod's DELETED", (e) => e.containerId === p && e.containerEventType === T.CONTAINER_DELETED_EVENT);
    assert.deepEqual(a.events.map(pick), expected);
    assert.deepEqual(b.events, a.events, "both subscribers got the same events");

    const ev = a.events;
    const t1 = BigInt(Date.now()) * 1_000_000n;
    for (let i = 0; i < ev.length; i++) {
      assert.ok(ev[i]!.createdAt >= t0 && ev[i]!.createdAt <= t1, `event ${i} time is the event's`);
      if (i > 0) assert.ok(ev[i]!.createdAt >= ev[i - 1]!.createdAt, `event ${i} not before the one before it`);
      assert.equal(ev[i]!.podSandboxStatus?.id, p, `event ${i} has the pod's status`);
      assert.equal(ev[i]!.podSandboxStatus?.metadata?.uid, (pod.cfg.metadata as { uid: string }).uid);
    }
    const statuses = (i: number) => ev[i]!.containersStatuses.map((s) => [s.id, s.state]);
    const R = ContainerState.CONTAINER_RUNNING, C = ContainerState.CONTAINER_CREATED, X = ContainerState.CONTAINER_EXITED;
    assert.equal(ev[1]!.podSandboxStatus!.state, PodSandboxState.SANDBOX_READY);
    assert.match(ev[1]!.podSandboxStatus!.network!.ip, /^10\.204\.1\./);
    assert.deepEqual(statuses(0), []);
    assert.deepEqual(statuses(2), [[c1, C]]);
    assert.deepEqual(statuses(3), [[c1, R]]);
    assert.ok(ev[3]!.containersStatuses[0]!.startedAt > 0n);
    assert.deepEqual(statuses(5), [[c1, R], [c2, R]], "STARTED shows the state of its moment, before the exit");
    assert.deepEqual(statuses(6), [[c1, R], [c2, X]]);
    assert.equal(ev[6]!.containersStatuses[1]!.exitCode, 3);
    assert.equal(ev[6]!.containersStatuses[1]!.reason, "Error");
    assert.deepEqual(statuses(7), [[c1, X], [c2, X]]);
    assert.equal(ev[7]!.containersStatuses[0]!.exitCode, 137);
    assert.deepEqual(statuses(8), [[c2, X]], "a deleted container is gone from the statuses");
    assert.deepEqual(statuses(9), []);
    assert.equal(ev[10]!.podSandboxStatus!.state, PodSandboxState.SANDBOX_NOTREADY);
    assert.equal(ev[11]!.podSandboxStatus!.state, PodSandboxState.SANDBOX_NOTREADY, "the pod's DELETED carries its last status");
    a.close();
    b.close();
  });

  test("a subscriber that stops reading is cut off; another gets every event; berthd's memory stays bounded", async () => {
    const reader = await subscribe(d);
    const stalled = rawServerStream(d.socket, "/runtime.v1.RuntimeService/GetContainerEvents");
    await stalled.headers;
    // Host-network pods cost little; 32 KiB of annotations make each event ~33 KiB, so an unbounded queue would grow by ~60 MiB.
    const big = { "berth.test/ballast": "x".repeat(32 * 1024) };
    const hostPod = (name: string) => podConfig(name, {
      annotations: big,
      linux: { cgroupParent: CGROUP_PARENT, securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.NODE } } },
    });
    const cycle = async (name: string) => {
      const id = (await d.cri.runtime.runPodSandbox({ config: hostPod(name) })).podSandboxId;
      await d.cri.runtime.stopPodSandbox({ podSandboxId: id });
      await d.cri.runtime.removePodSandbox({ podSandboxId: id });
      return id;
    };
    for (let i = 0; i < 10; i++) await cycle(`warm-${i}`);
    await waitFor("the warm-up's events", async () => reader.events.length >= 40);
    await new Promise((r) => setTimeout(r, 2500)); // berthd's idle GC runs a second after the last call
    const before = await rss();
    const PODS = 500;
    const ids: string[] = [];
    const started = Date.now();
    // Four workers; each pod's own events stay in order whatever the interleaving.
    await Promise.all([0, 1, 2, 3].map(async (w) => {
      for (let i = w; i < PODS; i += 4) ids.push(await cycle(`flood-${i}`));
    }));
    const seconds = (Date.now() - started) / 1000;
    await waitFor("every flood event at the reader", async () => reader.events.length >= 40 + PODS * 4, 60_000);
    assert.equal(reader.events.length, 40 + PODS * 4);
    const byPod = new Map<string, ContainerEventType[]>();
    for (const e of reader.events.slice(40)) (byPod.get(e.containerId) ?? byPod.set(e.containerId, []).get(e.containerId)!).push(e.containerEventType);
    assert.equal(byPod.size, PODS);
    for (const id of ids) assert.deepEqual(byPod.get(id), [T.CONTAINER_CREATED_EVENT, T.CONTAINER_STARTED_EVENT, T.CONTAINER_STOPPED_EVENT, T.CONTAINER_DELETED_EVENT]);

    await new Promise((r) => setTimeout(r, 2500));
    const grown = (await rss()) - before;
    const cut = /"dropped":(\d+),"droppedTotal":(\d+)[^\n]*GetContainerEvents subscriber cut off/.exec(d.logs());
    process.stderr.write(`# ${PODS * 4} events of ~33 KiB in ${seconds.toFixed(1)} s; stalled subscriber dropped ${cut?.[1]}; berthd RSS ${(before / 2 ** 20).toFixed(1)} MiB -> +${(grown / 2 ** 20).toFixed(1)} MiB\n`);
    assert.ok(grown < 32 * 2 ** 20, `berthd grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(cut, "berthd logged the cut-off");
    assert.ok(Number(cut[1]) > 0 && Number(cut[2]) >= Number(cut[1]));

    // Reading now: what the transport held, then RESOURCE_EXHAUSTED.
    const rest = await stalled.readAll();
    assert.equal(rest.status, "8", `grpc-status ${rest.status} (${rest.message ?? rest.error})`);
    assert.match(rest.message!, /fell more than 1024 events or 8 MiB behind and was cut off/);
    assert.ok(rest.messages.length < 200, `the transport held ${rest.messages.length} events`);
    for (const m of rest.messages) assert.ok(ContainerEventResponse.decode(m).containerId);
    stalled.close();
    reader.close();
  });

  test("a container that exits while berthd is down (kill -9) yields its STOPPED event after the restart", async () => {
    const a = await subscribe(d);
    const pod = await newPod("restart");
    const c = await create(pod, "short", ["sh", "-c", "sleep 3; exit 7"]);
    await d.cri.runtime.startContainer({ containerId: c });
    await a.waitFor("STARTED", (e) => e.containerId === c && e.containerEventType === T.CONTAINER_STARTED_EVENT);
    await d.stop("SIGKILL");
    assert.equal((await a.error as { code?: number }).code !== undefined, true, "the stream ends with berthd");
    await waitFor("conmon's exit file while berthd is down", async () => stat(d.layout.exitFile(c)).then((s) => s.size > 0, () => false), 20_000);
    d = await d.restart();
    const b = await subscribe(d);
    const stopped = await b.waitFor("STOPPED after the restart", (e) => e.containerId === c && e.containerEventType === T.CONTAINER_STOPPED_EVENT);
    assert.equal(b.events[0], stopped, "the recovered exit comes first");
    assert.equal(stopped.podSandboxStatus?.id, pod.id);
    assert.equal(stopped.podSandboxStatus?.state, PodSandboxState.SANDBOX_READY);
    assert.deepEqual(stopped.containersStatuses.map((s) => [s.id, s.state, s.exitCode]), [[c, ContainerState.CONTAINER_EXITED, 7]]);
    await d.cri.runtime.removeContainer({ containerId: c });
    await d.cri.runtime.stopPodSandbox({ podSandboxId: pod.id });
    await d.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
    await b.waitFor("the pod's DELETED", (e) => e.containerId === pod.id && e.containerEventType === T.CONTAINER_DELETED_EVENT);
    assert.deepEqual(b.events.map(pick), [[c, T.CONTAINER_STOPPED_EVENT], [c, T.CONTAINER_DELETED_EVENT], [pod.id, T.CONTAINER_STOPPED_EVENT], [pod.id, T.CONTAINER_DELETED_EVENT]]);
    b.close();
  });

  test("SIGTERM with a subscriber: the stream ends OK and berthd stops without waiting out its grace period", async () => {
    const call = d.cri.runtimeStreams.getContainerEvents({});
    await new Promise<void>((resolve, reject) => {
      call.once("metadata", () => resolve());
      call.once("error", reject);
    });
    const ended = new Promise<number>((resolve) => call.on("status", (s: { code: number }) => resolve(s.code)));
    call.on("data", () => undefined);
    const t0 = Date.now();
    assert.equal(await d.stop("SIGTERM"), 0);
    assert.ok(Date.now() - t0 < 5000, `stopped in ${Date.now() - t0} ms`);
    assert.equal(await ended, 0);
  });
});
