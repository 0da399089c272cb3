// The workloads, each driving both runtimes through identical CRI calls.
import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { CriClient } from "../src/cri/client.js";
import { NamespaceMode } from "../src/gen/api.js";
import type { BenchImages } from "./images.js";
import { LAYER_MIB, LAYERS } from "./images.js";
import { alternate, describeFailure, newGroup, newRow, step, StepFailure, timed, type Group, type Row } from "./measure.js";
import { metricsAtScale } from "./metrics.js";
import { cpuMs, descendants, listProcs, totalPssKiB } from "./procs.js";
import type { RuntimeName, RuntimeUnderTest } from "./runtimes.js";
import { summarize } from "./stats.js";

export interface Plan {
  pullIterations: number;
  lifecycleIterations: number;
  listIterations: number;
  concurrentIterations: number;
  concurrentPods: number;
  warmup: number;
  memoryPods: number;
  memoryContainersPerPod: number;
  listPods: number;
  listContainersPerPod: number;
  /** Pod counts of the steady-state poll (each with `steadyContainersPerPod` running containers). */
  steadyPods: number[];
  steadyContainersPerPod: number;
  /** Seconds of kubelet's polling per runtime and pod count (the CPU rows). */
  steadySeconds: number;
  /** Bursts of the poll's second-0 sequence per runtime, at each of `steadyPods` (the call rows; the last one for any further count). */
  steadyBursts: number[];
  /** Samples of each single-object call (ContainerStatus, PodSandboxStatus, ImageStatus, ListImages, Version). */
  callIterations: number;
}

export const DEFAULT_PLAN: Plan = {
  pullIterations: 5,
  lifecycleIterations: 20,
  listIterations: 20,
  concurrentIterations: 5,
  concurrentPods: 10,
  warmup: 2,
  memoryPods: 10,
  memoryContainersPerPod: 5,
  listPods: 20,
  listContainersPerPod: 5,
  // 110: kubelet's default max pods per node.
  steadyPods: [30, 110],
  steadyContainersPerPod: 2,
  steadySeconds: 30,
  // containerd answers ListPodSandboxStats at 110 pods in about 4.5 s: fewer bursts there.
  steadyBursts: [20, 10],
  callIterations: 200,
};

export interface Ctx {
  rts: RuntimeUnderTest[];
  images: BenchImages;
  plan: Plan;
  aborted: () => boolean;
  log: (msg: string) => void;
}

// A container whose PID 1 exits on SIGTERM, so Stop measures the runtime, not a kill timeout.
const SLEEPER = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"];
const STOP_TIMEOUT_S = 10;

export interface Pod {
  id: string;
  config: ReturnType<typeof podConfig>;
}

/** The pod user namespace of the userns workload: container ids 0-65535 from host id 2000000. */
const USERNS_MAPPING = [{ containerId: 0, hostId: 2_000_000, length: 65536 }];

function podConfig(rt: RuntimeUnderTest, name: string, userns = false) {
  const uid = randomUUID();
  const usernsOptions = userns ? { usernsOptions: { mode: NamespaceMode.POD, uids: USERNS_MAPPING, gids: USERNS_MAPPING } } : {};
  return {
    metadata: { name, uid, namespace: "bench", attempt: 0 },
    hostname: name,
    logDirectory: path.join(rt.dir, "pod-logs", `bench_${name}_${uid}`),
    labels: { "berth-bench": "1" },
    linux: {
      cgroupParent: `${rt.cgroupParent}/pod${uid}`,
      securityContext: { namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD, ...usernsOptions } },
    },
  };
}

export async function runPod(rt: RuntimeUnderTest, name: string, onTimed?: (ms: number) => void, userns = false): Promise<Pod> {
  const config = podConfig(rt, name, userns);
  // kubelet creates the pod's log directory before RunPodSandbox.
  await mkdir(config.logDirectory, { recursive: true });
  let id = "";
  const ms = await timed("RunPodSandbox", async () => {
    id = (await rt.cri.runtime.runPodSandbox({ config }, { timeoutMs: 120_000 })).podSandboxId;
  });
  onTimed?.(ms);
  return { id, config };
}

async function removePod(cri: CriClient, id: string): Promise<void> {
  await step("StopPodSandbox", () => cri.runtime.stopPodSandbox({ podSandboxId: id }, { timeoutMs: 120_000 }));
  await step("RemovePodSandbox", () => cri.runtime.removePodSandbox({ podSandboxId: id }, { timeoutMs: 120_000 }));
}

