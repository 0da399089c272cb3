// `make critest CRITEST=/path/to/critest`: the CRI conformance suite against berth (or, with --runtime containerd,
// against Debian's containerd as the baseline). Starts a registry, builds and pushes the images critest uses,
// starts the runtime on private dirs with the harness's own CNI network, runs critest, prints the summary and the
// failed specs, then stops everything and reports anything the run left behind.
import { spawn } from "node:child_process";
import { access, chmod, constants, copyFile, mkdir, mkdtemp, open, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { execa } from "execa";
import {
  bridgePorts, deleteLink, linkExists, removeIptablesRules, mountsUnder, portFree, processesMentioning, sweepCgroupParent,
} from "./host.js";
import { buildAndPush } from "./images.js";
import { startRegistry, type Registry } from "./registry.js";
import { benchmarkSummary, firstLine, isExpectedFailure, parseGinkgoJson, summaryLine, type Summary } from "./report.js";
import { startRuntime, type RuntimeName, type RuntimeUnderTest } from "./runtimes.js";
import { connectCri } from "../../src/cri/client.js";
import { writeCritestSection } from "../../bench/report.js";
import { REPO } from "../harness/berthd.js";

const CRITEST_PORTS = [12000, 12001, 12002, 12003];
const USAGE = `usage: node dist/test/critest/run.js --critest PATH [--runtime berth|containerd ...] [--focus RE ...] [--skip RE ...]
       [--benchmark] [--benchmark-params FILE] [--out DIR] [--keep] [--verbose] [--hold]
  --critest PATH   the critest binary (cri-tools v1.26.1, v1.29.0 or v1.32.0, built from source: see test/critest/README.md)
  --runtime NAME   berth (default) or containerd (the baseline); repeat to run both against one registry
  --focus/--skip   passed to critest as --ginkgo.focus/--ginkgo.skip
  --benchmark      run critest -benchmark instead of the validation specs (every benchmark: 20 pods, 20 containers,
                   10 image pulls one at a time, unless --benchmark-params names a params YAML); their data lands in --out
  --benchmark-params FILE  critest's -benchmarking-params-file
  --out DIR        keep critest's output, its JSON report and the runtime's log there
  --keep           keep the run's temp dir (registry, runtime dirs) for debugging
  --verbose        show critest's output as it runs
  --hold           run no critest: keep the registry and runtime up (for crictl) until Ctrl-C, then clean up`;

function say(line: string): void {
  process.stdout.write(`[critest-harness] ${line}\n`);
}

interface RunResult {
  runtime: RuntimeName;
  summary: Summary;
  leftovers: string[];
  critestExit: number | null;
}

/** Counts for every critest benchmark; critest skips those whose count is unset. */
const BENCHMARK_PARAMS = [
  "containersNumber: 20", "containersNumberParallel: 2", "containerBenchmarkTimeoutSeconds: 300",
  "podsNumber: 20", "podsNumberParallel: 2", "podBenchmarkTimeoutSeconds: 300",
  "imagesNumber: 10", "imagesNumberParallel: 1", "imageBenchmarkTimeoutSeconds: 300",
  "podContainerStartBenchmarkTimeoutSeconds: 300", "",
].join("\n");

// Ctrl-C or SIGTERM: stop critest if it runs, skip what is left, and still clean up.
let interrupted = false;
let runningCritest: ReturnType<typeof spawn> | undefined;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    interrupted = true;
    say(`${sig}: stopping critest and cleaning up`);
    runningCritest?.kill("SIGINT");
  });
}

interface CritestOptions { focus: string[]; skip: string[]; benchmark: boolean; benchmarkParams?: string; verbose: boolean }

async function runCritest(critest: string, rt: RuntimeUnderTest, opts: CritestOptions): Promise<{ exit: number | null; report: string; log: string }> {
  const report = path.join(rt.dir, "critest-report.json");
  const log = path.join(rt.dir, "critest.log");
  const args = ["--runtime-endpoint", rt.endpoint, "--ginkgo.json-report", report, "--ginkgo.no-color"];
  for (const f of opts.focus) args.push("--ginkgo.focus", f);
  for (const s of opts.skip) args.push("--ginkgo.skip", s);
  if (opts.benchmark) {
    let params = opts.benchmarkParams;
    if (!params) await writeFile((params = path.join(rt.dir, "benchmark-params.yaml")), BENCHMARK_PARAMS);
    await mkdir(path.join(rt.dir, "benchmarks"), { recursive: true });
    args.push("--benchmark", "--benchmarking-params-file", params, "--benchmarking-output-dir", path.join(rt.dir, "benchmarks"));
  }
  say(`${critest} ${args.join(" ")}`);
  const out = await open(log, "w");
  const child = spawn(critest, args, { stdio: ["ignore", "pipe", "pipe"], cwd: rt.dir });
  const sink = (d: Buffer) => { void out.write(d); if (opts.verbose) process.stdout.write(d); };
  child.stdout.on("data", sink);
  child.stderr.on("data", sink);
  runningCritest = child;
  const exit = await new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  runningCritest = undefined;
  await out.close();
  return { exit, report, log };
}

