// bench/REPORT.md: machine, versions, date, one table per workload group, the goals, and a
// section the critest harness fills (kept as it is when this report is rewritten).
import { readFile, writeFile } from "node:fs/promises";
import type { Group, Row } from "./measure.js";
import { formatSpread, formatValue, ratio, summarize } from "./stats.js";

export const CRITEST_BEGIN = "<!-- critest-benchmark:begin -->";
export const CRITEST_END = "<!-- critest-benchmark:end -->";

export interface Environment {
  date: string;
  nproc: number;
  memory: string;
  kernel: string;
  cpu: string;
  versions: Record<string, string>;
  durationS: number;
  plan: string;
  /** 1/5/15-minute load averages around the run. */
  load: string;
}

function cell(row: Row, rt: "berth" | "containerd"): string {
  const why = row.missing[rt];
  if (why) return why;
  const s = summarize(row.samples[rt]);
  return s ? formatValue(s.median, row.unit) : "–";
}

export function groupTable(g: Group): string {
  const lines = [
    `### ${g.title}`,
    ``,
    g.method,
    ``,
    `| workload | berth median | containerd median | berth / containerd | berth min – max | containerd min – max |`,
    `|---|---|---|---|---|---|`,
  ];
  for (const r of g.rows) {
    const b = r.missing.berth ? undefined : summarize(r.samples.berth);
    const c = r.missing.containerd ? undefined : summarize(r.samples.containerd);
    lines.push(`| ${r.title} | ${cell(r, "berth")} | ${cell(r, "containerd")} | ${ratio(b?.median, c?.median)} | ${formatSpread(b, r.unit)} | ${formatSpread(c, r.unit)} |`);
  }
  if (g.notes.length) lines.push(``, ...g.notes.map((n) => `- ${n}`));
  return lines.join("\n");
}

export interface Goal {
  text: string;
  /** berth / containerd (or berth / floor) the goal compares, when both figures exist. */
  value: number | undefined;
  limit: number;
}

function median(row: Row | undefined, rt: "berth" | "containerd"): number | undefined {
  if (!row || row.missing[rt]) return undefined;
  return summarize(row.samples[rt])?.median;
}

/** The goals from issues 3, 4, 8 and 9, checked against this run's medians. */
export function goals(groups: Group[]): Goal[] {
  const rows = new Map(groups.flatMap((g) => g.rows.map((r) => [r.key, r] as const)));
  const rel = (key: string) => {
    const b = median(rows.get(key), "berth");
    const c = median(rows.get(key), "containerd");
    return b !== undefined && c !== undefined && c > 0 ? b / c : undefined;
  };
  const execFloor = (() => {
    const e = median(rows.get("exec"), "berth");
    const f = median(rows.get("runc-exec"), "berth");
    return e !== undefined && f !== undefined && f > 0 ? e / f : undefined;
  })();
  const latency = ["runp", "stopp-rmp", "create-start", "exec", "stop-rm", "list-containers", "list-pods", "list-stats", "concurrent"]
    .map((k) => ({ text: `${rows.get(k)?.title ?? k}: berth faster than containerd`, value: rel(k), limit: 1 }));
  return [
    { text: "PullImage 8 x 8 MiB layers <= 0.8x containerd (issue 3)", value: rel("pull-layers8"), limit: 0.8 },
    { text: "PullImage busybox <= 0.8x containerd (issue 3)", value: rel("pull-busybox"), limit: 0.8 },
    { text: "RunPodSandbox <= 0.5x containerd (issue 4)", value: rel("runp"), limit: 0.5 },
    { text: "StopPodSandbox + RemovePodSandbox <= 0.8x containerd (issue 4)", value: rel("stopp-rmp"), limit: 0.8 },
    { text: "CreateContainer + StartContainer <= 0.8x containerd (issue 8)", value: rel("create-start"), limit: 0.8 },
    { text: "StopContainer + RemoveContainer <= 0.8x containerd (issue 8)", value: rel("stop-rm"), limit: 0.8 },
    { text: "ListContainers <= 0.8x containerd (issue 8)", value: rel("list-containers"), limit: 0.8 },
    { text: "ExecSync <= 1.15x bare runc exec (issue 8)", value: execFloor, limit: 1.15 },
    { text: "total memory (daemon + monitors) <= 0.8x containerd (issues 8, 9)", value: rel("mem-total"), limit: 0.8 },
    { text: "memory per added container <= 0.3x containerd (issues 8, 9)", value: rel("mem-per"), limit: 0.3 },
    { text: "ListPodSandboxMetrics (berth) under containerd's ListContainerStats, same containers (issue 16)", value: rel("pod-metrics"), limit: 1 },
    ...latency,
  ];
}