/** Best effort, for the unwinding of a failed iteration; the final cleanup catches the rest. */
export async function dropPod(cri: CriClient, id: string): Promise<void> {
  await removePod(cri, id).catch(() => undefined);
}

function containerConfig(image: string, name: string) {
  return {
    metadata: { name, attempt: 0 },
    // kubelet names the image as the pod spec did; CRI-O checks signatures against it.
    image: { image, userSpecifiedImage: image },
    command: SLEEPER,
    logPath: `${name}.log`,
    // As kubelet sends them: the pod's namespaces, PID per container (CRI-O refuses a pod-level PID namespace the pod lacks).
    linux: { securityContext: { namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD } } },
    labels: { "berth-bench": "1" },
  };
}

export async function createStart(rt: RuntimeUnderTest, pod: Pod, image: string, name: string): Promise<string> {
  const { containerId } = await step("CreateContainer", () =>
    rt.cri.runtime.createContainer({ podSandboxId: pod.id, config: containerConfig(image, name), sandboxConfig: pod.config }, { timeoutMs: 120_000 }));
  await step("StartContainer", () => rt.cri.runtime.startContainer({ containerId }, { timeoutMs: 120_000 }));
  return containerId;
}

async function stopRemove(rt: RuntimeUnderTest, id: string): Promise<void> {
  await step("StopContainer", () => rt.cri.runtime.stopContainer({ containerId: id, timeout: BigInt(STOP_TIMEOUT_S) }, { timeoutMs: 120_000 }));
  await step("RemoveContainer", () => rt.cri.runtime.removeContainer({ containerId: id }, { timeoutMs: 120_000 }));
}

async function removeImage(cri: CriClient, ref: string): Promise<void> {
  await step("RemoveImage", () => cri.image.removeImage({ image: { image: ref } }, { timeoutMs: 120_000 }));
}

export async function pullImage(cri: CriClient, ref: string): Promise<void> {
  await step("PullImage", () => cri.image.pullImage({ image: { image: ref } }, { timeoutMs: 300_000 }));
}

// ---------------------------------------------------------------------------------------------

export async function pullWorkload(ctx: Ctx): Promise<Group> {
  const rows = [
    newRow("pull-busybox", "PullImage: busybox, 1 layer (first pull, after RemoveImage)"),
    newRow("pull-layers8", `PullImage: ${LAYERS} layers x ${LAYER_MIB} MiB random data (first pull, after RemoveImage)`),
    newRow("pull-layers10", `PullImage: 10 layers (busybox, ${LAYERS} x ${LAYER_MIB} MiB, whiteouts + opaque dir), straight from the registry`),
    newRow("pull-layers10-mirror", `PullImage: the same 10 layers as docker.io/..., through each runtime's mirror settings`),
  ];
  const g = newGroup("Image pull + unpack", `median of ${ctx.plan.pullIterations} after 1 warm-up pull, alternating; RemoveImage (untimed) before each pull; from the same local docker-registry over http`, rows);
  const images: Array<[Row, string]> = [[rows[0]!, ctx.images.busybox], [rows[1]!, ctx.images.layers8], [rows[2]!, ctx.images.layers10], [rows[3]!, ctx.images.layers10Mirrored]];
  for (const [row, ref] of images) {
    await alternate(ctx.rts, [row], { iterations: ctx.plan.pullIterations, warmup: 1, aborted: ctx.aborted, log: ctx.log }, async (rt, it) => {
      // Every name of the image goes, so the pull fetches and unpacks every layer again.
      for (const name of row.key.startsWith("pull-layers10") ? [ctx.images.layers10, ctx.images.layers10Mirrored] : [ref]) await removeImage(rt.cri, name).catch(() => undefined);
      it.record(row, await timed("PullImage", () => rt.cri.image.pullImage({ image: { image: ref } }, { timeoutMs: 300_000 })));
    });
  }
  // Leave only the busybox image behind for the container workloads.
  for (const rt of ctx.rts) for (const ref of [ctx.images.layers8, ctx.images.layers10, ctx.images.layers10Mirrored]) await removeImage(rt.cri, ref).catch(() => undefined);
  return g;
}