/**
 * Pods and containers critest did not remove (its benchmarks keep some), removed through the CRI so the runtime
 * tears them down itself before the host is checked. Lines for the report; an RPC error is one too.
 */
async function removeWhatCritestLeft(rt: RuntimeUnderTest): Promise<string[]> {
  const cri = connectCri(rt.endpoint);
  const notes: string[] = [];
  const step = async (what: string, fn: () => Promise<unknown>) => {
    try { await fn(); } catch (err) { notes.push(`${what} failed: ${err instanceof Error ? err.message : String(err)}`); }
  };
  try {
    await step("ListContainers", async () => {
      for (const c of (await cri.runtime.listContainers({}, { timeoutMs: 30_000 })).containers) {
        notes.push(`critest left container ${c.id.slice(0, 12)} (${c.metadata?.name ?? "?"}); removed through the CRI`);
        await step(`RemoveContainer ${c.id.slice(0, 12)}`, () => cri.runtime.removeContainer({ containerId: c.id }, { timeoutMs: 60_000 }));
      }
    });
    await step("ListPodSandbox", async () => {
      for (const p of (await cri.runtime.listPodSandbox({}, { timeoutMs: 30_000 })).items) {
        notes.push(`critest left pod ${p.id.slice(0, 12)} (${p.metadata?.name ?? "?"}); removed through the CRI`);
        await step(`StopPodSandbox ${p.id.slice(0, 12)}`, () => cri.runtime.stopPodSandbox({ podSandboxId: p.id }, { timeoutMs: 60_000 }));
        await step(`RemovePodSandbox ${p.id.slice(0, 12)}`, () => cri.runtime.removePodSandbox({ podSandboxId: p.id }, { timeoutMs: 60_000 }));
      }
    });
  } finally {
    cri.close();
  }
  return notes;
}

