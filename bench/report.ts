// bench/REPORT.md: machine, versions, date, one table per workload group, the goals, and a
// section the critest harness fills (kept as it is when this report is rewritten).
import { readFile, writeFile } from "node:fs/promises";
import type { Group, Row } from "./measure.js";
import { RUNTIME_NAMES, type RuntimeName } from "./runtimes.js";
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

const LABEL: Record<RuntimeName, string> = { berth: "berth", containerd: "containerd", crio: "CRI-O" };

function cell(row: Row, rt: RuntimeName): string {
  const why = row.missing[rt];
  if (why) return why;
  const s = summarize(row.samples[rt]);
  return s ? formatValue(s.median, row.unit) : "–";
}

/** The runtimes a group has a figure or a reason for (CRI-O only in runs that were given it). */
function runtimesOf(g: Group): RuntimeName[] {
  return RUNTIME_NAMES.filter((rt) => rt !== "crio" || g.rows.some((r) => r.samples.crio.length > 0 || r.missing.crio));
}

export function groupTable(g: Group): string {
  const rts = runtimesOf(g);
  const peers = rts.filter((rt) => rt !== "berth");
  const lines = [
    `### ${g.title}`,
    ``,
    g.method,
    ``,
    `| workload | ${rts.map((rt) => `${LABEL[rt]} median`).join(" | ")} | ${peers.map((rt) => `berth / ${LABEL[rt]}`).join(" | ")} | ${rts.map((rt) => `${LABEL[rt]} min – max`).join(" | ")} |`,
    `|---|${rts.map(() => "---|").join("")}${peers.map(() => "---|").join("")}${rts.map(() => "---|").join("")}`,
  ];
  for (const r of g.rows) {
    const sum = (rt: RuntimeName) => (r.missing[rt] ? undefined : summarize(r.samples[rt]));
    const b = sum("berth");
    lines.push(`| ${r.title} | ${rts.map((rt) => cell(r, rt)).join(" | ")} | ${peers.map((rt) => ratio(b?.median, sum(rt)?.median)).join(" | ")} | ${rts.map((rt) => formatSpread(sum(rt), r.unit)).join(" | ")} |`);
  }
  if (g.notes.length) lines.push(``, ...g.notes.map((n) => `- ${n}`));
  return lines.join("\n");
}

export interface Goal {
  text: string;
  /** berth / containerd (or berth / floor) the goal compares, when both figures exist. */
  value: number | undefined;
  limit: number;
  /** Met at the limit too ("at or below"); limits other than 1 always are. */
  orEqual?: boolean;
}

function median(row: Row | undefined, rt: RuntimeName): number | undefined {
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
  /** berth / the faster of containerd and CRI-O (whichever this run measured). */
  const vsFaster = (key: string) => {
    const b = median(rows.get(key), "berth");
    const peers = (["containerd", "crio"] as const).map((rt) => median(rows.get(key), rt)).filter((v): v is number => v !== undefined && v > 0);
    return b !== undefined && peers.length ? b / Math.min(...peers) : undefined;
  };
  const steadyKeys = [...rows.keys()].filter((k) => /^steady-\d+-/.test(k));
  const steady = [
    ...steadyKeys.filter((k) => k.endsWith("-cpu")).map((k) => ({ text: `${rows.get(k)!.title} <= 0.8x the faster peer (issue 17)`, value: vsFaster(k), limit: 0.8 })),
    ...[...steadyKeys.filter((k) => !k.endsWith("-cpu") && !k.endsWith("-monitors")), ...[...rows.keys()].filter((k) => k.startsWith("call-"))]
      .map((k) => ({ text: `${rows.get(k)!.title}${k.startsWith("steady-") ? ` at ${/^steady-(\d+)-/.exec(k)![1]} pods` : ""}: at or below the faster peer (issue 17)`, value: vsFaster(k), limit: 1, orEqual: true })),
  ];
  const latency = ["runp", "stopp-rmp", "create-start", "exec", "stop-rm", "list-containers", "list-pods", "list-stats", "concurrent"]
    .map((k) => ({ text: `${rows.get(k)?.title ?? k}: berth faster than containerd`, value: rel(k), limit: 1 }));
  return [
    { text: "PullImage 8 x 8 MiB layers <= 0.8x containerd (issue 3)", value: rel("pull-layers8"), limit: 0.8 },
    { text: "PullImage busybox <= 0.8x containerd (issue 3)", value: rel("pull-busybox"), limit: 0.8 },
    { text: "PullImage 10 layers with whiteouts, straight, <= 0.8x containerd (issue 17)", value: rel("pull-layers10"), limit: 0.8 },
    { text: "PullImage 10 layers with whiteouts, through the mirror, <= 0.8x containerd (issue 17)", value: rel("pull-layers10-mirror"), limit: 0.8 },
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
    ...steady,
  ];
}

function goalLine(g: Goal): string {
  if (g.value === undefined) return `| ${g.text} | – | not measured |`;
  return `| ${g.text} | ${g.value.toFixed(2)} | ${g.value < g.limit || ((g.limit !== 1 || g.orEqual) && g.value === g.limit) ? "met" : "NOT met"} |`;
}

export const SERVERS_BEGIN = "<!-- grpc-servers:begin -->";
export const SERVERS_END = "<!-- grpc-servers:end -->";

/** The text between `begin` and `end` in an existing report (markers included), or `placeholder` between them. */
function keptSection(previous: string | undefined, begin: string, end: string, placeholder: string): string {
  if (previous) {
    const a = previous.indexOf(begin);
    const b = previous.indexOf(end);
    if (a >= 0 && b > a) return previous.slice(a, b + end.length);
  }
  return [begin, placeholder, end].join("\n");
}

/** The critest section of an existing report, or the placeholder the critest harness replaces. */
export function critestSection(previous: string | undefined): string {
  return keptSection(previous, CRITEST_BEGIN, CRITEST_END, "_Not run yet: the critest harness writes `critest -benchmark` figures for berth and containerd here._");
}

/** The gRPC server stacks compared apart from `make bench` (by hand, with scratch servers): kept as written. */
export function serversSection(previous: string | undefined): string {
  return keptSection(previous, SERVERS_BEGIN, SERVERS_END, "_Not measured yet._");
}

export function renderReport(env: Environment, groups: Group[], previous: string | undefined, crioNote?: string): string {
  const versions = Object.entries(env.versions).map(([k, v]) => `${k} ${v}`).join("; ");
  return [
    `# berth vs containerd (and CRI-O): benchmark report`,
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
    `  means berth answered UNIMPLEMENTED for that step in this build. CRI-O, when given (CRIO=, PINNS=), runs the`,
    `  same way on bridge bbench2 (10.92.2.0/24) with conmon and runc, cgroupfs, and registries.conf drop-ins for the`,
    `  local registry.${crioNote ? ` ${crioNote}` : ""}`,
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
    `## gRPC server stacks (measured apart)`,
    ``,
    serversSection(previous),
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
