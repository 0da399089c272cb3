// `make bench`: berth against containerd 1.6, side by side in one run, written to bench/REPORT.md.
// Everything started here is stopped and cleaned on the way out, on an error and on Ctrl-C.
import { chmod, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { execa } from "execa";
import { removeEverything, sweepHost } from "./cleanup.js";
import { BENCH_SRC, buildBenchImages, type BenchImages } from "./images.js";
import { newGroup, newRow, type Group } from "./measure.js";
import { procsMentioning, pssKiB } from "./procs.js";
import { startRegistry, type TestRegistry } from "../test/harness/registry.js";
import { renderReport, type Environment } from "./report.js";
import { startBerth, startContainerd, startCrio, type RuntimeUnderTest } from "./runtimes.js";
import { concurrentWorkload, containerWorkload, DEFAULT_PLAN, podWorkload, pullImage, pullWorkload, scaleWorkload, steadyWorkload, usernsWorkload, type Ctx, type Plan } from "./workloads.js";

const REPO = path.resolve(BENCH_SRC, "..");
const TMP_PREFIX = "berth-bench-";
const WORKLOADS = ["pull", "pods", "containers", "userns", "concurrent", "scale", "steady"] as const;
/** Quiet time before each between-workloads reading of the daemons' memory. */
const SETTLE_MS = 2000;

const started = Date.now();
// Other work on the machine skews figures: the report shows the load average around the run.
const loadAtStart = os.loadavg().map((l) => l.toFixed(2)).join(" ");
const log = (msg: string) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);

function usage(): string {
  return `usage: node dist/bench/main.js [--quick] [--only ${WORKLOADS.join(",")}] [--out FILE] [--serve] [--steady-seconds N] [--steady-pods N,N]
  --quick   fewer iterations (a smoke run; figures are not for the report)
  --steady-seconds, --steady-pods   the steady-state poll's length per runtime (30) and pod counts (30,110)
  CRIO=/path/to/crio PINNS=/path/to/pinns in the environment add CRI-O as a third runtime
  --serve   start the registry and both runtimes, print their sockets, wait for Ctrl-C (for crictl)
  --only    run only these workloads
  --out     report path (default bench/REPORT.md)\n`;
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  const r = await execa(cmd, args, { reject: false });
  return r.failed ? "unknown" : r.stdout.split("\n")[0]!.trim();
}

/** CRI-O prints a table: its Version row. */
async function crioVersion(crio: string): Promise<string> {
  const r = await execa(crio, ["--version"], { reject: false });
  return /^Version:\s*(\S+)/m.exec(r.stdout)?.[1] ?? "unknown";
}

async function environment(durationS: number, plan: string): Promise<Environment> {
  const pkg = JSON.parse(await readFile(path.join(REPO, "package.json"), "utf8")) as { version: string };
  const dirty = (await execa("git", ["-C", REPO, "status", "--porcelain", "--untracked-files=no"], { reject: false })).stdout.trim() !== "";
  const commit = (await firstLine("git", ["-C", REPO, "rev-parse", "--short", "HEAD"])) + (dirty ? "+changes" : "");
  return {
    date: new Date().toISOString(),
    nproc: os.cpus().length,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: os.release(),
    cpu: os.cpus()[0]?.model.trim() ?? "unknown",
    versions: {
      berth: `${pkg.version} (${commit})`,
      node: process.version,
      runc: (await firstLine("runc", ["--version"])).replace(/^runc version /, ""),
      conmon: (await firstLine("conmon", ["--version"])).replace(/^conmon version /, ""),
      containerd: (await firstLine("containerd", ["--version"])).replace(/^containerd \S+ /, ""),
      ...(process.env.CRIO ? { "CRI-O": await crioVersion(process.env.CRIO) } : {}),
    },
    durationS,
    plan,
    load: `${loadAtStart} at the start, ${os.loadavg().map((l) => l.toFixed(2)).join(" ")} at the end`,
  };
}

function describePlan(p: Plan, quick: boolean, durationS: number): string {
  const counts = `pulls: median of ${p.pullIterations} (1 warm-up); pod and container lifecycle: median of ${p.lifecycleIterations}` +
    ` (${p.warmup} warm-up); concurrent start: median of ${p.concurrentIterations} (1 warm-up); lists/stats: median of ${p.listIterations}` +
    ` (${p.warmup} warm-up); memory: one settled reading per runtime.`;
  if (quick) return `QUICK smoke run with reduced counts, not for comparison. ${counts}`;
  const budget = durationS <= 600
    ? "These are the counts the issues ask for; the whole run fits the 10-minute budget of `make bench` on this machine, so none was scaled down."
    : `These are the counts the issues ask for, but the run took ${Math.round(durationS)} s, over the 10-minute budget: lower the counts in DEFAULT_PLAN (bench/workloads.ts).`;
  return `${counts} ${budget}`;
}