export async function podWorkload(ctx: Ctx): Promise<Group> {
  const run = newRow("runp", "RunPodSandbox");
  const stop = newRow("stopp-rmp", "StopPodSandbox + RemovePodSandbox");
  const g = newGroup("Pod sandbox lifecycle", `median of ${ctx.plan.lifecycleIterations} after ${ctx.plan.warmup} warm-up, alternating; pod with its own network, IPC and UTS namespaces, PID per container, CNI bridge`, [run, stop]);
  await alternate(ctx.rts, [run, stop], { iterations: ctx.plan.lifecycleIterations, warmup: ctx.plan.warmup, aborted: ctx.aborted, log: ctx.log }, async (rt, it) => {
    const pod = await runPod(rt, `pod-${it.index}`, (ms) => it.record(run, ms));
    try {
      it.record(stop, await timed("StopPodSandbox+RemovePodSandbox", () => removePod(rt.cri, pod.id)));
    } catch (err) {
      await dropPod(rt.cri, pod.id);
      throw err;
    }
  });
  return g;
}

/**
 * A pod with its own user namespace against a plain one, on berth alone (containerd 1.6 and
 * runc 1.1.5 make no idmapped mounts, so no other runtime here can run one): RunPodSandbox +
 * CreateContainer + StartContainer, the two kinds alternating within each iteration.
 */
export async function usernsWorkload(ctx: Ctx): Promise<Group> {
  const plain = newRow("pod-ctr-plain", "RunPodSandbox + CreateContainer + StartContainer, plain pod");
  const userns = newRow("pod-ctr-userns", "the same, pod with its own user namespace (userns_options POD, 65536 ids; idmapped rootfs layers)");
  const g = newGroup("User-namespaced pod (berth only)", `median of ${ctx.plan.lifecycleIterations} after ${ctx.plan.warmup} warm-up, plain and userns alternating; Stop+Remove untimed`, [plain, userns]);
  for (const rt of ctx.rts) {
    if (rt.name === "berth") continue;
    userns.missing[rt.name] = "n/a: runc 1.1.5 makes no idmapped mounts and this runtime none either";
    plain.missing[rt.name] = "n/a: berth's own baseline for the row below (see the pods and containers groups)";
  }
  const berth = ctx.rts.filter((rt) => rt.name === "berth");
  await alternate(berth, [plain, userns], { iterations: ctx.plan.lifecycleIterations, warmup: ctx.plan.warmup, aborted: ctx.aborted, log: ctx.log }, async (rt, it) => {
    for (const withUserns of it.index % 2 === 0 ? [false, true] : [true, false]) {
      let pod: Pod | undefined;
      let id = "";
      try {
        it.record(withUserns ? userns : plain, await timed("RunPodSandbox+CreateContainer+StartContainer", async () => {
          pod = await runPod(rt, `${withUserns ? "userns" : "plain"}-${it.index}`, undefined, withUserns);
          id = await createStart(rt, pod, ctx.images.busybox, `c${it.index}`);
        }));
        await stopRemove(rt, id);
      } finally {
        if (pod) await dropPod(rt.cri, pod.id);
      }
    }
  });
  const p = summarize(plain.samples.berth)?.median;
  const u = summarize(userns.samples.berth)?.median;
  if (p !== undefined && u !== undefined) g.notes.push(`berth: userns / plain = ${(u / p).toFixed(2)}x (issue 15 goal: <= 1.20x)`);
  return g;
}

// Plain execFile, not execa: the floor should carry as little client overhead as possible.
const execFileP = promisify(execFile);

async function runcExecFloor(rt: RuntimeUnderTest, id: string): Promise<number> {
  return timed("runc exec", () => execFileP("runc", ["--root", rt.runcRoot, "exec", id, "true"]));
}

