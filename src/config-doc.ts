// docs/config.md and `berthd config --default`, both generated from SCHEMA and defaultConfig()
// in config.ts: a key added there shows up here with its type, default and description.
import { defaultConfig, LIVE_KEYS, SCHEMA, type Entry, type Key, type Leaf, type Table } from "./config.js";

function typeName(leaf: Leaf): string {
  if (typeof leaf === "object") return `one of ${leaf.oneOf.map((v) => `\`"${v}"\``).join(", ")}`;
  return { string: "string", number: "number", boolean: "boolean", "string[]": "array of strings", duration: "duration (`250ms`, `30s`, `5m`, `4h`, `1h30m`)", size: "size (`4096`, `512KiB`, `10MiB`, `1GiB`)" }[leaf];
}

function entryType(e: Key | Exclude<Entry, Table>): string {
  if (e.kind === "key") return typeName(e.leaf);
  return e.of.kind === "key" ? `table: ${e.entryName} → ${typeName(e.of.leaf)}` : `table: ${e.entryName} → table (below)`;
}

/** A TOML value; strings as basic strings (JSON's escapes are TOML's for these). */
function tomlValue(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(", ")}]`;
  if (typeof v === "string") return JSON.stringify(v);
  return String(v);
}

function tomlKey(k: string): string {
  return /^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k);
}

function valueAt(path: string[]): unknown {
  let v: unknown = defaultConfig();
  for (const p of path) v = (v as Record<string, unknown>)[p];
  return v;
}

interface Section { path: string[]; table: Table }

/** Tables in the order a TOML file holds them: the top level, then each table before its sub-tables. */
function sections(t: Table = SCHEMA, path: string[] = []): Section[] {
  const out: Section[] = [{ path, table: t }];
  for (const [k, e] of Object.entries(t.entries)) if (e.kind === "table") out.push(...sections(e, [...path, k]));
  return out;
}

const liveNote = (dotted: string) => ((LIVE_KEYS as readonly string[]).includes(dotted) ? " Applied on SIGHUP." : "");

/** The defaults as a commented TOML file: what `berthd config --default` prints and `make install` writes. */
export function defaultConfigToml(): string {
  const lines = [
    "# berthd configuration: every key with its default (berthd config --default).",
    "# Drop-ins in berth.d/*.toml beside this file are read after it, in name order; docs/config.md describes each key.",
  ];
  for (const { path, table } of sections()) {
    const head = path.join(".");
    if (head) lines.push("", `# ${table.doc}`, `[${head}]`);
    const entries = Object.entries(table.entries);
    // Plain keys first: after a map's [header] every key belongs to the map.
    for (const [k, e] of entries) {
      if (e.kind !== "key") continue;
      lines.push(`# ${e.doc}${liveNote(head ? `${head}.${k}` : k)}`, `${tomlKey(k)} = ${tomlValue(valueAt([...path, k]))}`);
    }
    for (const [k, e] of entries) {
      if (e.kind !== "map") continue;
      const dotted = head ? `${head}.${k}` : k;
      const items = Object.entries(valueAt([...path, k]) as Record<string, unknown>);
      lines.push("", `# ${e.doc}${liveNote(dotted)}`);
      if (e.of.kind === "key") {
        lines.push(`[${dotted}]`);
        if (e.example) lines.push(`# ${e.example}`);
        for (const [name, v] of items) lines.push(`${tomlKey(name)} = ${tomlValue(v)}`);
        continue;
      }
      for (const [name, v] of items) {
        lines.push(`[${dotted}.${tomlKey(name)}]`);
        for (const [ik, ie] of Object.entries(e.of.entries)) {
          if (ie.kind === "key") lines.push(`# ${ie.doc}`, `${tomlKey(ik)} = ${tomlValue((v as Record<string, unknown>)[ik])}`);
        }
      }
    }
  }
  return `${lines.join("\n")}\n`;
}

function mdDefault(v: unknown): string {
  if (typeof v === "object" && v !== null && !Array.isArray(v)) return Object.keys(v).length ? `\`${JSON.stringify(v)}\`` : "empty";
  return `\`${tomlValue(v)}\``;
}

/** Table-cell text: `|` would end the cell, `<name>` would be read as HTML. */
function mdCell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** docs/config.md. */
export function configReference(): string {
  const out = [
    "# berthd configuration reference",
    "",
    "Generated from the schema in `src/config.ts` (`node dist/src/config-doc.js > docs/config.md`); a unit test fails when",
    "this file and the schema differ. berthd reads its defaults, then `/etc/berth/berth.toml` (or `--config FILE`), then",
    "every `*.toml` in the `berth.d` folder beside that file in name order, then its flags. An unknown key or a wrong type",
    "stops startup (and a reload) with the file and key named. `berthd config --default` prints the defaults as TOML,",
    "`berthd config` the effective configuration.",
    "",
    "SIGHUP re-reads the files. These keys apply at once:",
    LIVE_KEYS.map((k) => `\`${k}\``).join(", ") + ";",
    "a change to any other key is logged as needing a restart, and a file that does not load keeps the running",
    "configuration (the log names the file and key).",
  ];
  for (const { path, table } of sections()) {
    const head = path.join(".");
    out.push("", head ? `## \`[${head}]\`` : "## Top level", "");
    if (table.doc) out.push(table.doc, "");
    out.push("| key | type | default | description |", "| --- | --- | --- | --- |");
    for (const [k, e] of Object.entries(table.entries)) {
      if (e.kind === "table") continue;
      const dotted = head ? `${head}.${k}` : k;
      const example = e.kind === "map" && e.example ? ` Example: \`${e.example}\`.` : "";
      out.push(`| \`${k}\` | ${entryType(e)} | ${mdDefault(valueAt([...path, k]))} | ${mdCell(e.doc + liveNote(dotted))}${example} |`);
      if (e.kind === "map" && e.of.kind === "table") {
        for (const [ik, ie] of Object.entries(e.of.entries)) {
          if (ie.kind !== "key") continue;
          out.push(`| \`${k}.<${e.entryName}>.${ik}\` | ${typeName(ie.leaf)} | | ${mdCell(ie.doc)} |`);
        }
      }
    }
  }
  return `${out.join("\n")}\n`;
}

// Run as a script: print the reference (how docs/config.md is regenerated).
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) process.stdout.write(configReference());
