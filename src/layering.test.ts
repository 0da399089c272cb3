// Reads every import in src/ and fails on one that goes from a lower layer to a higher one
// (docs/architecture.md draws the same layers). The table is the rule: change it only when the
// design changes, never to let an import through.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";

const SRC = path.resolve(import.meta.dirname, "../../src");

/**
 * Top to bottom. A module may import from its own group and from any group below it, never from
 * one above or beside it; the top layer may import anything. Groups are folders under src/
 * ("cri/") or single files ("main.ts"); "*" is every other file directly in src/.
 */
const LAYERS: ReadonlyArray<{ groups: string[]; why: string }> = [
  { groups: ["main.ts", "daemon.ts", "doctor.ts"], why: "the command line, the daemon wiring every layer once, berthd doctor" },
  { groups: ["metrics/"], why: "the Prometheus endpoint: implements the recorder interfaces cri/, cni/ and image/ declare; only the daemon builds it" },
  { groups: ["cri/"], why: "the gRPC front: validate, call one back-end method, map" },
  { groups: ["stream/"], why: "the streaming server: the CRI front asks it for URLs, it drives the runtime" },
  { groups: ["runtime/"], why: "pods, containers, the OCI runtime and its monitor" },
  { groups: ["image/", "cni/"], why: "images and snapshots; pod networks (neither imports the other)" },
  { groups: ["store/"], why: "crash-safe records and per-object locks" },
  { groups: ["*"], why: "shared leaf modules: errors, log, config, faults, proc, run-captured, notify ..." },
  { groups: ["grpc/"], why: "berth's gRPC server on node:http2 and the status codes: knows nothing of the CRI" },
  { groups: ["native/"], why: "the N-API addon and its wrapper" },
];
/** Generated from proto/api.proto; importable from every layer. */
const ANYWHERE = ["gen/"];

/** The group a path relative to src/ belongs to. */
function groupOf(rel: string): string {
  const slash = rel.indexOf("/");
  if (slash >= 0) return rel.slice(0, slash + 1);
  const file = rel.replace(/\.js$/, ".ts");
  return LAYERS.some((l) => l.groups.includes(file)) ? file : "*";
}

function rankOf(group: string): number {
  const i = LAYERS.findIndex((l) => l.groups.includes(group));
  if (i < 0) throw new Error(`src/${group} is in no layer: add it to LAYERS in src/layering.test.ts`);
  return i;
}

/** Why importing `to` from `from` (both relative to src/) breaks the layers; undefined when it does not. */
export function violation(from: string, to: string): string | undefined {
  const fromGroup = groupOf(from);
  const toGroup = groupOf(to);
  if (fromGroup === toGroup || ANYWHERE.includes(toGroup)) return undefined;
  const a = rankOf(fromGroup);
  const b = rankOf(toGroup);
  if (a === 0 || b > a) return undefined;
  return b < a ? `${fromGroup} is below ${toGroup}` : `${fromGroup} and ${toGroup} are side by side`;
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (path.relative(SRC, full) !== "gen") out.push(...(await sourceFiles(full)));
    } else if (e.name.endsWith(".ts")) out.push(full);
  }
  return out;
}

/** The relative module specifiers of a file: static imports and re-exports (type-only ones too) and import(). */
export function relativeImports(text: string): string[] {
  const out: string[] = [];
  const re = /^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']|^\s*import\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/gm;
  for (const m of text.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    if (spec.startsWith(".")) out.push(spec);
  }
  return out;
}

describe("import layering", () => {
  test("the rule itself", () => {
    assert.equal(violation("cri/container.ts", "runtime/container.js"), undefined);
    assert.equal(violation("runtime/node-status.ts", "cri/runtime-info.js"), "runtime/ is below cri/");
    assert.equal(violation("image/store.ts", "runtime/faults.js"), "image/ is below runtime/");
    assert.equal(violation("image/store.ts", "cni/network.js"), "image/ and cni/ are side by side");
    assert.equal(violation("store/records.ts", "errors.js"), undefined);
    assert.equal(violation("errors.ts", "store/records.js"), "* is below store/");
    assert.equal(violation("native/native.ts", "log.js"), "native/ is below *");
    assert.equal(violation("log.ts", "config.js"), undefined);
    assert.equal(violation("native/native.ts", "gen/api.js"), undefined);
    assert.equal(violation("main.ts", "daemon.js"), undefined);
    assert.equal(violation("cri/rpc.ts", "daemon.js"), "cri/ is below daemon.ts");
    assert.throws(() => violation("brand-new/x.ts", "errors.js"), /in no layer/);
    assert.deepEqual(
      relativeImports(`import a from "./a.js";\nimport type {\n  B,\n} from "../b.js";\nexport { c } from "./c.js";\nimport "./d.js";\nconst e = await import("./e.js");\nimport x from "node:fs";`),
      ["./a.js", "../b.js", "./c.js", "./d.js", "./e.js"],
    );
  });

  test("no module in src/ imports from a layer above it or beside it", async () => {
    const files = await sourceFiles(SRC);
    assert.ok(files.length > 100, `found ${files.length} files under ${SRC}`);
    const problems: string[] = [];
    let checked = 0;
    for (const file of files) {
      const from = path.relative(SRC, file);
      for (const spec of relativeImports(await readFile(file, "utf8"))) {
        const target = path.resolve(path.dirname(file), spec);
        const to = path.relative(SRC, target);
        checked++;
        if (to.startsWith("..")) {
          // Only tests may reach outside src/ (into test/harness).
          if (!from.endsWith(".test.ts")) problems.push(`src/${from} imports ${spec}: outside src/`);
          continue;
        }
        const why = violation(from, to);
        if (why) problems.push(`src/${from} imports ${spec}: ${why}`);
      }
    }
    assert.ok(checked > 300, `read ${checked} imports`);
    assert.deepEqual(problems, []);
  });
});