export async function containerWorkload(ctx: Ctx): Promise<Group> {
  const cs = newRow("create-start", "CreateContainer + StartContainer");
  const ex = newRow("exec", "ExecSync (`true`)");
  const floor = newRow("runc-exec", "bare `runc exec` of `true`, same container (ExecSync's floor)");
  const sr = newRow("stop-rm", "StopContainer + RemoveContainer");
  const rows = [cs, ex, floor, sr];
  const g = newGroup("Container lifecycle", `median of ${ctx.plan.lifecycleIterations} after ${ctx.plan.warmup} warm-up, alternating; one pod per runtime; busybox \`sh\` that exits on SIGTERM (StopContainer timeout ${STOP_TIMEOUT_S}s)`, rows);
  const pods = new Map<RuntimeName, Pod>();
  try {
    await alternate(ctx.rts, rows, { iterations: ctx.plan.lifecycleIterations, warmup: ctx.plan.warmup, aborted: ctx.aborted, log: ctx.log }, async (rt, it) => {
      let pod = pods.get(rt.name);
      if (!pod) {
        pod = await runPod(rt, "ctr-pod");
        pods.set(rt.name, pod);
      }
      let id = "";
      it.record(cs, await timed("CreateContainer+StartContainer", async () => { id = await createStart(rt, pod!, ctx.images.busybox, `c${it.index}`); }));
      try {
        it.record(ex, await timed("ExecSync", async () => {
          const r = await rt.cri.runtime.execSync({ containerId: id, cmd: ["true"], timeout: 10n }, { timeoutMs: 30_000 });
          if (r.exitCode !== 0) throw new Error(`exit code ${r.exitCode}: ${Buffer.from(r.stderr).toString()}`);
        }));
        if (!floor.missing[rt.name]) {
          // The floor is a side measurement: its failure must not cost the CRI rows their figures.
          try {
            it.record(floor, await runcExecFloor(rt, id));
          } catch (err) {
            floor.missing[rt.name] = describeFailure(err);
            floor.samples[rt.name] = [];
          }
        }
      } catch (err) {
        await stopRemove(rt, id).catch(() => undefined);
        throw err;
      }
      it.record(sr, await timed("StopContainer+RemoveContainer", () => stopRemove(rt, id)));
    });
  } finally {
    for (const rt of ctx.rts) {
      const pod = pods.get(rt.name);
      if (pod) await dropPod(rt.cri, pod.id);
    }
  }
  for (const rt of ctx.rts) {
    const e = summarize(ex.samples[rt.name])?.median;
    const f = summarize(floor.samples[rt.name])?.median;
    if (e !== undefined && f !== undefined) g.notes.push(`${rt.name}: ExecSync / runc exec floor = ${(e / f).toFixed(2)}x (issue 8 goal for berth: <= 1.15x)`);
  }
  return g;
}

export async function concurrentWorkload(ctx: Ctx): Promise<Group> {
  const n = ctx.plan.concurrentPods;
  const row = newRow("concurrent", `${n} pods x 1 container started concurrently (wall time to all running)`);
  const g = newGroup("Concurrent start", `median of ${ctx.plan.concurrentIterations} after 1 warm-up, alternating; ${n} x (RunPodSandbox, CreateContainer, StartContainer) issued at once; teardown untimed`, [row]);
  await alternate(ctx.rts, [row], { iterations: ctx.plan.concurrentIterations, warmup: 1, aborted: ctx.aborted, log: ctx.log }, async (rt, it) => {
    const ids: string[] = [];
    try {
      const t0 = performance.now();
      const results = await Promise.allSettled(Array.from({ length: n }, async (_, k) => {
        const pod = await runPod(rt, `conc-${it.index}-${k}`);
        ids.push(pod.id);
        await createStart(rt, pod, ctx.images.busybox, "c");
      }));
      const ms = performance.now() - t0;
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
      it.record(row, ms);
    } finally {
      await Promise.all(ids.map((id) => dropPod(rt.cri, id)));
    }
  });
  return g;
}

/** PSS of the daemon, of its monitors and of pod infra (pause) processes, in KiB. */
async function memoryOf(rt: RuntimeUnderTest): Promise<{ daemon: number; monitors: number; monitorCount: number; infra: number }> {
  const monitors = await rt.monitorPids();
  const all = await listProcs();
  // containerd's sandboxes run /pause under a shim; berth runs none unless a pod shares its PID namespace.
  const infraPids = monitors.flatMap((m) => descendants(all, m)).filter((p) => path.basename(p.argv[0] ?? "") === "pause").map((p) => p.pid);
  const [daemon, mon, infra] = await Promise.all([totalPssKiB([rt.pid]), totalPssKiB(monitors), totalPssKiB(infraPids)]);
  return { daemon, monitors: mon, monitorCount: monitors.length, infra };
}