/** Everything a run may leave on the host, reported (as a runtime bug) and then removed. */
async function sweep(rt: RuntimeUnderTest, runDir: string): Promise<string[]> {
  const found: string[] = [];
  for (const p of await processesMentioning(runDir)) {
    found.push(`process ${p.pid}: ${p.cmdline}`);
    try { process.kill(p.pid, "SIGKILL"); } catch { /* gone already */ }
  }
  for (const m of await mountsUnder(runDir)) {
    found.push(`mount ${m}`);
    await execa("umount", ["-l", m], { reject: false });
  }
  for (const port of await bridgePorts(rt.network.bridge)) {
    found.push(`veth ${port} still on ${rt.network.bridge}`);
    await deleteLink(port);
  }
  for (const rule of await removeIptablesRules(rt.network.name)) found.push(`iptables ${rule}`);
  const ipam = path.join(rt.network.dataDir, rt.network.name);
  for (const f of await readdir(ipam).catch(() => [] as string[])) {
    if (/^\d+\.\d+\.\d+\.\d+$/.test(f)) found.push(`host-local still holds ${f} (CNI DEL never ran for it)`);
  }
  for (const c of new Set(await sweepCgroupParent())) found.push(`cgroup ${c}`);
  if (await linkExists(rt.network.bridge)) await deleteLink(rt.network.bridge); // the bridge plugin never removes it
  return found;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      critest: { type: "string" },
      runtime: { type: "string", multiple: true },
      focus: { type: "string", multiple: true },
      skip: { type: "string", multiple: true },
      benchmark: { type: "boolean" },
      "benchmark-params": { type: "string" },
      out: { type: "string" },
      keep: { type: "boolean" },
      verbose: { type: "boolean" },
      hold: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help) { console.log(USAGE); return 0; }
  if (!values.critest) { console.error(USAGE); return 2; }
  const critest = path.resolve(values.critest);
  await access(critest, constants.X_OK).catch(() => { throw new Error(`${critest} is not an executable critest binary`); });
  const runtimes = (values.runtime ?? ["berth"]).flatMap((r) => r.split(",")) as RuntimeName[];
  for (const r of runtimes) if (r !== "berth" && r !== "containerd") throw new Error(`unknown runtime ${r} (berth or containerd)`);
  if (process.getuid?.() !== 0) throw new Error("critest needs root (runc, CNI, mounts)");
  for (const port of CRITEST_PORTS) {
    if (!(await portFree(port))) throw new Error(`host port ${port} is in use; critest needs ${CRITEST_PORTS.join(", ")} free`);
  }
  const printed = (await execa(critest, ["--version"], { reject: false })).stdout.split("\n")[0]!.trim();
  // A critest built with plain `go build` (no release ldflags) says "unknown": the binary's name then tells the runs apart.
  const version = !printed || /unknown/.test(printed) ? `${printed || "critest"} (${path.basename(critest)})` : printed;
  say(`critest: ${version}`);

  const runDir = await mkdtemp(path.join(tmpdir(), "berth-critest-"));
  // Searchable by others: the UserNamespaces specs' pods reach their rootfs as a mapped (non-root) id.
  await chmod(runDir, 0o711);
  const hadContainerdRun = await stat("/run/containerd").then(() => true, () => false);
  let registry: Registry | undefined;
  const results: RunResult[] = [];
  const benchmarks = new Map<string, BenchmarkFigures>();
  // A runtime whose host state was not swept yet (an error cut its run short): swept in the finally below.
  let unswept: { rt: RuntimeUnderTest; dir: string } | undefined;
  try {
    registry = await startRegistry(runDir);
    say(`registry on ${registry.address}`);
    const t0 = Date.now();
    if (interrupted) throw new Error("interrupted");
    const images = await buildAndPush(registry.address, path.join(runDir, "images"), values.verbose ? say : () => {});
    say(`built and pushed ${images.length} images in ${((Date.now() - t0) / 1000).toFixed(1)}s`);

    for (const name of runtimes) {
      if (interrupted) break;
      for (const net of [name === "berth" ? "bcrit0" : "bcrit1"]) {
        if ((await bridgePorts(net)).length) throw new Error(`bridge ${net} has ports attached: another critest run is using it`);
        if (await linkExists(net)) await deleteLink(net);
      }
      const dir = path.join(runDir, name);
      await mkdir(dir, { recursive: true });
      const rt = await startRuntime(name, dir, registry.address);
      unswept = { rt, dir };
      say(`${name} serving on ${rt.endpoint} (log ${rt.logFile})`);
      let res;
      let critestLeft: string[] = [];
      if (values.hold) {
        say(`holding: ${name} on ${rt.endpoint}, registry ${registry.address}; Ctrl-C to stop and clean up`);
        await new Promise<void>((resolve) => { const t = setInterval(() => { if (interrupted) { clearInterval(t); resolve(); } }, 200); });
        await removeWhatCritestLeft(rt).then((notes) => notes.forEach(say));
        await rt.stop();
        unswept = undefined;
        for (const l of await sweep(rt, dir)) say(`LEFT BEHIND by ${name}: ${l}`);
        break;
      }
      try {
        res = await runCritest(critest, rt, {
          focus: values.focus ?? [], skip: values.skip ?? [], benchmark: !!values.benchmark,
          benchmarkParams: values["benchmark-params"] && path.resolve(values["benchmark-params"]), verbose: !!values.verbose,
        });
        critestLeft = await removeWhatCritestLeft(rt);
      } finally {
        await rt.stop();
      }
      for (const n of critestLeft) say(n);
      unswept = undefined;
      const leftovers = await sweep(rt, dir);
      const reportText = await readFile(res.report, "utf8").catch(() => "");
      if (!reportText) say(`critest wrote no report (exit ${res.exit}); its output: ${res.log}`);
      const summary = reportText ? parseGinkgoJson(reportText) : parseGinkgoJson("[]");
      results.push({ runtime: name, summary, leftovers, critestExit: res.exit });
      if (values.out) {
        const out = path.resolve(values.out, name);
        await mkdir(out, { recursive: true });
        for (const f of [res.log, res.report, rt.logFile]) await copyFile(f, path.join(out, path.basename(f))).catch(() => {});
        if (values.benchmark) await execa("cp", ["-r", path.join(dir, "benchmarks"), out], { reject: false });
        await writeFile(path.join(out, "summary.txt"), render(name, version, summary, leftovers));
      }
      process.stdout.write(render(name, version, summary, leftovers));
      if (values.benchmark) {
        process.stdout.write(await renderBenchmarks(name, path.join(dir, "benchmarks")));
        benchmarks.set(name, await collectBenchmarks(path.join(dir, "benchmarks")));
      }
    }
    if (values.benchmark && benchmarks.size) {
      await writeCritestSection(path.join(REPO, "bench/REPORT.md"), benchmarkMarkdown(version, benchmarks));
      say("critest -benchmark figures written to bench/REPORT.md");
    }
  } finally {
    if (unswept) {
      await unswept.rt.stop();
      for (const l of await sweep(unswept.rt, unswept.dir)) say(`LEFT BEHIND by ${unswept.rt.name}: ${l}`);
    }
    await registry?.stop();
    if (!hadContainerdRun) await rm("/run/containerd", { recursive: true, force: true }); // containerd's shim sockets live there
    if (values.keep) say(`kept ${runDir}`);
    else await rm(runDir, { recursive: true, force: true });
  }
  if (interrupted) return 130;
  const unexpected = results.some((r) => r.critestExit === null || r.leftovers.length || r.summary.suiteFailures.length ||
    r.summary.specs.some((s) => s.state === "failed" && !isExpectedFailure(s.name)) || r.summary.passed + r.summary.failed === 0);
  return unexpected ? 1 : 0;
}

