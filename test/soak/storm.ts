// `make storm` (not part of `make test`): what kubelet does after its own restart, at once.
// STORM_PODS (100) RunPodSandbox, then STORM_CONTAINERS (200) CreateContainer+StartContainer,
// then ListContainers from STORM_CLIENTS (20) clients, each on its own connection; then the same
// teardown. Passes when every call succeeds or fails with a clear status (not INTERNAL/UNKNOWN),
// nothing is left behind, berthd's RSS returns near its idle size, and no call waits longer than
// the slowest serial call of its phase's RPCs times the number of calls in flight with it.
// Network: bridge bfst0, 10.207.3.0/24; cgroups under /berth-faults-storm (the reduced run in make test: its own).
import { status } from "@grpc/grpc-js";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { causeChain } from "../../src/errors.js";
import { connectCri, type CriClient } from "../../src/cri/client.js";
import { startBerthd, waitFor, type Berthd } from "../harness/berthd.js";
import { busyboxEntries, pushImage } from "../harness/images.js";
import { hostLeaks } from "../harness/leaks.js";
import { startRegistry } from "../harness/registry.js";
import { cgroupLeaks, forceRemoveDir, ownLeaks, podProblems, removeCgroupParent, strayFiles } from "../recovery-check.js";
import { bridgePorts, deleteBridge, podConfig, writeBridgeConflist } from "../sandbox-net.js";

const SERIAL = 5;
const MiB = 1024 * 1024;
/** A hang is reported as DEADLINE_EXCEEDED, never waited out. */
const DEADLINE = { timeoutMs: 300_000 };