/** Median of three readings a second apart (a Go or V8 heap moves between GCs). */
async function settledMemory(rt: RuntimeUnderTest) {
  const reads = [];
  for (let i = 0; i < 3; i++) {
    if (i) await new Promise((r) => setTimeout(r, 1000));
    reads.push(await memoryOf(rt));
  }
  reads.sort((a, b) => a.daemon + a.monitors - (b.daemon + b.monitors));
  return reads[1]!;
}

/**
 * Memory with `memoryPods` pods of `memoryContainersPerPod` containers, then grown to `listPods`
 * pods of `listContainersPerPod` for ListContainers, ListPodSandbox and ListContainerStats.
 */
export async function scaleWorkload(ctx: Ctx): Promise<Group[]> {
  const p = ctx.plan;
  const memContainers = p.memoryPods * p.memoryContainersPerPod;
  const listContainers = p.listPods * p.listContainersPerPod;
  const mTotal = newRow("mem-total", `total PSS, ${memContainers} running containers in ${p.memoryPods} pods: daemon + monitors`, "MiB");
  const mDaemon = newRow("mem-daemon", "  of which the daemon (berthd / containerd)", "MiB");
  const mMon = newRow("mem-monitors", "  of which the monitors (conmon per container / shim per pod)", "MiB");
  const mBase = newRow("mem-base", `total PSS with the ${p.memoryPods} pods and no containers`, "MiB");
  const mPer = newRow("mem-per", "cost per added container ((with - without) / containers)", "MiB");
  const mInfra = newRow("mem-infra", "pod infra (pause) processes, not in the totals above", "MiB");
  const memRows = [mTotal, mDaemon, mMon, mBase, mPer, mInfra];
  const lc = newRow("list-containers", `ListContainers (${listContainers} containers in ${p.listPods} pods)`);
  const lp = newRow("list-pods", `ListPodSandbox (${p.listPods} pods)`);
  const ls = newRow("list-stats", `ListContainerStats (all ${listContainers})`);
  const listRows = [lc, lp, ls];
  const mem = newGroup("Memory", `one reading each (median of 3 taken 1 s apart) of /proc/PID/smaps_rollup Pss; monitors found by command line: conmon processes under berth's dirs, containerd-shim-runc-v2 processes with containerd's socket`, memRows);
  const list = newGroup("Listing and stats at scale", `median of ${p.listIterations} after ${p.warmup} warm-up, alternating, with ${listContainers} running containers in ${p.listPods} pods per runtime`, listRows);
  const pods = new Map<RuntimeName, Pod[]>();
  const ready = new Set<RuntimeName>();
  let metrics: Group | undefined;

  const fail = (rt: RuntimeUnderTest, rows: Row[], err: unknown) => {
    const why = describeFailure(err);
    ctx.log(`${rt.name}: ${why}`);
    // A figure taken before the failure (the pods-only baseline) stays.
    for (const r of rows) if (!r.missing[rt.name] && r.samples[rt.name].length === 0) r.missing[rt.name] = why;
  };
  const populate = async (rt: RuntimeUnderTest, from: number, to: number, perPod: number) => {
    const list = pods.get(rt.name) ?? [];
    pods.set(rt.name, list);
    for (let i = from; i < to; i++) {
      if (ctx.aborted()) throw new Error("interrupted");
      if (!list[i]) list[i] = await runPod(rt, `scale-${i}`);
    }
    for (let i = from; i < to; i++) {
      for (let k = 0; k < perPod; k++) {
        if (ctx.aborted()) throw new Error("interrupted");
        await createStart(rt, list[i]!, ctx.images.busybox, `c${k}`);
      }
    }
  };

  try {
    for (const rt of ctx.rts) {
      try {
        ctx.log(`${rt.name}: ${p.memoryPods} pods for the memory baseline`);
        await populate(rt, 0, p.memoryPods, 0);
        const base = await settledMemory(rt);
        mBase.samples[rt.name].push((base.daemon + base.monitors) / 1024);
        ctx.log(`${rt.name}: ${memContainers} containers`);
        await populate(rt, 0, p.memoryPods, p.memoryContainersPerPod);
        const full = await settledMemory(rt);
        const mib = (kib: number) => kib / 1024;
        mTotal.samples[rt.name].push(mib(full.daemon + full.monitors));
        mDaemon.samples[rt.name].push(mib(full.daemon));
        mMon.samples[rt.name].push(mib(full.monitors));
        mPer.samples[rt.name].push(mib((full.daemon + full.monitors - base.daemon - base.monitors) / memContainers));
        mInfra.samples[rt.name].push(mib(full.infra));
        mem.notes.push(`${rt.name}: ${full.monitorCount} monitor processes with ${memContainers} containers in ${p.memoryPods} pods`);
      } catch (err) {
        if (ctx.aborted()) throw err;
        fail(rt, [...memRows, ...listRows], err);
        continue;
      }
      try {
        ctx.log(`${rt.name}: growing to ${listContainers} containers in ${p.listPods} pods`);
        await populate(rt, p.memoryPods, p.listPods, p.listContainersPerPod);
        ready.add(rt.name);
      } catch (err) {
        if (ctx.aborted()) throw err;
        fail(rt, listRows, err);
      }
    }
    const listing = ctx.rts.filter((rt) => ready.has(rt.name));
    for (const [row, call] of [
      [lc, (rt: RuntimeUnderTest) => rt.cri.runtime.listContainers({}, { timeoutMs: 60_000 }).then((r) => r.containers.length)],
      [lp, (rt: RuntimeUnderTest) => rt.cri.runtime.listPodSandbox({}, { timeoutMs: 60_000 }).then((r) => r.items.length)],
      [ls, (rt: RuntimeUnderTest) => rt.cri.runtime.listContainerStats({}, { timeoutMs: 60_000 }).then((r) => r.stats.length)],
    ] as const) {
      const want = row === lp ? p.listPods : listContainers;
      await alternate(listing, [row], { iterations: p.listIterations, warmup: p.warmup, aborted: ctx.aborted, log: ctx.log }, async (rt, it) => {
        let got = 0;
        it.record(row, await timed(row === lc ? "ListContainers" : row === lp ? "ListPodSandbox" : "ListContainerStats", async () => { got = await call(rt); }));
        if (got !== want) throw new Error(`returned ${got} items, expected ${want}`);
      });
    }
    metrics = await metricsAtScale(ctx, listing, listContainers);
  } finally {
    for (const rt of ctx.rts) {
      const list = pods.get(rt.name) ?? [];
      ctx.log(`${rt.name}: removing ${list.filter(Boolean).length} scale pods`);
      for (const pod of list) if (pod) await dropPod(rt.cri, pod.id);
    }
  }
  return metrics ? [mem, list, metrics] : [mem, list];
}

