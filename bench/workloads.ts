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
import { alternate, describeFailure, newGroup, newRow, step, timed, type Group, type Row } from "./measure.js";
import { metricsAtScale } from "./metrics.js";
import { descendants, listProcs, totalPssKiB } from "./procs.js";
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

interface Pod {
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

async function runPod(rt: RuntimeUnderTest, name: string, onTimed?: (ms: number) => void, userns = false): Promise<Pod> {
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
async function dropPod(cri: CriClient, id: string): Promise<void> {
  await removePod(cri, id).catch(() => undefined);
}

function containerConfig(image: string, name: string) {
  return {
    metadata: { name, attempt: 0 },
    image: { image },
    command: SLEEPER,
    logPath: `${name}.log`,
    labels: { "berth-bench": "1" },
  };
}

async function createStart(rt: RuntimeUnderTest, pod: Pod, image: string, name: string): Promise<string> {
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
  ];
  const g = newGroup("Image pull + unpack", `median of ${ctx.plan.pullIterations} after 1 warm-up pull, alternating; RemoveImage (untimed) before each pull; from the same local docker-registry over http`, rows);
  const images: Array<[Row, string]> = [[rows[0]!, ctx.images.busybox], [rows[1]!, ctx.images.layers8]];
  for (const [row, ref] of images) {
    await alternate(ctx.rts, [row], { iterations: ctx.plan.pullIterations, warmup: 1, aborted: ctx.aborted, log: ctx.log }, async (rt, it) => {
      if (it.index > 0) await removeImage(rt.cri, ref);
      it.record(row, await timed("PullImage", () => rt.cri.image.pullImage({ image: { image: ref } }, { timeoutMs: 300_000 })));
    });
  }
  // Leave only the busybox image behind for the container workloads.
  for (const rt of ctx.rts) await removeImage(rt.cri, ctx.images.layers8).catch(() => undefined);
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