type BenchmarkFigures = Map<string, { medianMs: number; p90Ms: number; samples: number }>;

/** "<benchmark file>: <operation>" -> figures, for one runtime's run. */
async function collectBenchmarks(dir: string): Promise<BenchmarkFigures> {
  const out: BenchmarkFigures = new Map();
  for (const f of (await readdir(dir).catch(() => [] as string[])).filter((x) => x.endsWith(".json")).sort()) {
    for (const o of benchmarkSummary(await readFile(path.join(dir, f), "utf8").catch(() => "{}"))) {
      out.set(`${f.replace(/_benchmark_data\.json$/, "")}: ${o.op}`, o);
    }
  }
  return out;
}

/** A table with one row per operation and a median / p90 column per runtime. */
function benchmarkMarkdown(version: string, byRuntime: Map<string, BenchmarkFigures>): string {
  const runtimes = [...byRuntime.keys()];
  const ops = [...new Set(runtimes.flatMap((r) => [...byRuntime.get(r)!.keys()]))];
  const cell = (r: string, op: string) => {
    const f = byRuntime.get(r)!.get(op);
    return f && f.samples ? `${f.medianMs.toFixed(1)} / ${f.p90Ms.toFixed(1)}` : "n/a";
  };
  return [
    `${version}, run by \`make critest CRITEST_FLAGS=--benchmark\` on ${new Date().toISOString().slice(0, 10)}; median / p90 in ms.`,
    "",
    `| operation | ${runtimes.join(" | ")} |`,
    `| --- | ${runtimes.map(() => "---").join(" | ")} |`,
    ...ops.map((op) => `| ${op} | ${runtimes.map((r) => cell(r, op)).join(" | ")} |`),
  ].join("\n");
}

async function renderBenchmarks(runtime: string, dir: string): Promise<string> {
  const lines = [`== critest -benchmark figures for ${runtime} (ms)`];
  for (const f of (await readdir(dir).catch(() => [] as string[])).filter((x) => x.endsWith(".json")).sort()) {
    const ops = benchmarkSummary(await readFile(path.join(dir, f), "utf8").catch(() => "{}"));
    lines.push(`${f.replace(/_benchmark_data\.json$/, "")}: ${ops.map((o) => `${o.op} median ${o.medianMs.toFixed(1)} p90 ${o.p90Ms.toFixed(1)} (n=${o.samples})`).join("; ")}`);
  }
  return lines.join("\n") + "\n";
}

function render(runtime: string, version: string, s: Summary, leftovers: string[]): string {
  const lines = ["", `== critest (${version}) against ${runtime}`];
  for (const spec of s.specs.filter((x) => x.state === "failed")) {
    lines.push(`FAILED${isExpectedFailure(spec.name) ? " (expected)" : ""}: ${spec.name}`);
    lines.push(`    ${firstLine(spec.message)}${spec.location ? `  [${spec.location}]` : ""}`);
  }
  for (const f of s.suiteFailures) lines.push(`SUITE FAILURE: ${firstLine(f)}`);
  for (const l of leftovers) lines.push(`LEFT BEHIND by ${runtime}: ${l}`);
  if (s.notSelected) lines.push(`(${s.notSelected} specs not selected by the run's filters)`);
  lines.push(`${runtime}: ${summaryLine(s)}`, "");
  return lines.join("\n");
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(`critest harness: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