// ---------------------------------------------------------------------------------------------

/** The calls kubelet makes on its own, and how often (seconds): PLEG relist, node status, stats. */
export const POLL: ReadonlyArray<{ every: number; call: string; run: (rt: RuntimeUnderTest) => Promise<number> }> = [
  { every: 1, call: "ListPodSandbox", run: (rt) => rt.cri.runtime.listPodSandbox({}, { timeoutMs: 60_000 }).then((r) => r.items.length) },
  { every: 1, call: "ListContainers", run: (rt) => rt.cri.runtime.listContainers({}, { timeoutMs: 60_000 }).then((r) => r.containers.length) },
  { every: 5, call: "Status", run: (rt) => rt.cri.runtime.status({}, { timeoutMs: 60_000 }).then((r) => r.status!.conditions.filter((c) => c.status).length) },
  { every: 10, call: "ListContainerStats", run: (rt) => rt.cri.runtime.listContainerStats({ filter: {} }, { timeoutMs: 60_000 }).then((r) => r.stats.length) },
  { every: 10, call: "ListPodSandboxStats", run: (rt) => rt.cri.runtime.listPodSandboxStats({ filter: {} }, { timeoutMs: 60_000 }).then((r) => r.stats.length) },
  { every: 10, call: "ImageFsInfo", run: (rt) => rt.cri.image.imageFsInfo({}, { timeoutMs: 60_000 }).then((r) => r.imageFilesystems.length) },
];

/**
 * kubelet's poll against `rt` on its schedule for `seconds`: each second's calls at the second's
 * start, and the last second waited out whole. `each` gets every call's time (ms).
 */
