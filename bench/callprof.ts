// What one polled CRI call costs berthd: starts a registry and berthd alone (optionally under
// node --cpu-prof), makes N pods x M running containers, then sends each call many times in a row
// and prints its median latency and berthd's CPU per call (utime+stime of its pid over the run).
// With --prof DIR, berthd writes a .cpuprofile there on exit and phases.json marks when each
// call's run started and ended (CLOCK_MONOTONIC µs, the clock the profile's timestamps use), so
// bench/profsum.ts can say where each call's time went.
//   node dist/bench/callprof.js [--pods 30] [--per-pod 2] [--calls 2000] [--gap MS] [--only A,B] [--prof DIR] [--node-flags=--trace-gc]
// (CPU per call with --gap includes what berthd does idle over the gaps.)
// With --poll SECONDS it sends the steady-state workload's poll instead (bench/workloads.ts POLL,
// on its schedule) and prints each call's latencies and berthd's CPU per second.
import { chmod, copyFile, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { removeEverything, sweepHost } from "./cleanup.js";
import { BENCH_SRC, buildBenchImages } from "./images.js";
import { cpuMs } from "./procs.js";
import { parseProcStat, USER_HZ } from "../src/proc.js";
import { startRegistry, type TestRegistry } from "../test/harness/registry.js";
import { startBerth, type RuntimeUnderTest } from "./runtimes.js";
import { createStart, POLL, pollOnSchedule, pullImage, runPod, type Pod } from "./workloads.js";

const REPO = path.resolve(BENCH_SRC, "..");

const { values } = parseArgs({
  options: { poll: { type: "string" }, "node-flags": { type: "string" }, gap: { type: "string" }, pods: { type: "string" }, "per-pod": { type: "string" }, calls: { type: "string" }, only: { type: "string" }, prof: { type: "string" } },
});
const nPods = Number(values.pods ?? 30);
const perPod = Number(values["per-pod"] ?? 2);
const nCalls = Number(values.calls ?? 2000);
/** Pause before each timed call (ms): kubelet's calls come one at a time, to a daemon idle in between. */
const gapMs = Number(values.gap ?? 0);
const log = (m: string) => process.stderr.write(`[callprof] ${m}\n`);

type Call = { name: string; run: (rt: RuntimeUnderTest, i: number) => Promise<unknown>; before?: (rt: RuntimeUnderTest) => Promise<unknown> };

function calls(pods: Pod[], containers: string[], image: string): Call[] {
  const t = { timeoutMs: 30_000 };
  return [
    { name: "ContainerStatus", run: (rt, i) => rt.cri.runtime.containerStatus({ containerId: containers[i % containers.length]! }, t) },
    { name: "PodSandboxStatus", run: (rt, i) => rt.cri.runtime.podSandboxStatus({ podSandboxId: pods[i % pods.length]!.id }, t) },
    { name: "ImageStatus", run: (rt) => rt.cri.image.imageStatus({ image: { image } }, t) },
    { name: "ListImages", run: (rt) => rt.cri.image.listImages({}, t) },
    { name: "Version", run: (rt) => rt.cri.runtime.version({}, t) },
    { name: "Status", run: (rt) => rt.cri.runtime.status({}, t) },
    { name: "ImageFsInfo", run: (rt) => rt.cri.image.imageFsInfo({}, t) },
    { name: "ListPodSandbox", run: (rt) => rt.cri.runtime.listPodSandbox({}, t) },
    { name: "ListContainers", run: (rt) => rt.cri.runtime.listContainers({}, t) },
    // As the steady-state poll sends it: right after the stats lists (their time not counted).
    { name: "ImageFsInfo-after-stats", run: (rt) => rt.cri.image.imageFsInfo({}, t), before: (rt) => rt.cri.runtime.listContainerStats({ filter: {} }, t).then(() => rt.cri.runtime.listPodSandboxStats({ filter: {} }, t)) },
    { name: "ListContainerStats", run: (rt) => rt.cri.runtime.listContainerStats({ filter: {} }, t) },
    { name: "ListPodSandboxStats", run: (rt) => rt.cri.runtime.listPodSandboxStats({ filter: {} }, t) },
    { name: "ListPodSandboxMetrics", run: (rt) => rt.cri.runtime.listPodSandboxMetrics({}, t) },
  ];
}

const monoUs = () => Number(process.hrtime.bigint() / 1000n);

/** CPU ms per thread name (comm) of `pid`. */
async function threadCpu(pid: number, perTid = false): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const text = await readFile(`/proc/${pid}/task/${tid}/stat`, "utf8").catch(() => "");
    const s = parseProcStat(text);
    if (!s) continue;
    const name = Number(tid) === pid ? "main" : perTid ? `${s.comm}:${tid}` : s.comm;
    out.set(name, (out.get(name) ?? 0) + ((s.utimeTicks + s.stimeTicks) * 1000) / USER_HZ);
  }
  return out;
}

