// Self time by function in a V8 .cpuprofile, per phase of bench/callprof.ts (phases.json beside it).
//   node dist/bench/profsum.js PROFILE [--top 25] [--phase NAME]
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: Node[]; startTime: number; samples: number[]; timeDeltas: number[] }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string" }, phase: { type: "string" } } });
const file = positionals[0];
if (!file) throw new Error("usage: profsum PROFILE [--top N] [--phase NAME]");
const prof = JSON.parse(await readFile(file, "utf8")) as Profile;
const phases = JSON.parse(await readFile(path.join(path.dirname(file), "phases.json"), "utf8").catch(() => "[]")) as Array<{ name: string; startUs: number; endUs: number }>;
const top = Number(values.top ?? 25);
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const label = (n: Node) => `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.replace(/^.*\/(dist|node_modules)\//, "$1/")}:${n.callFrame.lineNumber + 1}`;

function summarise(name: string, from: number, to: number): void {
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let t = prof.startTime;
  let all = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i]!;
    if (t < from || t > to) continue;
    const dt = prof.timeDeltas[i + 1] ?? 0;
    const n = byId.get(prof.samples[i]!)!;
    if (n.callFrame.functionName === "(idle)") continue;
    all += dt;
    self.set(label(n), (self.get(label(n)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const l = label(byId.get(id)!);
      if (seen.has(l)) continue;
      seen.add(l);
      total.set(l, (total.get(l) ?? 0) + dt);
    }
  }
  process.stdout.write(`\n== ${name}: ${(all / 1000).toFixed(0)} ms busy over ${((to - from) / 1e6).toFixed(1)} s\n`);
  const print = (m: Map<string, number>, what: string) => {
    process.stdout.write(`-- ${what}\n`);
    for (const [l, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${(us / 1000).toFixed(1).padStart(8)} ms ${((100 * us) / all).toFixed(1).padStart(5)}%  ${l}\n`);
  };
  print(self, "self");
  print(total, "total (inclusive)");
}

const wanted = phases.filter((p) => !values.phase || p.name === values.phase);
if (wanted.length === 0) summarise("whole profile", -Infinity, Infinity);
for (const p of wanted) summarise(p.name, p.startUs, p.endUs);