export async function pollOnSchedule(rt: RuntimeUnderTest, seconds: number, aborted: () => boolean, each?: (call: string, ms: number) => void): Promise<void> {
  const t0 = performance.now();
  for (let sec = 0; sec < seconds; sec++) {
    if (aborted()) throw new Error("interrupted");
    const wait = t0 + sec * 1000 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    for (const c of POLL) {
      if (sec % c.every !== 0) continue;
      // Timed first: `each?.(…, await …)` would skip the call itself when `each` is absent.
      const ms = await timed(c.call, () => c.run(rt));
      each?.(c.call, ms);
    }
  }
  const rest = t0 + seconds * 1000 - performance.now();
  if (rest > 0) await new Promise((r) => setTimeout(r, rest));
}

/** What each poll call must return with `pods` pods of `perPod` containers (a runtime that answers less is not measured). */
function expected(call: string, pods: number, perPod: number): number {
  if (call === "ListPodSandbox" || call === "ListPodSandboxStats") return pods;
  if (call === "ListContainers" || call === "ListContainerStats") return pods * perPod;
  return call === "Status" ? 2 : 1;
}

/** CPU ms of the daemon and of its monitors (those alive at both readings) over `fn`. */
async function cpuOver(rt: RuntimeUnderTest, fn: () => Promise<void>): Promise<{ daemon: number; monitors: number; seconds: number }> {
  const monitors = await rt.monitorPids();
  const read = async () => ({ daemon: await cpuMs(rt.pid), monitors: await Promise.all(monitors.map(cpuMs)) });
  const before = await read();
  const t0 = performance.now();
  await fn();
  const seconds = (performance.now() - t0) / 1000;
  const after = await read();
  const mon = monitors.reduce((acc, _, i) => acc + (after.monitors[i]! > 0 ? after.monitors[i]! - before.monitors[i]! : 0), 0);
  return { daemon: after.daemon - before.daemon, monitors: mon, seconds };
}

/**
 * kubelet's steady-state polling with `steadyPods` pods of `steadyContainersPerPod` running
 * containers per runtime, one runtime after the other, `steadySeconds` each: daemon and monitor
 * CPU per second and each call's median. Then the single-object calls kubelet and crictl make
 * (ContainerStatus, PodSandboxStatus, ImageStatus, ListImages, Version), alternating.
 */