function goalLine(g: Goal): string {
  if (g.value === undefined) return `| ${g.text} | – | not measured |`;
  return `| ${g.text} | ${g.value.toFixed(2)} | ${g.value < g.limit || (g.limit !== 1 && g.value === g.limit) ? "met" : "NOT met"} |`;
}

/** The critest section of an existing report, or the placeholder the critest harness replaces. */
export function critestSection(previous: string | undefined): string {
  if (previous) {
    const a = previous.indexOf(CRITEST_BEGIN);
    const b = previous.indexOf(CRITEST_END);
    if (a >= 0 && b > a) return previous.slice(a, b + CRITEST_END.length);
  }
  return [
    CRITEST_BEGIN,
    "_Not run yet: the critest harness writes `critest -benchmark` figures for berth and containerd here._",
    CRITEST_END,
  ].join("\n");
}

export function renderReport(env: Environment, groups: Group[], previous: string | undefined): string {
  const versions = Object.entries(env.versions).map(([k, v]) => `${k} ${v}`).join("; ");
  return [
    `# berth vs containerd: benchmark report`,
    ``,
    `Generated by \`make bench\` (bench/main.ts) on ${env.date}; the run took ${env.durationS.toFixed(0)} s.`,
    ``,
    `- Machine: ${env.nproc} CPUs (${env.cpu}), ${env.memory} memory, kernel ${env.kernel}; load average ${env.load}`,
    `- Versions: ${versions}`,
    `- Plan: ${env.plan}`,
    `- Both runtimes run at the same time on private roots, state dirs and sockets, each with the same CNI conflist`,
    `  shape (bridge + host-local + portmap + loopback, ipMasq) on its own bridge (bbench0 / bbench1) and subnet`,
    `  (10.92.0.0/24 / 10.92.1.0/24), images from one local docker-registry, driven by one CRI client`,
    `  (src/cri/client.ts over grpc-js). Iterations alternate which runtime goes first; warm-up iterations are`,
    `  dropped. Log levels: info for both. Cgroup parents under /berth-bench (cgroupfs). "n/a (UNIMPLEMENTED)"`,
    `  means berth answered UNIMPLEMENTED for that step in this build.`,
    ``,
    `## Results`,
    ``,
    groups.map(groupTable).join("\n\n"),
    ``,
    `## Goals (berth, this run)`,
    ``,
    `| goal | berth / reference | verdict |`,
    `|---|---|---|`,
    ...goals(groups).map(goalLine),
    ``,
    `## critest -benchmark`,
    ``,
    critestSection(previous),
    ``,
  ].join("\n");
}

/**
 * For the critest harness: replaces the critest section of the report at `file` with `markdown`
 * (creating a report holding only that section when there is none yet).
 */
export async function writeCritestSection(file: string, markdown: string): Promise<void> {
  const section = `${CRITEST_BEGIN}\n${markdown.trim()}\n${CRITEST_END}`;
  const text = await readFile(file, "utf8").catch(() => undefined);
  const a = text?.indexOf(CRITEST_BEGIN) ?? -1;
  const b = text?.indexOf(CRITEST_END) ?? -1;
  const next = text !== undefined && a >= 0 && b > a
    ? text.slice(0, a) + section + text.slice(b + CRITEST_END.length)
    : `${text ?? "# berth vs containerd: benchmark report\n"}\n## critest -benchmark\n\n${section}\n`;
  await writeFile(file, next);
}
