// Issue 16's figures, taken on the scale workload's containers: ListPodSandboxMetrics against
// containerd's ListContainerStats (containerd 1.6 has no metrics RPCs; kubelet reads its cgroups
// through cAdvisor instead), and the daemons' steady CPU with and without a 15 s scrape.
import http from "node:http";
import { alternate, newGroup, newRow, timed, describeFailure, type Group } from "./measure.js";
import { cpuMs } from "./procs.js";
import type { RuntimeUnderTest } from "./runtimes.js";
import type { Ctx } from "./workloads.js";

/** berthd's default [metrics] address (bench/runtimes.ts leaves it as it is). */
const BERTH_METRICS_URL = "http://127.0.0.1:9120/metrics";
const SCRAPE_EVERY_MS = 15_000;
const CPU_WINDOW_MS = 30_000;

function scrape(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let n = 0;
      res.on("data", (c: Buffer) => (n += c.length));
      res.on("end", () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`GET ${url}: ${res.statusCode}`))));
    }).on("error", reject);
  });
}

/** What a kubelet and a Prometheus scraping every 15 s ask of each runtime. */
async function scrapeOnce(rt: RuntimeUnderTest): Promise<void> {
  if (rt.name === "berth") {
    await Promise.all([scrape(BERTH_METRICS_URL), rt.cri.runtime.listPodSandboxMetrics({}, { timeoutMs: 60_000 })]);
  } else {
    await rt.cri.runtime.listContainerStats({}, { timeoutMs: 60_000 });
  }
}

/** Daemon CPU over one window for every runtime at once, with `scraping` or without. */
async function cpuWindow(rts: RuntimeUnderTest[], scraping: boolean): Promise<Map<string, number>> {
  const start = new Map(await Promise.all(rts.map(async (rt) => [rt.name, await cpuMs(rt.pid)] as const)));
  const until = Date.now() + CPU_WINDOW_MS;
  const loops = scraping
    ? rts.map(async (rt) => {
      while (Date.now() < until) {
        await scrapeOnce(rt);
        await new Promise((r) => setTimeout(r, Math.min(SCRAPE_EVERY_MS, Math.max(0, until - Date.now()))));
      }
    })
    : [new Promise((r) => setTimeout(r, CPU_WINDOW_MS))];
  await Promise.all(loops);
  const out = new Map<string, number>();
  for (const rt of rts) out.set(rt.name, ((await cpuMs(rt.pid)) - start.get(rt.name)!) * (60_000 / CPU_WINDOW_MS));
  return out;
}

/** Runs on the scale workload's running containers (`containers` of them per runtime). */
export async function metricsAtScale(ctx: Ctx, rts: RuntimeUnderTest[], containers: number): Promise<Group> {
  const p = ctx.plan;
  const pm = newRow("pod-metrics", `ListPodSandboxMetrics, berth / ListContainerStats, containerd (all ${containers})`);
  const idle = newRow("cpu-idle", `daemon CPU per minute with ${containers} containers, no scraping`);
  const scraped = newRow("cpu-scraped", `daemon CPU per minute, scraped every 15 s (berth: /metrics + ListPodSandboxMetrics; containerd: ListContainerStats)`);
  const group = newGroup("Metrics (issue 16)", `median of ${p.listIterations} after ${p.warmup} warm-up, alternating; CPU: utime + stime of the daemon over ${CPU_WINDOW_MS / 1000} s windows, both runtimes at once, scaled to a minute`, [pm, idle, scraped]);
  await alternate(rts, [pm], { iterations: p.listIterations, warmup: p.warmup, aborted: ctx.aborted, log: ctx.log }, async (rt, it) => {
    if (rt.name === "berth") {
      let series = 0;
      let ctrs = 0;
      it.record(pm, await timed("ListPodSandboxMetrics", async () => {
        const r = await rt.cri.runtime.listPodSandboxMetrics({}, { timeoutMs: 60_000 });
        ctrs = r.podMetrics.reduce((n, x) => n + x.containerMetrics.length, 0);
        series = r.podMetrics.reduce((n, x) => n + x.metrics.length + x.containerMetrics.reduce((k, c) => k + c.metrics.length, 0), 0);
      }));
      if (ctrs !== containers) throw new Error(`ListPodSandboxMetrics covered ${ctrs} containers, expected ${containers}`);
      if (it.index === 0) group.notes.push(`berth: ${series} series for ${containers} containers in one ListPodSandboxMetrics`);
    } else {
      let got = 0;
      it.record(pm, await timed("ListContainerStats", async () => { got = (await rt.cri.runtime.listContainerStats({}, { timeoutMs: 60_000 })).stats.length; }));
      if (got !== containers) throw new Error(`ListContainerStats returned ${got} items, expected ${containers}`);
    }
  });
  try {
    ctx.log(`cpu: ${CPU_WINDOW_MS / 1000} s without scraping, then ${CPU_WINDOW_MS / 1000} s scraped every ${SCRAPE_EVERY_MS / 1000} s`);
    for (const [row, scraping] of [[idle, false], [scraped, true]] as const) {
      if (ctx.aborted()) throw new Error("interrupted");
      for (const [name, ms] of await cpuWindow(rts, scraping)) row.samples[name as RuntimeUnderTest["name"]].push(ms);
    }
  } catch (err) {
    if (ctx.aborted()) throw err;
    for (const row of [idle, scraped]) for (const rt of rts) if (row.samples[rt.name].length === 0) row.missing[rt.name] = describeFailure(err);
  }
  return group;
}