/** The registry an earlier, killed run left: its pids (checked against their command line) and dir. */
async function sweepStaleRegistry(dir: string): Promise<void> {
  const rec = JSON.parse(await readFile(path.join(dir, "registry.json"), "utf8").catch(() => "{}")) as { dir?: string; pids?: number[] };
  if (!rec.dir?.startsWith(os.tmpdir() + "/")) return;
  for (const p of await procsMentioning(rec.dir)) {
    if (!rec.pids?.includes(p.pid)) continue;
    log(`sweep: killing leftover registry pid ${p.pid}`);
    try { process.kill(p.pid, "SIGKILL"); } catch { /* gone */ }
  }
  await rm(rec.dir, { recursive: true, force: true });
}

async function alive(pid: number): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  return cmdline.includes("bench/main.js");
}

/** Leftovers of an earlier run that was killed before it could clean up; refuses to touch a live run. */
async function sweepStaleRuns(): Promise<void> {
  const names = (await readdir(os.tmpdir())).filter((n) => n.startsWith(TMP_PREFIX));
  for (const n of names) {
    const dir = path.join(os.tmpdir(), n);
    const pid = Number((await readFile(path.join(dir, "harness.pid"), "utf8").catch(() => "")).trim());
    if (pid > 0 && pid !== process.pid && (await alive(pid))) {
      throw new Error(`another benchmark run (pid ${pid}, ${dir}) is in progress: the two would share bridges and cgroups`);
    }
    log(`cleaning up after an earlier run: ${dir}`);
    await sweepStaleRegistry(dir);
    await sweepHost(dir, [path.join(dir, "berth/state/runtime/runc"), path.join(dir, "containerd/runc/k8s.io"), path.join(dir, "crio/runc")], log);
  }
}