async function rssBytes(pid: number): Promise<number> {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Phase {
  name: string;
  /** Calls in flight together. */
  depth: number;
  latencies: Map<string, number[]>;
}

export interface StormOptions {
  pods: number;
  containers: number;
  clients: number;
  /** The CNI bridge, its subnet (room for pods + 5) and the pods' cgroup parent: the caller's own. */
  bridge: string;
  subnet: string;
  cgroupParent: string;
  log: (line: string) => void;
}

/** Runs one storm against a berthd of its own; true when it passed (the report went to `log`). */
export async function runStorm(o: StormOptions): Promise<boolean> {
  const { pods: PODS, containers: CONTAINERS, clients: CLIENTS, bridge: BRIDGE, subnet: SUBNET, cgroupParent: CGROUP_PARENT } = o;
  const reg = await startRegistry();
  await pushImage(reg, "storm/busybox", { layers: [{ entries: await busyboxEntries(["sh", "sleep", "echo", "true"]) }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
  const image = `${reg.host}/storm/busybox:1`;
  const before = await hostLeaks();
  let d: Berthd | undefined;
  const clients: CriClient[] = [];
  const unclear: string[] = [];
  const failedCalls: string[] = [];
  const over: string[] = [];
  let failed = 0;
  try {
    d = await startBerthd({ args: ["--log-level", "info"] });
    const berthd = d;
    await writeBridgeConflist(berthd.dir, BRIDGE, SUBNET);
    await waitFor("NetworkReady", async () => (await berthd.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
    await berthd.cri.image.pullImage({ image: { image } });
    for (let i = 0; i < CLIENTS; i++) clients.push(connectCri(berthd.socket, { ownConnection: true }));
    const client = (i: number) => clients[i % CLIENTS]!.runtime;

    let phase: Phase = { name: "", depth: 1, latencies: new Map() };
    const call = async <T>(op: string, fn: () => Promise<T>): Promise<T | undefined> => {
      const t0 = performance.now();
      try {
        return await fn();
      } catch (err) {
        const code = (err as { code?: number }).code;
        const details = (err as { details?: string }).details ?? causeChain(err);
        failedCalls.push(`${phase.name} ${op}: ${code === undefined ? "?" : status[code]}: ${details.slice(0, 300)}`);
        if (code === undefined || code === status.INTERNAL || code === status.UNKNOWN || !details) unclear.push(`${op}: ${details.slice(0, 300)}`);
        return undefined;
      } finally {
        const ms = performance.now() - t0;
        const l = phase.latencies.get(op) ?? [];
        l.push(ms);
        phase.latencies.set(op, l);
      }
    };
    const podCfg = (name: string) => podConfig(name, { linux: { cgroupParent: CGROUP_PARENT } });
    const ctrCfg = (name: string) => ({ metadata: { name }, image: { image }, command: ["sleep", "100000"] });

    // The serial run: each RPC's slowest call with nothing else in flight. It runs before and
    // after the storm (the machine's load from elsewhere moves), and the slower of the two counts.
    const serial: Phase = { name: "serial", depth: 1, latencies: new Map() };
    const serialRun = async (tag: string) => {
      phase = serial;
      const sPods: Array<{ id: string; cfg: Record<string, unknown> }> = [];
      const sCtrs: string[] = [];
      for (let i = 0; i < SERIAL; i++) {
        const cfg = podCfg(`serial-${tag}-${i}`);
        const id = (await call("RunPodSandbox", () => client(0).runPodSandbox({ config: cfg }, DEADLINE)))?.podSandboxId;
        if (id) sPods.push({ id, cfg });
      }
      for (let i = 0; i < SERIAL * 2; i++) {
        const pod = sPods[i % sPods.length]!;
        const id = (await call("CreateContainer", () => client(0).createContainer({ podSandboxId: pod.id, sandboxConfig: pod.cfg, config: ctrCfg(`s${i}`) }, DEADLINE)))?.containerId;
        if (id && (await call("StartContainer", () => client(0).startContainer({ containerId: id }, DEADLINE)))) sCtrs.push(id);
      }
      for (let i = 0; i < SERIAL; i++) await call("ListContainers", () => client(0).listContainers({}, DEADLINE));
      for (const id of sCtrs) {
        await call("StopContainer", () => client(0).stopContainer({ containerId: id, timeout: 0n }, DEADLINE));
        await call("RemoveContainer", () => client(0).removeContainer({ containerId: id }, DEADLINE));
      }
      for (const p of sPods) {
        await call("StopPodSandbox", () => client(0).stopPodSandbox({ podSandboxId: p.id }, DEADLINE));
        await call("RemovePodSandbox", () => client(0).removePodSandbox({ podSandboxId: p.id }, DEADLINE));
      }
    };
    await serialRun("before");

    // Idle: the daemon's full GC runs a second after the last state-changing call.
    await sleep(3000);
    const idleRss = await rssBytes(berthd.proc.pid!);
    let peakRss = idleRss;
    const sampler = setInterval(() => void rssBytes(berthd.proc.pid!).then((b) => (peakRss = Math.max(peakRss, b)), () => undefined), 500);

    const phases: Phase[] = [];
    const storm = async (name: string, depth: number, fn: () => Promise<unknown>) => {
      phase = { name, depth, latencies: new Map() };
      phases.push(phase);
      const t0 = Date.now();
      await fn();
      o.log(`storm: ${name}: ${depth} at once, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    };
    const pods: Array<{ id: string; cfg: Record<string, unknown> }> = [];
    const ctrs: string[] = [];
    const t0 = Date.now();
    await storm("RunPodSandbox", PODS, () => Promise.all(Array.from({ length: PODS }, async (_v, i) => {
      const cfg = podCfg(`storm-${i}`);
      const id = (await call("RunPodSandbox", () => client(i).runPodSandbox({ config: cfg }, DEADLINE)))?.podSandboxId;
      if (id) pods.push({ id, cfg });
    })));
    await storm("CreateContainer+StartContainer", CONTAINERS, () => Promise.all(Array.from({ length: pods.length ? CONTAINERS : 0 }, async (_v, i) => {
      const pod = pods[i % pods.length]!;
      const id = (await call("CreateContainer", () => client(i).createContainer({ podSandboxId: pod.id, sandboxConfig: pod.cfg, config: ctrCfg(`c${i}`) }, DEADLINE)))?.containerId;
      if (id && (await call("StartContainer", () => client(i).startContainer({ containerId: id }, DEADLINE)))) ctrs.push(id);
    })));
    // ListContainers' cost grows with the containers listed: its serial figure is also taken with all of them there.
    phase = serial;
    for (let i = 0; i < SERIAL; i++) await call("ListContainers", () => client(0).listContainers({}, DEADLINE));
    await storm("ListContainers", CLIENTS, () => Promise.all(clients.map((_c, i) => call("ListContainers", () => client(i).listContainers({}, DEADLINE)))));
    await storm("StopContainer+RemoveContainer", ctrs.length, () => Promise.all(ctrs.map(async (id, i) => {
      await call("StopContainer", () => client(i).stopContainer({ containerId: id, timeout: 0n }, DEADLINE));
      await call("RemoveContainer", () => client(i).removeContainer({ containerId: id }, DEADLINE));
    })));
    await storm("StopPodSandbox+RemovePodSandbox", pods.length, () => Promise.all(pods.map(async (p, i) => {
      await call("StopPodSandbox", () => client(i).stopPodSandbox({ podSandboxId: p.id }, DEADLINE));
      await call("RemovePodSandbox", () => client(i).removePodSandbox({ podSandboxId: p.id }, DEADLINE));
    })));
    const stormSeconds = (Date.now() - t0) / 1000;
    clearInterval(sampler);
    await sleep(3000);
    const endRss = await rssBytes(berthd.proc.pid!);
    await serialRun("after");
    const serialMax = new Map([...serial.latencies].map(([op, l]) => [op, Math.max(...l)]));

    o.log(`storm: ${PODS} pods, ${CONTAINERS} containers, ${CLIENTS} clients: ${stormSeconds.toFixed(1)} s; ${pods.length} pods and ${ctrs.length} containers made`);
    o.log("storm: latency per RPC (ms): serial max | storm p50, p99, max | bound = the phase's slowest serial call x calls in flight");
    for (const p of phases) {
      // A call queues behind the phase's other calls, whatever their RPC: the slowest of them bounds each wait.
      const slowest = Math.max(...[...p.latencies.keys()].map((op) => serialMax.get(op) ?? Infinity));
      for (const [op, l] of p.latencies) {
        const sorted = [...l].sort((a, b) => a - b);
        const q = (f: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * f))]!;
        const bound = slowest * p.depth;
        const max = sorted[sorted.length - 1]!;
        o.log(`  ${op.padEnd(17)} ${(serialMax.get(op) ?? 0).toFixed(0).padStart(6)} | ${q(0.5).toFixed(0).padStart(6)} ${q(0.99).toFixed(0).padStart(6)} ${max.toFixed(0).padStart(6)} | ${bound.toFixed(0)} (${sorted.length} calls)`);
        if (max > bound) over.push(`${op} waited ${max.toFixed(0)} ms, over ${bound.toFixed(0)} ms`);
      }
    }
    const leftovers = [
      ...(await podProblems(berthd)),
      ...(await strayFiles(berthd, [])),
      ...(await cgroupLeaks(CGROUP_PARENT, [])),
      ...(await bridgePorts(BRIDGE)).map((p) => `veth ${p} on ${BRIDGE}`),
      ...((await berthd.cri.runtime.listPodSandbox({}, DEADLINE)).items.map((p) => `pod ${p.id}`)),
      ...((await berthd.cri.runtime.listContainers({}, DEADLINE)).containers.map((c) => `container ${c.id}`)),
    ];
    const grown = endRss - idleRss;
    const near = Math.max(32 * MiB, idleRss / 4);
    o.log(`storm: berthd RSS idle ${(idleRss / MiB).toFixed(1)} MiB, peak ${(peakRss / MiB).toFixed(1)} MiB, after teardown ${(endRss / MiB).toFixed(1)} MiB (allowed: idle + ${(near / MiB).toFixed(0)} MiB)`);
    o.log(`storm: ${failedCalls.length} calls failed, ${unclear.length} without a clear status`);
    for (const f of failedCalls.slice(0, 20)) o.log(`  failed: ${f}`);
    for (const slow of over) o.log(`  too slow: ${slow}`);
    if (leftovers.length) o.log(`storm: left behind: ${leftovers.join("; ")}`);
    if (unclear.length || leftovers.length || over.length || grown > near) failed = 1;
  } catch (err) {
    o.log(`storm: aborted: ${causeChain(err)}`);
    failed = 1;
  }
  for (const c of clients) c.close();
  let leaks: string[] = [];
  try {
    const exit = d ? await d.stop() : 0;
    if (exit !== 0) {
      o.log(`storm: berthd exited with ${exit}`);
      failed = 1;
    }
    leaks = d ? ownLeaks(before, await hostLeaks(), d.dir) : [];
  } finally {
    if (d) await forceRemoveDir(d.dir);
    await reg.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  }
  if (leaks.length) {
    o.log(`storm: leaks: ${leaks.join("; ")}`);
    failed = 1;
  }
  o.log(`storm: ${leaks.length} leaks after shutdown`);
  return failed === 0;
}

// `make storm`: the full-size run (a reduced one is in test/faults-storm.test.ts).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const passed = await runStorm({
    pods: Number(process.env.STORM_PODS ?? 100),
    containers: Number(process.env.STORM_CONTAINERS ?? 200),
    clients: Number(process.env.STORM_CLIENTS ?? 20),
    bridge: "bfst0",
    subnet: "10.207.3.0/24",
    cgroupParent: "/berth-faults-storm",
    log: (line) => console.log(line),
  });
  console.log(`${passed ? 1 : 0} passed, ${passed ? 0 : 1} failed`);
  process.exitCode = passed ? 0 : 1;
}