function threadDelta(a: Map<string, number>, b: Map<string, number>, per: number): string {
  return [...b].map(([k, v]) => [k, (v - (a.get(k) ?? 0)) / per] as const).filter(([, v]) => v > 0).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ");
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "berth-bench-callprof-"));
  await chmod(dir, 0o711);
  let registry: TestRegistry | undefined;
  let rt: RuntimeUnderTest | undefined;
  try {
    registry = await startRegistry();
    const images = await buildBenchImages(registry, path.join(dir, "images"));
    let berthd = path.join(REPO, "bin/berthd");
    if (values.prof || values["node-flags"]) {
      // bin/berthd's flags, plus the profiler and any others asked for.
      const extra = `${values.prof ? `--cpu-prof --cpu-prof-dir=${values.prof} ` : ""}${values["node-flags"] ?? ""}`;
      berthd = path.join(dir, "berthd-prof");
      await writeFile(berthd, `#!/bin/sh\nexec node ${extra} --max-semi-space-size=1 --initial-old-space-size=64 --expose-gc ${REPO}/dist/src/main.js "$@"\n`, { mode: 0o755 });
    }
    rt = await startBerth({ dir, registryHost: registry.host, pauseImage: images.pause }, berthd);
    await pullImage(rt.cri, images.busybox);
    log(`berthd pid ${rt.pid}; making ${nPods} pods x ${perPod}`);
    const pods: Pod[] = [];
    const containers: string[] = [];
    for (let i = 0; i < nPods; i++) {
      const pod = await runPod(rt, `prof-${i}`);
      pods.push(pod);
      for (let k = 0; k < perPod; k++) containers.push(await createStart(rt, pod, images.busybox, `c${k}`));
    }
    await new Promise((r) => setTimeout(r, 3000));
    if (values.poll) {
      await poll(rt, Number(values.poll));
      return;
    }
    const only = values.only ? new Set(values.only.split(",")) : undefined;
    const threadNotes: string[] = [];
    const phases: Array<{ name: string; startUs: number; endUs: number }> = [];
    process.stdout.write(`| call (${nPods} pods x ${perPod}) | median ms | p90 ms | berthd CPU ms/call |\n|---|---|---|---|\n`);
    for (const c of calls(pods, containers, images.busybox)) {
      if (only && !only.has(c.name)) continue;
      for (let i = 0; i < 100; i++) await c.run(rt, i);
      const samples: number[] = [];
      const cpu0 = await cpuMs(rt.pid);
      const threads0 = await threadCpu(rt.pid);
      const startUs = monoUs();
      for (let i = 0; i < nCalls; i++) {
        if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
        await c.before?.(rt);
        const t0 = performance.now();
        await c.run(rt, i);
        samples.push(performance.now() - t0);
      }
      const endUs = monoUs();
      const cpu = (await cpuMs(rt.pid)) - cpu0;
      threadNotes.push(`${c.name}: ms/call by thread: ${threadDelta(threads0, await threadCpu(rt.pid), nCalls)}`);
      phases.push({ name: c.name, startUs, endUs });
      samples.sort((a, b) => a - b);
      const q = (p: number) => samples[Math.floor(p * (samples.length - 1))]!.toFixed(3);
      process.stdout.write(`| ${c.name} | ${q(0.5)} | ${q(0.9)} | ${(cpu / nCalls).toFixed(3)} |\n`);
    }
    for (const n of threadNotes) process.stdout.write(`${n}\n`);
    // Idle CPU with everything running: timers and sweeps only (after 5 s for the calls' garbage to go).
    await new Promise((r) => setTimeout(r, 5000));
    const idle0 = await cpuMs(rt.pid);
    const idleThreads = await threadCpu(rt.pid, true);
    const idleStartUs = monoUs();
    await new Promise((r) => setTimeout(r, 30_000));
    process.stdout.write(`idle berthd CPU: ${(((await cpuMs(rt.pid)) - idle0) * 2).toFixed(0)} ms/min with ${containers.length} containers (by thread, ms/min: ${threadDelta(idleThreads, await threadCpu(rt.pid, true), 0.5)})\n`);
    phases.push({ name: "idle", startUs: idleStartUs, endUs: monoUs() });
    if (values.prof) await writeFile(path.join(values.prof, "phases.json"), JSON.stringify(phases));
  } finally {
    if (rt) await copyFile(rt.logFile, path.join(os.tmpdir(), "callprof-berthd.log")).catch(() => undefined);
    if (rt) {
      await removeEverything(rt.cri, rt.name, log).catch((e) => log(`cleanup: ${String(e)}`));
      await rt.stop().catch((e) => log(`stop: ${String(e)}`));
    }
    await registry?.stop().catch((e) => log(`registry: stop: ${String(e)}`));
    await sweepHost(dir, [path.join(dir, "berth/state/runtime/runc")], log);
  }
}

/** The steady-state poll for `seconds`: each call's median, p90 and max (ms), berthd's CPU per second. */
async function poll(rt: RuntimeUnderTest, seconds: number): Promise<void> {
  const samples = new Map<string, number[]>(POLL.map((c) => [c.call, []]));
  const cpu0 = await cpuMs(rt.pid);
  await pollOnSchedule(rt, seconds, () => false, (call, ms) => samples.get(call)!.push(ms));
  const cpu = (await cpuMs(rt.pid)) - cpu0;
  process.stdout.write(`| call (poll, ${seconds} s) | n | median ms | p90 ms | max ms |\n|---|---|---|---|---|\n`);
  for (const [call, xs] of samples) {
    xs.sort((a, b) => a - b);
    const q = (p: number) => xs[Math.floor(p * (xs.length - 1))]!.toFixed(2);
    process.stdout.write(`| ${call} | ${xs.length} | ${q(0.5)} | ${q(0.9)} | ${q(1)} |\n`);
  }
  process.stdout.write(`berthd CPU: ${(cpu / seconds).toFixed(2)} ms per second of polling\n`);
}

// Output piped into `head` (or a reader that goes away) must not kill the run before its
// cleanup: without a listener the EPIPE is thrown and berthd, its pods and the registry stay.
process.stdout.on("error", () => undefined);

main().then(() => process.exit(0), (err) => {
  log(String(err?.stack ?? err));
  process.exit(1);
});