function positive(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} wants a positive whole number, not "${text}"\n${usage()}`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean" }, serve: { type: "boolean" }, only: { type: "string" }, out: { type: "string" }, help: { type: "boolean", short: "h" },
      "steady-seconds": { type: "string" }, "steady-pods": { type: "string" },
    },
  });
  if (values.help) {
    process.stdout.write(usage());
    return 0;
  }
  const only = new Set(values.only ? values.only.split(",") : WORKLOADS);
  for (const w of only) if (!(WORKLOADS as readonly string[]).includes(w)) throw new Error(`unknown workload "${w}"\n${usage()}`);
  const base: Plan = values.quick
    ? { ...DEFAULT_PLAN, pullIterations: 2, lifecycleIterations: 3, listIterations: 3, concurrentIterations: 1, warmup: 1, memoryPods: 2, memoryContainersPerPod: 2, listPods: 3, listContainersPerPod: 2, steadyPods: [3, 5], steadySeconds: 10, steadyBursts: [3], callIterations: 20 }
    : DEFAULT_PLAN;
  const steadySeconds = values["steady-seconds"] ?? process.env.BENCH_STEADY_SECONDS;
  const steadyPods = values["steady-pods"] ?? process.env.BENCH_STEADY_PODS;
  const plan: Plan = {
    ...base,
    ...(steadySeconds ? { steadySeconds: positive("--steady-seconds", steadySeconds) } : {}),
    ...(steadyPods ? { steadyPods: steadyPods.split(",").map((n) => positive("--steady-pods", n)) } : {}),
  };
  const out = values.out ?? path.join(BENCH_SRC, "REPORT.md");

  await sweepStaleRuns();
  const dir = await mkdtemp(path.join(os.tmpdir(), TMP_PREFIX));
  // Searchable (not listable): a user-namespaced pod's mapped root reaches its rootfs through it.
  await chmod(dir, 0o711);
  await writeFile(path.join(dir, "harness.pid"), `${process.pid}\n`);
  let registry: TestRegistry | undefined;
  const rts: RuntimeUnderTest[] = [];
  let interrupted = false;
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      log("cleaning up");
      for (const rt of rts) await removeEverything(rt.cri, rt.name, log);
      for (const rt of rts) await rt.stop().catch((e) => log(`${rt.name}: stop: ${String(e)}`));
      await registry?.stop().catch((e) => log(`registry: stop: ${String(e)}`));
      await sweepHost(dir, rts.map((rt) => rt.runcRoot).concat(path.join(dir, "berth/state/runtime/runc"), path.join(dir, "containerd/runc/k8s.io"), path.join(dir, "crio/runc")), log);
      log("clean");
    })());
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping and cleaning up`);
    cleanup().then(() => process.exit(130), (err) => {
      log(`cleanup failed: ${String(err)}`);
      process.exit(1);
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const groups: Group[] = [];
  let berthStartError: string | undefined;
  let crioNote: string | undefined;
  try {
    log(`work dir ${dir}`);
    registry = await startRegistry();
    // Its dir and pid, so a later run can clean up after this one if it is killed outright.
    const regPids = (await procsMentioning(registry.dir)).map((p) => p.pid);
    await writeFile(path.join(dir, "registry.json"), JSON.stringify({ dir: registry.dir, pids: regPids }));
    log(`registry on ${registry.host}; building and pushing images`);
    const images: BenchImages = await buildBenchImages(registry, path.join(dir, "images"));
    log(`images: ${Object.values(images).join(", ")}`);
    const opts = { dir, registryHost: registry.host, pauseImage: images.pause };
    rts.push(await startContainerd(opts));
    if (process.env.CRIO && process.env.PINNS) {
      try {
        rts.push(await startCrio(opts, { crio: process.env.CRIO, pinns: process.env.PINNS }));
      } catch (err) {
        crioNote = `CRI-O did not start (${String(err).split("\n")[0]}): no CRI-O column.`;
        log(crioNote);
      }
    } else {
      crioNote = "CRI-O not measured in this run: give CRIO=/path/to/crio and PINNS=/path/to/pinns (a CRI-O v1.32 build) for a third column.";
    }
    try {
      rts.unshift(await startBerth(opts, path.join(REPO, "bin/berthd")));
    } catch (err) {
      berthStartError = `failed: berthd did not start: ${String(err).split("\n")[0]}`;
      log(berthStartError);
    }
    log(`runtimes up: ${rts.map((r) => `${r.name} (pid ${r.pid})`).join(", ")}`);
    if (values.serve) {
      for (const rt of rts) process.stdout.write(`${rt.name}: unix://${rt.socket}  (runc root ${rt.runcRoot}, log ${rt.logFile})\n`);
      process.stdout.write(`images: ${Object.values(images).join(" ")}\nCtrl-C stops and cleans up.\n`);
      await new Promise(() => undefined); // until the signal handler cleans up and exits
    }
    const ctx: Ctx = { rts, images, plan, aborted: () => interrupted, log };
    // The daemons' own PSS between workloads: how much each keeps after the work is undone.
    const daemonMemory = newGroup("Daemon memory between workloads", `PSS of the daemon process alone (no monitors), read once ${SETTLE_MS / 1000} s after each workload has removed everything it made (what a daemon keeps, not its peak: berthd collects a second after its last state-changing call, Go's GC and scavenger run in the background)`, []);
    const checkpoint = async (label: string) => {
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      const row = newRow(`mem-daemon-${daemonMemory.rows.length}`, label, "MiB");
      for (const rt of rts) row.samples[rt.name].push((await pssKiB(rt.pid)) / 1024);
      daemonMemory.rows.push(row);
    };
    await checkpoint("idle, right after start");

    const guard = async (name: string, fn: () => Promise<Group | Group[]>) => {
      if (!only.has(name as (typeof WORKLOADS)[number]) || interrupted) return;
      log(`workload: ${name}`);
      try {
        const g = await fn();
        groups.push(...(Array.isArray(g) ? g : [g]));
        await checkpoint(`after the ${name} workload`);
      } catch (err) {
        if (interrupted) return;
        log(`workload ${name} aborted: ${String(err)}`);
        const failed = newGroup(name, "aborted", [newRow(name, name)]);
        failed.rows[0]!.missing = Object.fromEntries(rts.map((rt) => [rt.name, `failed: ${String(err)}`]));
        groups.push(failed);
      }
    };
    await guard("pull", () => pullWorkload(ctx));
    // The lifecycle workloads need the busybox image in both runtimes.
    for (const rt of rts) await pullImage(rt.cri, images.busybox).catch((err) => log(`${rt.name}: pulling busybox: ${String(err)}`));
    await guard("pods", () => podWorkload(ctx));
    await guard("containers", () => containerWorkload(ctx));
    await guard("userns", () => usernsWorkload(ctx));
    await guard("concurrent", () => concurrentWorkload(ctx));
    await guard("scale", () => scaleWorkload(ctx));
    await guard("steady", () => steadyWorkload(ctx));
    groups.push(daemonMemory);
  } finally {
    // On Ctrl-C the signal handler has started this already; wait for it either way.
    await cleanup();
  }
  if (interrupted) return 130;
  if (berthStartError) for (const g of groups) for (const r of g.rows) r.missing.berth = berthStartError;

  const env = await environment((Date.now() - started) / 1000, describePlan(plan, values.quick ?? false, (Date.now() - started) / 1000));
  const previous = await readFile(out, "utf8").catch(() => undefined);
  const report = renderReport(env, groups, previous, crioNote);
  await writeFile(out, report);
  process.stdout.write(`\n${report}\n`);
  log(`report written to ${out}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    log(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    process.exit(1);
  },
);