export async function steadyWorkload(ctx: Ctx): Promise<Group[]> {
  const p = ctx.plan;
  const perPod = p.steadyContainersPerPod;
  const groups: Group[] = [];
  const pods = new Map<RuntimeName, Pod[]>();
  const containers = new Map<RuntimeName, string[]>();
  /** Runtimes that failed to set up a pod count, and why: not tried at the larger ones. */
  const broken = new Map<RuntimeName, string>();
  const single = [
    newRow("call-container-status", "ContainerStatus"),
    newRow("call-pod-status", "PodSandboxStatus"),
    newRow("call-image-status", "ImageStatus"),
    newRow("call-list-images", "ListImages"),
    newRow("call-version", "Version"),
  ];
  try {
    for (const [k, n] of p.steadyPods.entries()) {
      const cpu = newRow(`steady-${n}-cpu`, `daemon CPU per second of polling (utime+stime of its pid), ${n} pods x ${perPod}`);
      const mon = newRow(`steady-${n}-monitors`, `monitors' CPU per second (conmon per container / shim per pod)`);
      const calls = POLL.map((c) => newRow(`steady-${n}-${c.call}`, `${c.call} (every ${c.every} s)`));
      const rows = [cpu, mon, ...calls];
      const bursts = p.steadyBursts[Math.min(k, p.steadyBursts.length - 1)]!;
      const g = newGroup(`Steady state: kubelet's polling, ${n} pods x ${perPod} running containers`,
        `CPU: ${p.steadySeconds} s of polling per runtime, one runtime after the other, one client: ListPodSandbox + ListContainers every 1 s, Status every 5 s, ListContainerStats + ListPodSandboxStats + ImageFsInfo every 10 s (all at second 0); ms per second of wall time. Calls: median of ${bursts} bursts per runtime of the second-0 sequence (the six calls in that order, one after the other), 300 ms apart, runtimes alternating (a 30 s run gives only 3 samples of the 10 s calls, and one runtime after the other)`, rows);
      groups.push(g);
      const live: RuntimeUnderTest[] = [];
      for (const rt of ctx.rts) {
        const earlier = broken.get(rt.name);
        if (earlier) {
          for (const r of rows) r.missing[rt.name] = earlier;
          continue;
        }
        try {
          const list = pods.get(rt.name) ?? [];
          const ids = containers.get(rt.name) ?? [];
          pods.set(rt.name, list);
          containers.set(rt.name, ids);
          ctx.log(`${rt.name}: steady state: growing to ${n} pods x ${perPod}`);
          for (let i = list.length; i < n; i++) {
            if (ctx.aborted()) throw new Error("interrupted");
            const pod = await runPod(rt, `steady-${i}`);
            list.push(pod);
            for (let k = 0; k < perPod; k++) ids.push(await createStart(rt, pod, ctx.images.busybox, `c${k}`));
          }
          // One untimed round: every call answers, with every object.
          for (const c of POLL) {
            const got = await step(c.call, () => c.run(rt));
            const want = expected(c.call, n, perPod);
            if (got !== want) throw new StepFailure(c.call, new Error(`returned ${got} items, expected ${want}`));
          }
          live.push(rt);
        } catch (err) {
          if (ctx.aborted()) throw err;
          const why = describeFailure(err);
          ctx.log(`${rt.name}: ${why}`);
          broken.set(rt.name, why);
          for (const r of rows) r.missing[rt.name] = why;
        }
      }
      for (const rt of live) {
        ctx.log(`${rt.name}: polling ${p.steadySeconds} s with ${n} pods`);
        try {
          const used = await cpuOver(rt, () => pollOnSchedule(rt, p.steadySeconds, ctx.aborted));
          cpu.samples[rt.name].push(used.daemon / used.seconds);
          mon.samples[rt.name].push(used.monitors / used.seconds);
        } catch (err) {
          if (ctx.aborted()) throw err;
          const why = describeFailure(err);
          ctx.log(`${rt.name}: ${why}`);
          for (const r of rows) {
            r.missing[rt.name] = why;
            r.samples[rt.name] = [];
          }
        }
      }
      // The call latencies, under the same conditions for every runtime (see the group's text).
      await alternate(live, calls, { iterations: bursts, warmup: 1, aborted: ctx.aborted, log: ctx.log }, async (rt, it) => {
        await new Promise((r) => setTimeout(r, 300));
        for (const [i, c] of POLL.entries()) it.record(calls[i]!, await timed(c.call, () => c.run(rt)));
      });
      if (n === p.steadyPods[0]) {
        const ready = live.filter((rt) => containers.get(rt.name)?.length);
        for (const rt of ctx.rts) if (!ready.includes(rt)) for (const r of single) r.missing[rt.name] ??= "failed: no pods (see the steady-state rows)";
        await alternate(ready, single, { iterations: p.callIterations, warmup: p.warmup * 10, aborted: ctx.aborted, log: ctx.log }, async (rt, it) => {
          const [cs, ps, is, li, ve] = single as [Row, Row, Row, Row, Row];
          const cid = containers.get(rt.name)![it.index % containers.get(rt.name)!.length]!;
          const pid = pods.get(rt.name)![it.index % pods.get(rt.name)!.length]!.id;
          it.record(cs, await timed("ContainerStatus", () => rt.cri.runtime.containerStatus({ containerId: cid }, { timeoutMs: 30_000 })));
          it.record(ps, await timed("PodSandboxStatus", () => rt.cri.runtime.podSandboxStatus({ podSandboxId: pid }, { timeoutMs: 30_000 })));
          it.record(is, await timed("ImageStatus", () => rt.cri.image.imageStatus({ image: { image: ctx.images.busybox } }, { timeoutMs: 30_000 })));
          it.record(li, await timed("ListImages", () => rt.cri.image.listImages({}, { timeoutMs: 30_000 })));
          it.record(ve, await timed("Version", () => rt.cri.runtime.version({}, { timeoutMs: 30_000 })));
        });
      }
    }
  } finally {
    for (const rt of ctx.rts) {
      const list = pods.get(rt.name) ?? [];
      ctx.log(`${rt.name}: removing ${list.length} steady-state pods`);
      for (const pod of list) await dropPod(rt.cri, pod.id);
    }
  }
  groups.push(newGroup("Single-object calls", `median of ${p.callIterations} after ${p.warmup * 10} warm-up, alternating, with the first steady-state pods in place (${p.steadyPods[0]} pods x ${perPod}); ContainerStatus and PodSandboxStatus cycle through them`, single));
  return groups;
}
