// Prints a markdown table of spec results side by side, for README.md:
//   node dist/test/critest/table.js "containerd v1.26.1=out/containerd/critest-report.json" "berth v1.26.1=..."
import { readFile } from "node:fs/promises";
import { parseGinkgoJson, summaryLine, type SpecResult } from "./report.js";

const MARK: Record<SpecResult["state"], string> = { passed: "pass", failed: "**FAIL**", skipped: "skip" };

async function main(): Promise<void> {
  const columns: Array<{ label: string; specs: Map<string, SpecResult>; line: string }> = [];
  for (const arg of process.argv.slice(2)) {
    const at = arg.lastIndexOf("=");
    if (at < 1) throw new Error(`expected label=report.json, got ${arg}`);
    const s = parseGinkgoJson(await readFile(arg.slice(at + 1), "utf8"));
    columns.push({ label: arg.slice(0, at), specs: new Map(s.specs.filter((x) => !x.notSelected).map((x) => [x.name, x])), line: summaryLine(s) });
  }
  const names = [...new Set(columns.flatMap((c) => [...c.specs.keys()]))].sort();
  const out = [`| spec | ${columns.map((c) => c.label).join(" | ")} |`, `| --- | ${columns.map(() => "---").join(" | ")} |`];
  for (const n of names) out.push(`| ${n.replace(/^\[k8s\.io\] /, "").replaceAll("|", "\\|")} | ${columns.map((c) => (c.specs.has(n) ? MARK[c.specs.get(n)!.state] : "—")).join(" | ")} |`);
  out.push(`| **summary** | ${columns.map((c) => c.line).join(" | ")} |`);
  console.log(out.join("\n"));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
